/*
 * `dmabuf-lab bench devices` (issue 5, section 7): the shape of a quick run
 * on real devices and the native peer (no timing thresholds), the target's
 * verdict from given rows, and the command as a subprocess.
 */
import { describe, expect, test } from "vitest";
import {
  evaluateDevicesTargets, renderDevicesTable, runDevicesBench, type DeviceBandwidthRow, type DeviceLatencyRow,
} from "../bench/devices.js";
import { summarize } from "../src/report.js";
import { runCli } from "./helpers/cli.js";

const MiB = 1024 * 1024;

describe("bench devices", () => {
  test("a quick run: latency of nop and 1 MiB copy jobs, bandwidth of devices and native threads, the target", async () => {
    const r = await runDevicesBench({ quick: true });
    expect(r.latency.map((l) => [l.job, l.bytes])).toEqual([["nop", 0], ["copy 1 MiB", MiB]]);
    for (const l of r.latency) {
      expect(l.stats.samples).toBeGreaterThan(0);
      expect(l.stats.p50Ns).toBeGreaterThan(0);
      expect(l.stats.p90Ns).toBeGreaterThanOrEqual(l.stats.p50Ns);
      expect(l.stats.p99Ns).toBeGreaterThanOrEqual(l.stats.p90Ns);
    }
    const methods = r.bandwidth.map((b) => [b.kind, b.workers]);
    expect(methods).toEqual(expect.arrayContaining([["device", 1], ["device", 2], ["reference", 1]]));
    for (const b of r.bandwidth) {
      expect(b.gbps).toBeGreaterThan(0);
      expect(b.stats.samples).toBeGreaterThan(0);
    }
    const [target] = r.targets;
    expect(target.id).toBe("devices-2-vs-native-2");
    if (r.native.status === "ran") {
      expect(methods).toEqual(expect.arrayContaining([["native", 1], ["native", 2]]));
      expect(target.met).toBe(target.measured! >= 0.9);
    } else {
      expect(target.met).toBeNull();
    }
    expect(renderDevicesTable(r)).toMatch(/\[(met|MISSED|n\/a)\] aggregate copy bandwidth, two devices/);
  });

  const rowOf = (kind: DeviceBandwidthRow["kind"], workers: number, nsPerCopy: number): DeviceBandwidthRow => ({
    method: `${kind} x${workers}`, kind, workers, bytes: 16 * MiB, batch: 8, gbps: (16 * MiB) / nsPerCopy, vsNative: null,
    stats: summarize([nsPerCopy]),
  });
  const latency: DeviceLatencyRow[] = [{ job: "nop", bytes: 0, stats: summarize([20_000]) }];
  const withRatios = (rows: DeviceBandwidthRow[]) => rows.map((r) => {
    const peer = rows.find((p) => p.kind === "native" && p.workers === r.workers);
    return r.kind === "native" || !peer ? r : { ...r, vsNative: r.gbps / peer.gbps };
  });
  const ran = { status: "ran", compiler: "cc", reason: null } as const;

  test("the target: met at 0.95x, MISSED at 0.5x with why, n/a without the native rows", () => {
    const native = [rowOf("native", 1, 1_000_000), rowOf("native", 2, 500_000), rowOf("reference", 1, 1_000_000)];
    const [met] = evaluateDevicesTargets(withRatios([...native, rowOf("device", 1, 1_050_000), rowOf("device", 2, 526_316)]), latency, ran);
    expect(met.met).toBe(true);
    expect(met.measured).toBeCloseTo(0.95, 2);
    const [missed] = evaluateDevicesTargets(withRatios([...native, rowOf("device", 1, 2_000_000), rowOf("device", 2, 1_000_000)]), latency, ran);
    expect(missed.met).toBe(false);
    expect(missed.detail).toContain("why: the engine copying on this thread reaches 1.00x one native thread, a device 0.50x");
    const [na] = evaluateDevicesTargets([rowOf("device", 1, 1), rowOf("device", 2, 1)], latency,
      { status: "skipped", compiler: null, reason: "no C compiler found" });
    expect(na).toMatchObject({ met: null, measured: null });
    expect(na.detail).toContain("no C compiler found");
  });

  test("dmabuf-lab bench devices --quick --json --no-native: one parsable result, the target n/a", async () => {
    const { code, stdout, stderr } = await runCli(["bench", "devices", "--quick", "--json", "--no-native"]);
    expect(code).toBe(0);
    const r = JSON.parse(stdout);
    expect(r.latency).toHaveLength(2);
    expect(r.bandwidth.map((b: DeviceBandwidthRow) => b.method)).toContain("devices x2");
    expect(r.targets[0].met).toBeNull();
    expect(stderr).toContain("latency: nop and 1 MiB copy jobs");
  });
});

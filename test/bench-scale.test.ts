/*
 * `dmabuf-lab bench scale`: the thread counts it measures, the shape of a
 * quick run on real worker threads, devices and the native peer (no timing
 * thresholds), the targets' verdicts from given rows, and the command as a
 * subprocess (--json, --out, --chart).
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { evaluateScaleTargets, runScaleBench, scaleRows, threadCounts, type ScaleRow } from "../bench/scale.js";
import { renderScaleTable, scaleCharts } from "../bench/scale_report.js";
import { runCli } from "./helpers/cli.js";

const MiB = 1024 * 1024;
const shmFiles = () => readdirSync("/dev/shm").filter((f) => f.startsWith(`dmabuf-lab-bench-scale-${process.pid}-`));

describe("bench scale", () => {
  test("thread counts: powers of two below the CPUs, then the CPUs", () => {
    expect(threadCounts(1)).toEqual([1]);
    expect(threadCounts(2)).toEqual([1, 2]);
    expect(threadCounts(12)).toEqual([1, 2, 4, 8, 12]);
    expect(threadCounts(16)).toEqual([1, 2, 4, 8, 16]);
  });

  test("a quick run at 1 and 2 threads: every section, efficiency and peer ratios, the targets, nothing left behind", async () => {
    const r = await runScaleBench({ quick: true, maxThreads: 2 });
    expect(r.threads).toEqual([1, 2]);
    const methods = [...new Set(r.rows.map((x) => x.method))];
    expect(methods).toEqual(expect.arrayContaining([
      "uapi pwrite 64 B", "fs pwrite 64 B", "uapi pread 64 B", "fs pread 64 B",
      "uapi pwrite 64 KiB", "fs pwrite 64 KiB", "uapi pread 64 KiB", "fs pread 64 KiB",
      "devices 8 MiB", "contend writers + readers",
    ]));
    for (const x of r.rows) {
      expect(x.throughput, `${x.method} x${x.threads}`).toBeGreaterThan(0);
      expect(x.stats.samples).toBeGreaterThan(0);
      if (x.threads === 1) expect(x.efficiency).toBe(1);
      else expect(x.efficiency).toBeCloseTo(x.throughput / (2 * r.rows.find((o) => o.method === x.method && o.threads === 1)!.throughput), 9);
      if (x.kind === "lab" && x.section === "rw") expect(x.vsPeer).toBeGreaterThan(0);
    }
    expect(r.targets.map((t) => t.id)).toEqual(["pwrite-64-scaling", "pwrite-64-vs-fs", "pwrite-64-cost", "devices-vs-native", "contend-scaling"]);
    for (const t of r.targets.filter((t) => t.id.startsWith("pwrite"))) expect(t.met).not.toBeNull();
    if (r.native.status === "ran") expect(r.rows.some((x) => x.method === "native memcpy 8 MiB" && x.threads === 2)).toBe(true);
    expect(renderScaleTable(r)).toMatch(/\[(met|MISSED)\] 64 B pwrite, scaling efficiency at 2 threads/);
    const charts = scaleCharts(r);
    expect(charts.map((c) => c.kind)).toEqual(["lines", "lines", "lines", "lines"]);
    for (const c of charts) if (c.kind === "lines") for (const s of c.series) expect(s.points.map((p) => p.x)).toEqual([1, 2]);
    expect(shmFiles()).toEqual([]);
  });

  const rw = (method: string, kind: ScaleRow["kind"], threads: number, callsPerSec: number) => ({
    row: { section: "rw" as const, method, kind, case: "pwrite 64 B", threads, unit: "calls/s" as const }, ns: [1e9 / callsPerSec],
  });
  const copies = (method: string, kind: ScaleRow["kind"], threads: number, gbps: number) => ({
    row: { section: "devices" as const, method, kind, case: "copy 16 MiB", threads, unit: "GB/s" as const }, ns: [(16 * MiB) / gbps],
  });
  const ran = { status: "ran", compiler: "cc", reason: null } as const;

  test("the targets from given rows: efficiency and fs ratio at the largest N, one-thread cost, the worst device ratio", () => {
    const rows = scaleRows([
      rw("uapi pwrite 64 B", "lab", 1, 2e6), rw("fs pwrite 64 B", "peer", 1, 1e6),
      rw("uapi pwrite 64 B", "lab", 4, 6e6), rw("fs pwrite 64 B", "peer", 4, 4e6),
      copies("devices 16 MiB", "lab", 1, 10), copies("native memcpy 16 MiB", "peer", 1, 10),
      copies("devices 16 MiB", "lab", 4, 20), copies("native memcpy 16 MiB", "peer", 4, 40),
    ], 16 * MiB);
    const by = Object.fromEntries(evaluateScaleTargets(rows, ran).map((t) => [t.id, t]));
    expect(by["pwrite-64-scaling"].measured).toBeCloseTo(0.75, 9);
    expect(by["pwrite-64-scaling"].met).toBe(true);
    expect(by["pwrite-64-vs-fs"].measured).toBeCloseTo(1.5, 9);
    expect(by["pwrite-64-vs-fs"].met).toBe(true);
    expect(by["pwrite-64-cost"].measured).toBeCloseTo(0.5, 9);
    expect(by["pwrite-64-cost"].met).toBe(true);
    expect(by["devices-vs-native"].measured).toBeCloseTo(0.5, 9);
    expect(by["devices-vs-native"].met).toBe(false);
    expect(by["contend-scaling"].met).toBeNull();
  });

  test("dmabuf-lab bench scale --quick --threads 1 --no-native --json --out --chart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-scale-"));
    try {
      const out = join(dir, "scale.json");
      const chart = join(dir, "scale.svg");
      const { code, stdout, stderr } = await runCli(["bench", "scale", "--quick", "--threads", "1", "--no-native", "--json", "--out", out, "--chart", chart]);
      expect(code, stderr).toBe(0);
      const result = JSON.parse(stdout);
      expect(result.threads).toEqual([1]);
      expect(JSON.parse(readFileSync(out, "utf8")).rows.length).toBe(result.rows.length);
      expect(readFileSync(chart, "utf8")).toMatch(/^<svg /);
      expect(stderr).toContain("scale [");
      expect(result.native.status).toBe("skipped");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const bad = await runCli(["bench", "scale", "--threads", "0"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--threads");
    expect(existsSync(join(dir, "scale.json"))).toBe(false);
  });
});

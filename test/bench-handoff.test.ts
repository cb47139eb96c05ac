/*
 * `dmabuf-lab bench handoff`: the shape of a quick run over every path with
 * real workers (no timing thresholds: every round was checked by the
 * consumer, the statistics are ordered, the ratios are the rows' own), the
 * targets' verdict from given rows, bad sizes, and the command as a
 * subprocess with --json and --chart.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { summarize } from "../src/report.js";
import { handoffCharts, renderHandoffTable, runHandoffBench, targetsOf, type HandoffRow } from "../bench/handoff.js";
import { paths, type HandoffPath } from "../bench/handoff_protocol.js";
import { expectErrnoAsync } from "./helpers/errors.js";
import { runCli } from "./helpers/cli.js";

describe("bench handoff", () => {
  test("a quick run: every path at every size, checked rounds, ordered statistics, ratios from the rows", async () => {
    const sizes = [4096, 65536];
    const r = await runHandoffBench({ quick: true, sizes });
    expect(r.rows.map((x) => [x.path, x.bytes])).toEqual(sizes.flatMap((b) => paths.map((p) => [p, b])));
    for (const x of r.rows) {
      expect(x.stats.samples).toBeGreaterThanOrEqual(2 * r.budget.minRounds);
      expect(x.stats.minNs).toBeLessThanOrEqual(x.stats.p50Ns);
      expect(x.stats.p50Ns).toBeLessThanOrEqual(x.stats.p99Ns);
      expect(x.stats.p99Ns).toBeLessThanOrEqual(x.stats.maxNs);
      const raw = r.rows.find((y) => y.bytes === x.bytes && y.path === "raw")!;
      expect(x.vsRaw).toBeCloseTo(raw.stats.p50Ns / x.stats.p50Ns, 9);
      expect(x.vsRawMean).toBeCloseTo(x.roundTripsPerSec / raw.roundTripsPerSec, 9);
    }
    expect(r.targets.map((t) => t.id)).toEqual(["floor", "transfer"]);
    for (const t of r.targets) expect(t.met).toBe(t.measured! >= (t.id === "floor" ? 0.9 : 1.2));
    expect(renderHandoffTable(r)).toMatch(/\[(met|MISSED)\] the lab's best path against the raw/);
    const [chart] = handoffCharts(r);
    expect(chart.kind === "bars" && chart.groups.map((g) => [g.name, g.bars.length])).toEqual([["4 KiB", paths.length], ["64 KiB", paths.length]]);
  });

  const rowOf = (path: HandoffPath, bytes: number, perSec: number, raw: number, transfer: number): HandoffRow => ({
    path, bytes, roundTripsPerSec: perSec, stats: summarize([1e9 / perSec]), vsRaw: perSec / raw, vsRawMean: perSec / raw, vsTransfer: perSec / transfer,
  });

  test("targets: the worst size decides the floor target; without 4 KiB the transfer target is n/a", () => {
    const rows = [
      rowOf("lab-queue", 4096, 30_000, 31_000, 20_000), rowOf("lab-rw", 4096, 10_000, 31_000, 20_000),
      rowOf("lab-mmap-sync", 4096, 12_000, 31_000, 20_000),
      rowOf("lab-queue", 1 << 20, 800, 1000, 700), rowOf("lab-rw", 1 << 20, 850, 1000, 700), rowOf("lab-mmap-sync", 1 << 20, 600, 1000, 700),
    ];
    const [floor, transfer] = targetsOf(rows, [4096, 1 << 20]);
    expect(floor.measured).toBeCloseTo(0.85, 9); // 1 MiB's best, lab-rw
    expect(floor.met).toBe(false);
    expect(floor.detail).toContain("1 MiB lab-rw 0.85x");
    expect(transfer.measured).toBeCloseTo(1.5, 9);
    expect(transfer.met).toBe(true);
    const [, none] = targetsOf(rows.slice(3), [1 << 20]);
    expect([none.met, none.measured]).toEqual([null, null]);
  });

  test("bad sizes are EINVAL before any worker starts", async () => {
    for (const sizes of [[], [3], [4097], [65 * 1024 * 1024]]) {
      await expectErrnoAsync(() => runHandoffBench({ quick: true, sizes }), "EINVAL");
    }
  });

  test("the command: --json, --chart, --size; a bad --size is exit 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "handoff-"));
    try {
      const chart = join(dir, "handoff.svg");
      const { code, stdout, stderr } = await runCli(["bench", "handoff", "--quick", "--json", "--size", "4K", "--chart", chart]);
      expect(code).toBe(0);
      const r = JSON.parse(stdout);
      expect(r.sizes).toEqual([4096]);
      expect(r.rows).toHaveLength(paths.length);
      expect(stderr).toContain("raw 4 KiB");
      expect(readFileSync(chart, "utf8")).toContain("<svg");
      expect((await runCli(["bench", "handoff", "--size", "lots"])).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

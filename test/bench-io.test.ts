/*
 * `dmabuf-lab bench io`: the shape of a quick run over every read path on
 * real storage devices and a real file (no timing thresholds), the targets'
 * verdicts following their measured ratios, the table and charts, and the
 * command as a subprocess.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { IO_DEPTHS, ioCharts, renderIoTable, runIoBench } from "../bench/io.js";
import { runCli } from "./helpers/cli.js";
import { checkChromeTrace } from "../src/trace/validate.js";
import type { ChromeTrace } from "../src/trace/chrome.js";

const methods = ["fixed dma-buf", "mapped strict", "mapped lazy", "mapped passthrough", "READ + pwrite", "copy_file_range direct", "copy_file_range buffered", "fs.readSync (ceiling)"];

describe("bench io", () => {
  test("a quick run: every method at its depths for both patterns, every read checked against the file, ratios and targets", async () => {
    const r = await runIoBench({ quick: true });
    for (const pattern of ["4 KiB random", "128 KiB sequential"]) {
      for (const method of methods) {
        const depths = r.rows.filter((x) => x.pattern === pattern && x.method === method).map((x) => x.qd);
        expect(depths, `${pattern} ${method}`).toEqual(method.startsWith("copy_file_range") || method.startsWith("fs.") ? [1] : [...IO_DEPTHS]);
      }
    }
    for (const x of r.rows) {
      expect(x.ios).toBeGreaterThan(0);
      expect(x.iops).toBeGreaterThan(0);
      expect(x.p99Us).toBeGreaterThanOrEqual(x.p50Us);
      if (x.method === "fixed dma-buf") expect(x.vsFixed).toBe(1);
    }
    expect(r.targets.map((t) => t.id)).toEqual(["io-fixed-strict", "io-fixed-pwrite", "io-fixed-passthrough", "io-seq-ceiling"]);
    for (const t of r.targets) expect(t.met).toBe(t.measured! >= Number(t.threshold.replace(/[^0-9.]/g, "")));
    expect(renderIoTable(r)).toMatch(/\[(met|MISSED)\] 4 KiB random, QD 32: fixed dma-buf reads against per-I\/O mapped reads, strict IOMMU/);
    const charts = ioCharts(r);
    expect(charts.map((c) => c.kind)).toEqual(["bars", "bars"]);
  });

  test("the command: --quick --json prints one object, --chart writes the SVG, --trace a sound Perfetto file of the storage devices' jobs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-io-"));
    try {
      const chart = join(dir, "io.svg");
      const traceFile = join(dir, "io.json");
      const { code, stdout } = await runCli(["bench", "io", "--quick", "--json", "--chart", chart, "--trace", traceFile, "--iotlb-ns", "3000"]);
      expect(code).toBe(0);
      const json = JSON.parse(stdout) as { rows: unknown[]; targets: unknown[]; trace?: unknown; iotlbInvalidateNs: number };
      expect(json.rows.length).toBe(2 * (5 * IO_DEPTHS.length + 3));
      expect(json.trace).toBeUndefined();
      expect(json.iotlbInvalidateNs).toBe(3000);
      expect(readFileSync(chart, "utf8")).toMatch(/^<svg/);
      const trace = JSON.parse(readFileSync(traceFile, "utf8")) as ChromeTrace;
      expect(checkChromeTrace(trace).problems).toEqual([]);
      // The storage devices' jobs and ring depths are on their tracks.
      for (const name of ["run", "ring depth nvme0n1", "ring depth nvme2n1"]) expect(trace.traceEvents.some((e) => e.name === name), name).toBe(true);
      expect((await runCli(["bench", "io", "--iotlb-ns", "-1"])).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

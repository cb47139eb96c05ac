/*
 * Rendering the scaling benchmark's result (bench/scale.ts) for people and
 * programs:
 *   renderScaleTable(result)  a table under 120 columns by section and
 *                       case: threads, aggregate throughput, scaling
 *                       efficiency, x peer, rme, samples; then the targets
 *   scaleJson(result)   { machine, date, ..., targets, rows, notes }
 *   scaleCharts(result) throughput against threads: one line chart per
 *                       section (calls/s of 64 B and 64 KiB calls, GB/s of
 *                       copies, ops/s of the contention mix), the lab's
 *                       series solid, their peers dashed
 * Pure functions of the result, on the shared header, target, note and
 * chart helpers (src/report.ts).
 */
import type { ScaleBenchResult, ScaleRow } from "./scale.js";
import { machineLines, renderNotes, renderTargets, row, type Chart, type Unit } from "../src/report.js";

const head = ["threads", "method", "throughput", "effic.", "×peer", "±rme%", "samples"];
const widths = [7, 38, 18, 6, 6, 6, 7];
const right = [true, false, true, true, true, true, true];

function throughputLabel(r: ScaleRow): string {
  if (r.unit === "GB/s") return `${r.throughput.toFixed(2)} GB/s`;
  const v = r.throughput;
  return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M ${r.unit}` : `${(v / 1e3).toFixed(1)} k ${r.unit}`;
}

const sectionTitles: Record<ScaleRow["section"], string> = {
  rw: "rw: pwrite/pread through the uapi on each thread's own dma-buf, and fs.writeSync/readSync on its own /dev/shm file",
  devices: "devices: N devices copying their own buffers, and native memcpy on N pthreads",
  contend: "contend: N writers, N readers, N devices on 2N buffers, --sharing 0 (writer + reader operations)",
};

export function renderScaleTable(result: ScaleBenchResult): string {
  const out = [
    `dmabuf-lab bench scale${result.quick ? " --quick" : ""}: ${result.date}, ${(result.durationMs / 1000).toFixed(0)} s, ` +
      `threads ${result.threads.join(", ")}`,
    ...machineLines(result.machine),
    `native:  ${result.native.status === "ran" ? `memcpy built with ${result.native.compiler}` : `SKIPPED: ${result.native.reason}`}`,
    `budget:  rw ${result.rounds} windows of ${result.windowMs} ms per row; load ${result.load.start.toFixed(2)} -> ${result.load.end.toFixed(2)}`,
    "",
  ];
  for (const section of ["rw", "devices", "contend"] as const) {
    const rows = result.rows.filter((r) => r.section === section);
    if (rows.length === 0) continue;
    out.push(sectionTitles[section], row(head, widths, right));
    const cases = [...new Set(rows.map((r) => r.case))];
    for (const c of cases) {
      const inCase = rows.filter((r) => r.case === c).sort((a, b) => a.threads - b.threads || (a.kind === "lab" ? -1 : 1));
      for (const r of inCase) {
        out.push(row([String(r.threads), r.method, throughputLabel(r), r.efficiency === null ? "-" : r.efficiency.toFixed(2),
          r.vsPeer === null ? "-" : r.vsPeer.toFixed(2), r.stats.rme.toFixed(1), String(r.stats.samples)], widths, right));
      }
      out.push("");
    }
  }
  out.push("  effic.: throughput(N) / (N x throughput(1)); ×peer: the lab's speed against the peer of the same N (>1 faster)", "",
    ...renderTargets(result.targets, "targets: p50s of the same run"), "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function scaleJson(result: ScaleBenchResult): object {
  const { machine, date, quick, threads, windowMs, rounds, copyBytes, load, native, durationMs, targets, rows, notes } = result;
  return { machine, date, quick, threads, windowMs, rounds, copyBytes, load, native, durationMs, targets, rows, notes };
}

/** Throughput against threads, one line chart per section and size; peers dashed; p10..p90 bars of the samples. */
export function scaleCharts(result: ScaleBenchResult): Chart[] {
  const subtitle = `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}; ` +
    "aggregate throughput at the p50, dashed: the peer";
  const rw = result.rows.filter((r) => r.section === "rw");
  const panels: { title: string; label: string; unit: Unit; rows: ScaleRow[] }[] = [
    { title: "64 B calls", label: "calls/s", unit: "count", rows: rw.filter((r) => r.case.endsWith(" 64 B")) },
    { title: "64 KiB calls", label: "calls/s", unit: "count", rows: rw.filter((r) => r.case.endsWith(" 64 KiB")) },
    { title: "copies", label: "GB/s", unit: "GB/s", rows: result.rows.filter((r) => r.section === "devices") },
    { title: "the contention mix, --sharing 0", label: "writer + reader ops/s", unit: "count", rows: result.rows.filter((r) => r.section === "contend") },
  ];
  return panels.filter((p) => p.rows.length > 0).map((p): Chart => ({
    kind: "lines", title: `bench scale: ${p.title}, aggregate against threads`, subtitle,
    x: { label: "threads", scale: "linear", unit: "count" },
    y: { label: p.label, scale: "linear", unit: p.unit },
    series: [...new Set(p.rows.map((r) => r.method))].map((method) => {
      const pts = p.rows.filter((r) => r.method === method).sort((a, b) => a.threads - b.threads);
      return { name: method, dashed: pts[0].kind === "peer", points: pts.map((r) => ({ x: r.threads, y: r.throughput })) };
    }),
  }));
}

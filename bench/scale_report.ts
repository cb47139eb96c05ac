/*
 * Rendering the scaling benchmark's result (bench/scale.ts) for people and
 * programs:
 *   renderScaleTable(result)  a table under 120 columns by section and
 *                       case: threads, aggregate throughput, scaling
 *                       efficiency, x peer, rme, samples; then the targets
 *   renderScaleJson(result)   { machine, date, ..., targets, rows, notes }
 *   renderScaleSvg(result)    throughput against threads: one panel per
 *                       section (calls/s of 64 B and 64 KiB calls, GB/s of
 *                       copies, ops/s of the contention mix), the lab's
 *                       series solid, their peers dashed, and the ideal
 *                       (N x one thread) dotted
 * Pure functions of the result, on the shared header, target, note and
 * JSON helpers (bench/report.ts, src/report.ts).
 */
import { renderNotes, renderTargets, row } from "./report.js";
import type { ScaleBenchResult, ScaleRow } from "./scale.js";
import { esc, machineLines, palette, roundedJson } from "../src/report.js";

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

export function renderScaleJson(result: ScaleBenchResult): string {
  const { machine, date, quick, threads, windowMs, rounds, copyBytes, load, native, durationMs, targets, rows, notes } = result;
  return roundedJson({ machine, date, quick, threads, windowMs, rounds, copyBytes, load, native, durationMs, targets, rows, notes });
}

interface Panel {
  title: string;
  unit: string;
  /** Divides a row's throughput for the axis. */
  scale: number;
  rows: ScaleRow[];
}

export function renderScaleSvg(result: ScaleBenchResult): string {
  const rw = result.rows.filter((r) => r.section === "rw");
  const panels: Panel[] = [
    { title: "64 B calls", unit: "M calls/s", scale: 1e6, rows: rw.filter((r) => r.case.endsWith(" 64 B")) },
    { title: "64 KiB calls", unit: "M calls/s", scale: 1e6, rows: rw.filter((r) => r.case.endsWith(" 64 KiB")) },
    { title: "copies", unit: "GB/s", scale: 1, rows: result.rows.filter((r) => r.section === "devices") },
    { title: "contention mix", unit: "k ops/s", scale: 1e3, rows: result.rows.filter((r) => r.section === "contend") },
  ].filter((p) => p.rows.length > 0);
  const PW = 420, PH = 260, GAP = 70, left = 70, top = 60;
  const W = left + 2 * (PW + GAP), H = top + Math.ceil(panels.length / 2) * (PH + 120);
  const f = (v: number) => v.toFixed(1);
  const maxN = Math.max(...result.threads);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">dmabuf-lab bench scale: aggregate throughput (p50) against threads</text>`,
    `<text x="${left}" y="40" fill="#555555">${esc(`${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ` +
      `${result.date.slice(0, 10)}; solid: the lab, dashed: its peer, dotted: N x one thread`)}</text>`,
  ];
  panels.forEach((p, i) => {
    const x0 = left + (i % 2) * (PW + GAP), y0 = top + Math.floor(i / 2) * (PH + 120);
    const yMax = Math.max(...p.rows.map((r) => Math.max(r.throughput, r.efficiency === null ? 0 : r.throughput / r.efficiency))) / p.scale * 1.05;
    const x = (n: number) => x0 + (maxN === 1 ? PW / 2 : ((n - 1) / (maxN - 1)) * PW);
    const y = (v: number) => y0 + PH - (v / p.scale / yMax) * PH;
    parts.push(`<rect x="${x0}" y="${y0}" width="${PW}" height="${PH}" fill="none" stroke="#999999"/>`,
      `<text x="${x0}" y="${y0 - 8}" font-weight="bold">${esc(p.title)} (${esc(p.unit)})</text>`);
    for (let k = 0; k <= 4; k++) {
      const v = (yMax * k) / 4;
      const yy = y0 + PH - (k / 4) * PH;
      parts.push(`<line x1="${x0}" x2="${x0 + PW}" y1="${f(yy)}" y2="${f(yy)}" stroke="#eeeeee"/>`,
        `<text x="${x0 - 6}" y="${f(yy + 4)}" text-anchor="end">${v >= 10 ? v.toFixed(0) : v.toFixed(1)}</text>`);
    }
    for (const n of result.threads) parts.push(`<text x="${f(x(n))}" y="${y0 + PH + 16}" text-anchor="middle">${n}</text>`);
    parts.push(`<text x="${x0 + PW / 2}" y="${y0 + PH + 32}" text-anchor="middle">threads</text>`);
    const methods = [...new Set(p.rows.map((r) => r.method))];
    methods.forEach((m, j) => {
      const pts = p.rows.filter((r) => r.method === m).sort((a, b) => a.threads - b.threads);
      const color = palette[(j + 1) % palette.length];
      const dash = pts[0].kind === "peer" ? ` stroke-dasharray="6 3"` : "";
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${pts.map((r) => `${f(x(r.threads))},${f(y(r.throughput))}`).join(" ")}"/>`);
      const one = pts.find((r) => r.threads === 1);
      if (one !== undefined && pts[0].kind === "lab") {
        parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1" stroke-dasharray="1 3" points="${pts.map((r) =>
          `${f(x(r.threads))},${f(y(one.throughput * r.threads))}`).join(" ")}"/>`);
      }
      for (const r of pts) parts.push(`<circle cx="${f(x(r.threads))}" cy="${f(y(r.throughput))}" r="3" fill="${color}"><title>${esc(`${m} x${r.threads}`)}</title></circle>`);
      parts.push(`<text x="${x0 + 10 + (j % 2) * 200}" y="${y0 + PH + 52 + Math.floor(j / 2) * 16}" fill="${color}">${esc(m)}</text>`);
    });
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/*
 * Rendering benchmark results for people and programs.
 *
 * The copy benchmark (bench/copy.ts):
 *   renderTable(result)  a table under 120 columns, grouped by regime: GB/s
 *                        (or ns per segment), x native, x SAB set, rme, p99
 *                        spread, samples and batch; then the targets
 *   renderJson(result)   { machine, date, ..., targets, rows, notes }, every
 *                        row with regime, method, bytes, gbps, nsPerSegment,
 *                        vsNative, vsSabSet and its statistics
 *   renderSvg(result)    a self-contained SVG chart, bandwidth against size
 *                        (log-log) per method, contiguous aligned copies
 * The fence benchmark (bench/fence.ts):
 *   renderFenceTable(result)  a table under 120 columns, grouped by section
 *                        and case: p50, p90, p99 per operation, x raw (a cost
 *                        ratio), rme, samples and batch; then the targets
 *   renderFenceJson(result)   { machine, date, ..., targets, rows, notes }
 * The read/write benchmark (bench/rw.ts):
 *   renderRwTable(result)  a table under 120 columns by regime and size: GB/s
 *                        (ns per op for 64-byte ops), x native, x SAB set,
 *                        x fs, rme, p99 spread, samples, batch; the targets
 *   renderRwJson(result)   { machine, date, ..., targets, rows, notes }
 * All share the machine header, the target list, the note wrapping and the
 * JSON rounding.
 *
 * Pure functions of the result: nothing here measures or prints.
 */
import type { CopyBenchResult, CopyBenchRow, Regime, TargetResult } from "./copy.js";
import { sizeLabel } from "./copy.js";
import type { RwBenchResult, RwBenchRow, RwRegime } from "./rw.js";
import { QUICK_WAKE_NS, fenceSections, type FenceBenchResult, type FenceBenchRow, type FenceSection } from "./fence.js";
import { durationLabel, esc, machineLines, palette, roundedJson, wrap } from "../src/report.js";

const regimeTitles: Record<Regime, string> = {
  "contiguous": "contiguous: one call per copy",
  "pages-scatter": "pages-scatter: linear -> random 4 KiB pages of the pool",
  "pages-gather": "pages-gather: random 4 KiB pages of the pool -> linear",
  "tiny-cache": "tiny-cache: 1..256 B segments at random offsets, cache-resident window",
  "tiny-dram": "tiny-dram: 1..256 B segments at random offsets, DRAM-sized window",
};

const methodOrder = (m: string): number => {
  const order = ["native:memcpy", "engine:bulk", "engine:simd", "engine:words", "engine:bytes", "engine:reference",
    "engine:auto", "js:engine.copy", "sab:set", "sab:copyWithin", "ab:set", "ab:copyWithin"];
  const i = order.indexOf(m);
  return i < 0 ? order.length : i;
};

const num = (v: number | null, digits: number): string =>
  v === null || !Number.isFinite(v) ? "-" : v >= 1000 ? v.toFixed(0) : v >= 100 ? v.toFixed(Math.min(digits, 1)) : v.toFixed(digits);
const ratio = (v: number | null): string => (v === null || !Number.isFinite(v) ? "-" : `${v.toFixed(2)}`);

export function row(cells: string[], widths: number[], right: boolean[]): string {
  return cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
}

function byCase(rows: CopyBenchRow[]): CopyBenchRow[][] {
  const m = new Map<string, CopyBenchRow[]>();
  for (const r of rows) {
    const k = `${r.bytes}|${r.alignment}`;
    m.set(k, [...(m.get(k) ?? []), r]);
  }
  return [...m.values()].map((g) => g.sort((a, b) => methodOrder(a.method) - methodOrder(b.method)));
}

function regimeTable(regime: Regime, rows: CopyBenchRow[]): string[] {
  const contiguous = regime === "contiguous";
  const head = contiguous
    ? ["size", "align", "method", "GB/s", "×native", "×SAB-set", "±rme%", "p99/p50", "samples", "batch"]
    : ["method", "ns/seg", "GB/s", "×native", "×SAB-set", "±rme%", "p99/p50", "samples", "ms/table"];
  const widths = contiguous ? [7, 10, 16, 8, 8, 8, 6, 7, 7, 5] : [16, 8, 8, 8, 8, 6, 7, 7, 8];
  const right = contiguous
    ? [false, false, false, true, true, true, true, true, true, true]
    : [false, true, true, true, true, true, true, true, true];
  const out = [regimeTitles[regime], row(head, widths, right)];
  for (const g of byCase(rows)) {
    if (!contiguous) {
      const r0 = g[0];
      out.push(`  ${r0.segments} ${r0.alignment === "page" ? "pages" : "segments"}, ${sizeLabel(r0.bytes)} per table` +
        (r0.alignment === "random" ? ` (${(r0.bytes / r0.segments).toFixed(1)} B mean)` : ""));
    }
    g.forEach((r, i) => {
      const spread = r.stats.p99Ns / r.stats.p50Ns;
      const common = [ratio(r.vsNative), ratio(r.vsSabSet), num(r.stats.rme, 1), spread.toFixed(2), String(r.stats.samples)];
      out.push(row(contiguous
        ? [i === 0 ? sizeLabel(r.bytes) : "", i === 0 ? r.alignment : "", r.method, num(r.gbps, 2), ...common, String(r.batch)]
        : [r.method, num(r.nsPerSegment, 1), num(r.gbps, 2), ...common, (r.nsPerOp / 1e6).toFixed(2)],
      widths, right));
    });
    if (contiguous) out.push("");
  }
  if (out[out.length - 1] !== "") out.push("");
  return out;
}

export function renderTargets(targets: TargetResult[],
  heading = "targets (issue 2, section 5): best engine path, worst case over the sizes that count"): string[] {
  const out = [heading];
  for (const t of targets) {
    const status = t.met === null ? "n/a" : t.met ? "met" : "MISSED";
    const measured = t.measured === null ? "not measured" : `${t.measured.toFixed(2)} ${t.unit}`;
    out.push(...wrap(`  [${status}] ${t.description}: ${measured} (target ${t.threshold}); ${t.detail}`, 116, "      "));
  }
  return out;
}

export function renderNotes(notes: string[]): string[] {
  const out = ["notes:"];
  for (const n of notes) out.push(...wrap(`  - ${n}`, 116, "    "));
  return out;
}

export function renderTable(result: CopyBenchResult): string {
  const out = [
    `dmabuf-lab bench copy${result.quick ? " --quick" : ""}: ${result.date}, seed ${result.seed}, ${(result.durationMs / 1000).toFixed(0)} s`,
    ...machineLines(result.machine),
    `native:  ${result.native.status === "ran" ? `memcpy built with ${result.native.compiler}` : `SKIPPED: ${result.native.reason}`}`,
    `budget:  ${result.budget.timeMs} ms per method and case in ${result.rounds} round${result.rounds === 1 ? "" : "s"} ` +
      `(native, then JavaScript), each after ${result.budget.warmupMs} ms warm-up; at least ${result.budget.minSamples} samples`,
    "",
  ];
  const regimes = [...new Set(result.rows.map((r) => r.regime))];
  for (const regime of regimes) out.push(...regimeTable(regime, result.rows.filter((r) => r.regime === regime)));
  out.push(...renderTargets(result.targets), "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function renderJson(result: CopyBenchResult): string {
  const { machine, date, quick, seed, regimes, budget, rounds, load, native, targets, rows, notes, durationMs } = result;
  return roundedJson({ machine, date, quick, seed, regimes, budget, rounds, load, native, durationMs, targets, rows, notes });
}

/** A log-log chart of GB/s against copy size for contiguous aligned copies. */
export function renderSvg(result: CopyBenchResult): string {
  const rows = result.rows.filter((r) => r.regime === "contiguous" && r.alignment === "aligned" && r.gbps > 0);
  const W = 960, H = 560, left = 70, top = 50, plotW = 640, plotH = 440;
  const methods = [...new Set(rows.map((r) => r.method))].sort((a, b) => methodOrder(a) - methodOrder(b));
  const parts: string[] = [];
  const title = `dmabuf-lab bench copy: contiguous aligned copies, GB/s (p50) against size`;
  const sub = `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}` +
    (result.native.status === "ran" ? "" : " (native skipped)");
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${left}" y="40" fill="#555555">${esc(sub)}</text>`);
  if (rows.length === 0) {
    parts.push(`<text x="${left}" y="${top + 40}">no contiguous rows in this result</text>`, "</svg>");
    return parts.join("\n") + "\n";
  }
  const sizes = rows.map((r) => r.bytes);
  const xMin = Math.log2(Math.min(...sizes)), xMax = Math.log2(Math.max(...sizes));
  const yMin = Math.floor(Math.log10(Math.min(...rows.map((r) => r.gbps))));
  const yMax = Math.ceil(Math.log10(Math.max(...rows.map((r) => r.gbps))));
  const x = (bytes: number) => left + ((Math.log2(bytes) - xMin) / Math.max(1, xMax - xMin)) * plotW;
  const y = (gbps: number) => top + plotH - ((Math.log10(gbps) - yMin) / Math.max(1, yMax - yMin)) * plotH;
  const f = (v: number) => v.toFixed(1);

  parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999999"/>`);
  for (let e = yMin; e <= yMax; e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (Math.log10(v) > yMax + 1e-9) continue;
      const yy = y(v);
      parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${f(yy)}" y2="${f(yy)}" stroke="${k === 1 ? "#cccccc" : "#eeeeee"}"/>`);
      if (k === 1 || yMax - yMin <= 3) parts.push(`<text x="${left - 6}" y="${f(yy + 4)}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
  }
  for (let e = Math.ceil(xMin); e <= xMax; e += 2) {
    const xx = x(2 ** e);
    parts.push(`<line x1="${f(xx)}" x2="${f(xx)}" y1="${top}" y2="${top + plotH}" stroke="#eeeeee"/>`,
      `<text x="${f(xx)}" y="${top + plotH + 16}" text-anchor="middle">${esc(sizeLabel(2 ** e))}</text>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${top + plotH + 36}" text-anchor="middle">copy size (log scale)</text>`,
    `<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">GB/s (log scale)</text>`);

  methods.forEach((method, i) => {
    const color = palette[i % palette.length];
    const pts = rows.filter((r) => r.method === method).sort((a, b) => a.bytes - b.bytes);
    const dash = method.startsWith("native") ? "" : method.startsWith("engine") ? "" : ` stroke-dasharray="5 3"`;
    const width = method === "native:memcpy" || method === "engine:auto" ? 2.5 : 1.5;
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="${width}"${dash} points="${pts.map((p) => `${f(x(p.bytes))},${f(y(p.gbps))}`).join(" ")}"/>`);
    for (const p of pts) {
      parts.push(`<circle cx="${f(x(p.bytes))}" cy="${f(y(p.gbps))}" r="2.5" fill="${color}"><title>${esc(`${method} ${sizeLabel(p.bytes)}: ${p.gbps.toFixed(2)} GB/s`)}</title></circle>`);
    }
    const ly = top + 10 + i * 20;
    parts.push(`<line x1="${left + plotW + 20}" x2="${left + plotW + 48}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="${width}"${dash}/>`,
      `<text x="${left + plotW + 54}" y="${ly + 4}">${esc(method)}</text>`);
  });
  const noteY = top + 20 + methods.length * 20;
  const legendNotes = ["engine:* one wasm call per copy", "sab:* built-ins on the shared memory", "ab:* built-ins on an ArrayBuffer",
    "dashed: JavaScript built-ins"];
  legendNotes.forEach((n, i) => parts.push(`<text x="${left + plotW + 20}" y="${noteY + i * 16}" fill="#555555" font-size="11">${esc(n)}</text>`));
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

// ---------------------------------------------------------------------------
// The fence benchmark

function fenceSectionTitle(section: FenceSection, result: FenceBenchResult): string {
  const b = result.budget;
  switch (section) {
    case "signal": return `signal, no waiter: batches of ${b.signalBatch} pending fences, only the signals timed (per signal)`;
    case "signal-waiter": return "signal with a waiter: a worker blocked in wait() on the fence; the signaller's cost (per signal)";
    case "wake": return "signal-to-wake: ping-pong round trips, each two signal-to-wake latencies (per round trip)";
    case "resv": return "resv: add xN = N x (lock, reserveFences(1), addFence, unlock) into an empty resv; test = one call";
    case "lock": return "lock: uncontended per lock + unlock; contended per acquisition over a window (two workers)";
  }
}

const fenceHead = ["method", "p50", "p90", "p99", "×raw", "±rme%", "samples", "batch"];
const fenceWidths = [44, 9, 9, 9, 6, 6, 7, 5];
const fenceRight = [false, true, true, true, true, true, true, true];

function fenceRow(r: FenceBenchRow): string {
  const s = r.stats;
  return row([`    ${r.method}${r.kind === "reference" ? " *" : ""}`, durationLabel(s.p50Ns), durationLabel(s.p90Ns),
    durationLabel(s.p99Ns), ratio(r.vsRaw), num(s.rme, 1), String(s.samples), String(r.batch)], fenceWidths, fenceRight);
}

const pctLabel = (v: number | null | undefined): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : `${(100 * v).toFixed(v < 0.01 && v > 0 ? 2 : 0)}%`;

/** A line of case-specific figures under a case, or none. */
function fenceCaseExtra(rows: FenceBenchRow[]): string[] {
  const fence = rows.find((r) => r.kind === "fence");
  const raw = rows.find((r) => r.kind === "raw");
  if (!fence || !raw) return [];
  if (fence.extra.waiterAsleep !== undefined) {
    return [`    a waiter was registered (fence) / woken (raw notify) at ${pctLabel(fence.extra.waiterAsleep)} / ` +
      `${pctLabel(raw.extra.waiterAsleep)} of the signals`];
  }
  if (fence.extra.quickFraction !== undefined) {
    const split = (r: FenceBenchRow) => `${r.kind === "reference" ? "engine" : r.kind} ${pctLabel(r.extra.quickFraction)}` +
      (r.extra.quickP50Ns ? ` (p50 ${durationLabel(r.extra.quickP50Ns)})` : "");
    const slow = (r: FenceBenchRow) => `${r.kind === "reference" ? "engine" : r.kind} ${durationLabel(r.extra.slowP50Ns ?? NaN)}`;
    return [
      `    quick wake-ups (round trip < ${durationLabel(QUICK_WAKE_NS)}): ${rows.map(split).join(", ")}`,
      `    the slower ones, p50: ${rows.map(slow).join(", ")}`,
    ];
  }
  if (fence.extra.acquisitionsPerSec !== undefined) {
    const rate = (r: FenceBenchRow) => `${((r.extra.acquisitionsPerSec ?? NaN) / 1e6).toFixed(2)} M acquisitions/s`;
    const cont = (r: FenceBenchRow) => `${pctLabel(r.extra.contendedFraction)} contended`;
    return [
      `    Mutex: ${rate(fence)}, ${cont(fence)} (its statistics: ${fence.extra.acquisitions} acquisitions, ` +
        `${fence.extra.contended} contended, ${(fence.extra.waitMs ?? NaN).toFixed(0)} ms waiting)`,
      `    raw:   ${rate(raw)}, ${cont(raw)}`,
    ];
  }
  return [];
}

export function renderFenceTable(result: FenceBenchResult): string {
  const b = result.budget;
  const out = [
    `dmabuf-lab bench fence${result.quick ? " --quick" : ""}: ${result.date}, ${(result.durationMs / 1000).toFixed(0)} s`,
    ...machineLines(result.machine),
    `budget:  main thread: tinybench, ${b.rounds} rounds of ${b.microMs} ms per method (order alternating), each after ` +
      `${b.warmupMs} ms warm-up`,
    `         across threads, per method in turns: ${b.waiterBlocks} x ${b.waiterSamples} signals with a waiter, ` +
      `${b.roundTripBlocks} x ${b.roundTrips} round trips, ${b.lockWindows} lock windows of ${b.lockMs} ms`,
    "",
  ];
  const sections = fenceSections.filter((x) => result.rows.some((r) => r.section === x));
  for (const section of sections) {
    const rows = result.rows.filter((r) => r.section === section);
    out.push(fenceSectionTitle(section, result), row(fenceHead, fenceWidths, fenceRight));
    for (const c of [...new Set(rows.map((r) => r.case))]) {
      const group = rows.filter((r) => r.case === c);
      out.push(`  ${c}`, ...group.map(fenceRow), ...fenceCaseExtra(group));
    }
    out.push("");
  }
  out.push("* reference: a component of the fence's cost, not a peer", "",
    ...renderTargets(result.targets, "targets (issue 3, section 6): p50 of the fence path over the p50 of its raw peer, same run"),
    "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function renderFenceJson(result: FenceBenchResult): string {
  const { machine, date, quick, budget, load, durationMs, targets, rows, notes } = result;
  return roundedJson({ machine, date, quick, budget, load, durationMs, targets, rows, notes });
}

// ---------------------------------------------------------------------------
// The read/write benchmark

const rwTitles: Record<RwRegime, string> = {
  "throughput": "throughput: one pwrite/pread of a whole dma-buf per call, user memory from lab.alloc (arena)",
  "small-op": "small-op: 64-byte calls on the system heap (ns per call)",
  "parts": "parts: components of one 64-byte pwrite on the system heap (reference rows, ns per call)",
};
const rwHead = ["size", "heap", "method", "GB/s", "ns/op", "×nat", "×SAB", "×fs", "±rme%", "p99/p50", "n"];
const rwWidths = [6, 15, 28, 6, 8, 5, 5, 5, 6, 7, 6];
const rwRight = [false, false, false, true, true, true, true, true, true, true, true];

function rwRow(r: RwBenchRow, first: boolean): string {
  return row([first ? sizeLabel(r.bytes) : "", r.heap ?? "", r.method, num(r.gbps, 2), num(r.nsPerOp, 0),
    ratio(r.vsNative), ratio(r.vsSabSet), ratio(r.vsFs), num(r.stats.rme, 1), (r.stats.p99Ns / r.stats.p50Ns).toFixed(2),
    String(r.stats.samples)], rwWidths, rwRight);
}

export function renderRwTable(result: RwBenchResult): string {
  const out = [
    `dmabuf-lab bench rw${result.quick ? " --quick" : ""}: ${result.date}, ${(result.durationMs / 1000).toFixed(0)} s`,
    ...machineLines(result.machine),
    `native:  ${result.native.status === "ran" ? `memcpy built with ${result.native.compiler}` : `SKIPPED: ${result.native.reason}`}`,
    `budget:  ${result.budget.timeMs} ms per method and case in ${result.rounds} round${result.rounds === 1 ? "" : "s"} ` +
      `(native, then JavaScript), each after ${result.budget.warmupMs} ms warm-up; load ${result.load.start.toFixed(2)} -> ${result.load.end.toFixed(2)}`,
    "",
  ];
  for (const regime of [...new Set(result.rows.map((r) => r.regime))]) {
    out.push(rwTitles[regime], row(rwHead, rwWidths, rwRight));
    const rows = result.rows.filter((r) => r.regime === regime);
    for (const bytes of [...new Set(rows.map((r) => r.bytes))]) {
      rows.filter((r) => r.bytes === bytes).forEach((r, i) => out.push(rwRow(r, i === 0)));
      out.push("");
    }
  }
  out.push(...wrap("×nat, ×SAB, ×fs: speed ratios (>1 faster) against native:memcpy, sab:set and the fs call of the same " +
    "direction; n: samples (batch in the JSON)", 116, "  "), "",
    ...renderTargets(result.targets, "targets (issue 4, section 8): p50s of the same run"), "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function renderRwJson(result: RwBenchResult): string {
  const { machine, date, quick, budget, rounds, load, native, shmFile, durationMs, targets, rows, notes } = result;
  return roundedJson({ machine, date, quick, budget, rounds, load, native, shmFile, durationMs, targets, rows, notes });
}

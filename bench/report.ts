/*
 * Rendering benchmark results for people and programs.
 *
 * The copy benchmark (bench/copy.ts):
 *   renderTable(result)  a table under 120 columns, grouped by regime: GB/s
 *                        (or ns per segment), x native, x SAB set, rme, p99
 *                        spread, samples and batch; then the targets
 *   copyJson(result)     { machine, date, ..., targets, rows, notes }, every
 *                        row with regime, method, bytes, gbps, nsPerSegment,
 *                        vsNative, vsSabSet and its statistics
 *   copyCharts(result)   GB/s against size (log-log) per method, contiguous
 *                        aligned and misaligned copies; ns per segment of the
 *                        sg regimes
 * The fence benchmark (bench/fence.ts):
 *   renderFenceTable(result)  a table under 120 columns, grouped by section
 *                        and case: p50, p90, p99 per operation, x raw (a cost
 *                        ratio), rme, samples and batch; then the targets
 *   fenceJson(result)    { machine, date, ..., targets, rows, notes }
 *   fenceCharts(result)  p50 per method and case, one chart per section
 * The read/write benchmark (bench/rw.ts):
 *   renderRwTable(result)  a table under 120 columns by regime and size: GB/s
 *                        (ns per op for 64-byte ops), x native, x SAB set,
 *                        x fs, rme, p99 spread, samples, batch; the targets
 *   rwJson(result)       { machine, date, ..., targets, rows, notes }
 *   rwCharts(result)     GB/s against size per method and heap; ns per
 *                        64-byte call
 * All share the machine header, the target list and the note wrapping
 * (src/report/text.ts); the charts' points are p50s with p10..p90 bars.
 *
 * Pure functions of the result: nothing here measures or prints.
 */
import type { CopyBenchResult, CopyBenchRow, Regime } from "./copy.js";
import { bar, sizeLabel, spread } from "./harness.js";
import type { RwBenchResult, RwBenchRow, RwRegime } from "./rw.js";
import { fenceSections, type FenceBenchResult, type FenceBenchRow, type FenceSection } from "./fence_rows.js";
import { QUICK_WAKE_NS } from "./fence_rounds.js";
import {
  durationLabel, machineLines, renderNotes, renderTargets, row, wrap, type Chart,
} from "../src/report.js";

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
  out.push(...renderTargets(result.targets, "targets: best engine path, worst case over the sizes that count"), "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function copyJson(result: CopyBenchResult): object {
  const { machine, date, quick, seed, regimes, budget, rounds, load, native, targets, rows, notes, durationMs } = result;
  return { machine, date, quick, seed, regimes, budget, rounds, load, native, durationMs, targets, rows, notes };
}

const gbpsOf = (bytes: number) => (ns: number): number => bytes / ns;

/** The copy benchmark's charts: GB/s against size (contiguous, aligned and misaligned), ns per segment (sg regimes). */
export function copyCharts(result: CopyBenchResult): Chart[] {
  const subtitle = `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}` +
    (result.native.status === "ran" ? "" : " (native skipped)") + "; points p50, bars p10..p90 of the samples";
  const charts: Chart[] = [];
  for (const alignment of ["aligned", "misaligned"] as const) {
    const rows = result.rows.filter((r) => r.regime === "contiguous" && r.alignment === alignment && r.gbps > 0);
    if (rows.length === 0) continue;
    const methods = [...new Set(rows.map((r) => r.method))].sort((a, b) => methodOrder(a) - methodOrder(b));
    charts.push({
      kind: "lines", title: `bench copy: contiguous ${alignment} copies, GB/s against size`, subtitle,
      x: { label: "copy size (log scale)", scale: "log2", unit: "bytes" },
      y: { label: "GB/s (log scale)", scale: "log10", unit: "GB/s" },
      series: methods.map((method) => ({
        name: method, dashed: method.startsWith("sab:") || method.startsWith("ab:"),
        points: rows.filter((r) => r.method === method).map((r) => ({ x: r.bytes, ...spread(r.stats, gbpsOf(r.bytes)) })),
      })),
      notes: ["engine:* one wasm call per copy", "sab:* built-ins on the shared memory", "ab:* built-ins on an ArrayBuffer",
        "dotted: JavaScript built-ins"],
    });
  }
  const sg = result.rows.filter((r) => r.regime !== "contiguous" && r.nsPerSegment !== null);
  if (sg.length) {
    charts.push({
      kind: "bars", title: "bench copy: scatter-gather and tiny segments, ns per segment", subtitle,
      value: { label: "ns per segment (log scale)", scale: "log10", unit: "ns" },
      groups: [...new Set(sg.map((r) => r.regime))].map((regime) => ({
        name: regimeTitles[regime],
        bars: sg.filter((r) => r.regime === regime).sort((a, b) => methodOrder(a.method) - methodOrder(b.method)).map((r) => bar(r.method, r.stats, (ns) => ns / r.segments)),
      })),
    });
  }
  return charts;
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
    ...renderTargets(result.targets, "targets: p50 of the fence path over the p50 of its raw peer, same run"),
    "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function fenceJson(result: FenceBenchResult): object {
  const { machine, date, quick, budget, load, durationMs, targets, rows, notes } = result;
  return { machine, date, quick, budget, load, durationMs, targets, rows, notes };
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
    ...renderTargets(result.targets, "targets: p50s of the same run"), "", ...renderNotes(result.notes));
  return out.join("\n") + "\n";
}

export function rwJson(result: RwBenchResult): object {
  const { machine, date, quick, budget, rounds, load, native, shmFile, durationMs, targets, rows, notes } = result;
  return { machine, date, quick, budget, rounds, load, native, shmFile, durationMs, targets, rows, notes };
}

/** The fence benchmark's chart: p50 per method and case, bars p10..p90, one group per case. */
export function fenceCharts(result: FenceBenchResult): Chart[] {
  const subtitle = `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}; ` +
    "bars p50, whiskers p10..p90 of the samples";
  return fenceSections.filter((x) => result.rows.some((r) => r.section === x)).map((section) => {
    const rows = result.rows.filter((r) => r.section === section);
    return {
      kind: "bars", title: `bench fence: ${fenceSectionTitle(section, result)}`, subtitle,
      value: { label: "ns per operation (log scale)", scale: "log10", unit: "ns" },
      groups: [...new Set(rows.map((r) => r.case))].map((c) => ({
        name: c,
        bars: rows.filter((r) => r.case === c).map((r) => bar(r.method, r.stats)),
      })),
    };
  });
}

/** The read/write benchmark's charts: GB/s against size per method (throughput), ns per 64-byte call. */
export function rwCharts(result: RwBenchResult): Chart[] {
  const subtitle = `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}; ` +
    "p50, bars p10..p90 of the samples";
  const charts: Chart[] = [];
  const tp = result.rows.filter((r) => r.regime === "throughput" && r.gbps > 0);
  if (tp.length) {
    const name = (r: RwBenchRow) => (r.heap ? `${r.method} (${r.heap}${r.memory === "foreign" ? ", foreign" : ""})` : r.method);
    const names = [...new Set(tp.map(name))];
    charts.push({
      kind: "lines", title: "bench rw: one pwrite/pread of a whole dma-buf, GB/s against size", subtitle,
      x: { label: "size (log scale)", scale: "log2", unit: "bytes" },
      y: { label: "GB/s (log scale)", scale: "log10", unit: "GB/s" },
      series: names.map((n) => ({
        name: n, dashed: !n.startsWith("pwrite") && !n.startsWith("pread"),
        points: tp.filter((r) => name(r) === n).map((r) => ({ x: r.bytes, ...spread(r.stats, gbpsOf(r.bytes)) })),
      })),
    });
  }
  const small = result.rows.filter((r) => r.regime !== "throughput");
  if (small.length) {
    charts.push({
      kind: "bars", title: "bench rw: 64-byte calls and their parts, ns per call", subtitle,
      value: { label: "ns per call (log scale)", scale: "log10", unit: "ns" },
      groups: [...new Set(small.map((r) => r.regime))].map((regime) => ({
        name: rwTitles[regime],
        bars: small.filter((r) => r.regime === regime).map((r) => bar(r.heap ? `${r.method} (${r.heap})` : r.method, r.stats)),
      })),
    });
  }
  return charts;
}

/*
 * The benchmark harness, shared by every benchmark (bench/*.ts):
 *   measure(tasks, budget)   runs named bodies under tinybench, each timed
 *                            iteration a batch of operations, and returns
 *                            per-operation samples (ns) by name; summarize()
 *                            (src/report/stats.ts) turns them into figures.
 *                            A body that returns a number says how many ms
 *                            of it were the timed part (set-up and clean-up
 *                            of a sample outside it)
 *   budgetFor(quick)         the time budget of one method and case
 *   mulberry32, fillPattern  seeded layouts and data, identical to the C peer's
 *   sizeLabel                "64 KiB" for exact binary sizes
 *   spread(stats, toY)       a chart point's y and error bar: the p50 and the
 *                            p10..p90 of the samples, mapped to the chart's unit;
 *                            bar(name, stats, toY) the same as a bar
 *   Benchmark<O, R>          what a benchmark declares so that the CLI gives it
 *                            --help, --quick, --json, --out, --chart FILE.svg|.html
 *                            and `dmabuf-lab report` (see docs/ARCHITECTURE.md,
 *                            "Adding a benchmark"): its options, parse() (a bad
 *                            value throws UsageError naming it), run(),
 *                            and pure renderers table(), json() and charts()
 * Nothing here prints: a benchmark returns data, the command prints it.
 */
import { Bench } from "tinybench";
import type { NativeBudget } from "./native.js";
import type { Bar, Chart, Point, SampleStats } from "../src/report.js";
import type { TraceData } from "../src/trace/events.js";

/** A progress step: "3/40 label" (a negative index is a note, just the label). */
export interface Progress {
  index: number;
  total: number;
  label: string;
}

export const progressText = (e: Progress): string => (e.index < 0 ? e.label : `${e.index + 1}/${e.total} ${e.label}`);

/** A command-line option of a benchmark (node:util parseArgs). */
export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
}

/**
 * A benchmark as the CLI runs it. The harness adds --quick, --json, --out
 * FILE.json and --chart FILE.svg|.html to `options`; `values` holds them all.
 * json(result) must keep everything table() and charts() read, so that a
 * saved result renders again (`dmabuf-lab report`).
 */
export interface Benchmark<O, R> {
  /** The subcommand: `dmabuf-lab bench NAME`. */
  name: string;
  summary: string;
  /** The full help of `dmabuf-lab bench NAME --help`; its first paragraph is the usage line. */
  usage: string;
  options: Record<string, OptionSpec>;
  /** The run's options from the parsed values; a bad value throws UsageError (src/cli/options.ts) naming it. */
  parse(values: Record<string, string | boolean | string[] | undefined>): O;
  run(options: O, onProgress: (text: string) => void): Promise<R>;
  table(result: R): string;
  json(result: R): object;
  charts(result: R): Chart[];
  /** A run that measured but failed a check (contend: torn reads): exit code 1. */
  failed?(result: R): boolean;
  /**
   * Benchmarks that can record a trace of their run (src/trace): the CLI
   * then offers --trace FILE.json (parse() sees `values.trace` and asks the
   * run for one) and writes what this returns as Chrome Trace Event JSON.
   */
  traceOf?(result: R): TraceData | undefined;
}

/** Budget for each timed method: tinybench's time and iterations, and the native peer's. */
export function budgetFor(quick: boolean): NativeBudget {
  return quick
    ? { timeMs: 40, minSamples: 5, warmupMs: 10, maxSamples: 20000 }
    : { timeMs: 400, minSamples: 10, warmupMs: 50, maxSamples: 20000 };
}

/** A measured body: performs `batch` operations; returns nothing (all of it is timed) or the ms of its timed part. */
export type TimedBody = () => void | number;

/**
 * A tinybench task body: runs `op` (which performs `batch` operations) and
 * reports the mean time per operation of its timed part; the whole batch
 * counts against the time budget.
 */
export function batched(op: TimedBody, batch: number): () => { overriddenDuration: number; overriddenIterationCost: number } {
  return () => {
    const t0 = performance.now();
    const timedMs = op();
    const dt = performance.now() - t0;
    return { overriddenDuration: (typeof timedMs === "number" ? timedMs : dt) / batch, overriddenIterationCost: dt };
  };
}

/** Runs named bodies under tinybench; returns per-operation samples (ns) by name. */
export function measure(tasks: { name: string; body: TimedBody; batch: number }[],
  budget: Pick<NativeBudget, "timeMs" | "minSamples" | "warmupMs">): Map<string, number[]> {
  const bench = new Bench({
    time: budget.timeMs, iterations: budget.minSamples,
    warmupTime: budget.warmupMs, warmupIterations: 2,
    retainSamples: true, throws: true,
  });
  for (const t of tasks) bench.add(t.name, batched(t.body, t.batch), { async: false });
  bench.runSync();
  const out = new Map<string, number[]>();
  for (const task of bench.tasks) {
    const r = task.result;
    if (r.state !== "completed") throw new Error(`benchmark task ${task.name} ended in state ${r.state}`);
    out.set(task.name, Array.from(r.latency.samples ?? [], (ms) => ms * 1e6));
  }
  return out;
}

/** mulberry32, identical to the C peer's (bench/native/memcpy.c). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Fills a view with a pseudo-random pattern of period 65521 (a prime). */
export function fillPattern(view: Uint8Array, seed = 1): void {
  const next = mulberry32(seed);
  const period = Math.min(65521, view.length);
  for (let i = 0; i < period; i++) view[i] = next() & 0xff;
  for (let filled = period; filled < view.length; filled *= 2) {
    view.copyWithin(filled, 0, Math.min(filled, view.length - filled));
  }
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const sizeLabel = (n: number): string =>
  n >= MiB && n % MiB === 0 ? `${n / MiB} MiB` : n >= KiB && n % KiB === 0 ? `${n / KiB} KiB` : `${n} B`;

/**
 * A chart point's y and error bar from per-operation times: the p50 and the
 * p10..p90 of the samples, each mapped by toY (identity for latencies; bytes
 * / ns for bandwidth, which swaps the ends).
 */
export function spread(stats: SampleStats, toY: (ns: number) => number = (ns) => ns): Omit<Point, "x"> {
  const a = toY(stats.p10Ns), b = toY(stats.p90Ns);
  return { y: toY(stats.p50Ns), lo: Math.min(a, b), hi: Math.max(a, b) };
}

/** A bar of a bar chart from per-operation times (see spread). */
export function bar(name: string, stats: SampleStats, toY?: (ns: number) => number): Bar {
  const p = spread(stats, toY);
  return { name, value: p.y, lo: p.lo, hi: p.hi };
}

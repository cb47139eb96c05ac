/*
 * The copy benchmark: every engine strategy against its peers, in the same
 * run, in three regimes.
 *
 *   contiguous     one copy of 64 B .. 64 MiB, src and dst 64-byte aligned
 *                  ("aligned") or at +3 and +13 ("misaligned": neither side
 *                  8-byte aligned, and not co-aligned). One call per copy.
 *   pages-scatter  a linear buffer into 4 KiB pages drawn at random (no
 *   pages-gather   repeats) from the page pool, and back. 64 MiB over 16,384
 *                  pages of a 128 MiB pool (--quick: 16 MiB, 4,096 of 32 MiB).
 *                  One engine call per page list.
 *   tiny-cache     100,000 segments of 1..256 bytes at random offsets of a
 *   tiny-dram      window of 1 MiB (cache resident) or 64 MiB (DRAM): sources
 *                  in the window's lower half, destinations in its upper half.
 *                  One engine call per descriptor table; ns per segment.
 *
 * Methods (row.method):
 *   engine:<s>      the engine, strategy s (bulk simd words bytes reference
 *                   auto): engine.copy per copy, or one sgCopy / scatter /
 *                   gather call per table
 *   sab:set         Uint8Array.set on the shared memory (the arena); in the
 *   sab:copyWithin  sg regimes, a JavaScript loop of set(subarray) or
 *                   copyWithin per segment
 *   ab:set          the same on an ordinary ArrayBuffer with the same layout
 *   ab:copyWithin
 *   js:engine.copy  sg regimes: a JavaScript loop calling engine.copy (auto)
 *                   per segment
 *   native:memcpy   C memcpy (bench/native/memcpy.c, cc -O2), per copy or per
 *                   segment, in a subprocess of this run
 *
 * Measurement: tinybench runs every JavaScript-side method; each timed
 * iteration runs `batch` operations (copies, or whole tables) and records
 * the mean per operation, so the timer's resolution never dominates small
 * copies. The native peer samples the same batches with clock_gettime, in a
 * subprocess run for each case next to that case's JavaScript side: the full
 * run measures a case in six rounds (--quick two) of [native, then every
 * JavaScript-side method (in reverse order every other round)], samples
 * pooled, so that every method samples the machine's states alike (with
 * two long rounds, engine:auto, the same memory.copy as engine:bulk above
 * 256 bytes, came out 10% apart at 4 MiB on a quiet VM). Both
 * sides are summarised by the same code (summarize): the figures are p50s,
 * rme is the 95% relative margin of error of the mean, p99 is of the
 * per-batch means. Ratios are speed ratios from p50s (>1 is faster): vsNative
 * against native:memcpy, vsSabSet against sab:set, for the same regime, size
 * and alignment. Every method is checked to copy the right bytes once before
 * it is timed.
 *
 * Contract: runCopyBench() returns data and prints nothing; progress goes to
 * the onProgress callback. A missing C compiler skips the native rows (null
 * vsNative, a note) and never fails the run.
 */
import os from "node:os";
import { Lab } from "../src/api/lab.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { strategyNames, type StrategyName } from "../src/engine/strategy.js";
import { nativePeer, nativeCaseKey, runNative, type NativeBudget, type NativeCase, type NativeStatus } from "./native.js";
import { machineInfo, summarize, type MachineInfo, type SampleStats, type TargetResult } from "../src/report.js";
import { budgetFor, fillPattern, measure, mulberry32, sizeLabel } from "./harness.js";

const KiB = 1024;
const MiB = 1024 * KiB;

export type RegimeGroup = "contiguous" | "pages" | "tiny";
export type Regime = "contiguous" | "pages-scatter" | "pages-gather" | "tiny-cache" | "tiny-dram";
export type Alignment = "aligned" | "misaligned" | "page" | "random";
export type MethodKind = "engine" | "builtin" | "js-loop" | "native";

export const regimeGroups: readonly RegimeGroup[] = ["contiguous", "pages", "tiny"];

export interface CopyBenchOptions {
  /** A reduced run (under a minute). */
  quick?: boolean;
  /** Which regimes to run (default: all). */
  regimes?: readonly RegimeGroup[];
  /** Seed of the random layouts (default 0x5eed). */
  seed?: number;
  /** Run the native C peer (default true). */
  native?: boolean;
}

export interface CopyBenchRow {
  regime: Regime;
  method: string;
  kind: MethodKind;
  /** The engine strategy, for engine rows. */
  strategy: StrategyName | null;
  /** Bytes moved per operation (one copy, or a whole table). */
  bytes: number;
  alignment: Alignment;
  /** Segments per operation: 1 for contiguous copies. */
  segments: number;
  /** Operations per timed sample. */
  batch: number;
  /** Bytes per second / 1e9, from the p50. */
  gbps: number;
  /** p50 nanoseconds per operation. */
  nsPerOp: number;
  /** p50 nanoseconds per segment (sg regimes), else null. */
  nsPerSegment: number | null;
  /** Speed relative to native memcpy (>1 faster); null when native was skipped. */
  vsNative: number | null;
  /** Speed relative to Uint8Array.set on the shared memory (>1 faster). */
  vsSabSet: number | null;
  stats: SampleStats;
}

export interface CopyBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  seed: number;
  regimes: RegimeGroup[];
  /** Time per method and case, over all rounds. */
  budget: NativeBudget;
  /** Rounds per case (native, then the JavaScript side), samples pooled. */
  rounds: number;
  /** The 1-minute load average when the run started and when it ended. */
  load: { start: number; end: number };
  native: NativeStatus;
  rows: CopyBenchRow[];
  targets: TargetResult[];
  notes: string[];
  durationMs: number;
}

export type CopyBenchProgress =
  | { phase: "native"; message: string }
  | { phase: "case"; index: number; total: number; label: string };

const fnv = (h: number, x: number): number => Math.imul(h ^ x, 16777619) >>> 0;
const FNV_BASIS = 2166136261;

/** A Buffer over a view's bytes, shared or not (for fast comparisons). */
function buf(view: Uint8Array, offset = 0, length = view.length - offset): Buffer {
  return Buffer.from(view.buffer, view.byteOffset + offset, length);
}

// ---------------------------------------------------------------------------
// Cases

interface Method {
  id: string;
  kind: MethodKind;
  strategy: StrategyName | null;
  /** Which memory the method writes: the arena or the ordinary buffer. */
  side: "sab" | "ab";
  /** Performs `batch` operations. */
  body: () => void;
}

interface Case {
  regime: Regime;
  bytes: number;
  alignment: Alignment;
  segments: number;
  batch: number;
  label: string;
  native: NativeCase;
  /** FNV-1a of the layout, as the C peer computes it (0 for contiguous). */
  hash: number;
  methods: Method[];
  /** Restores the destination of a side before a checked run. */
  reset(side: "sab" | "ab"): void;
  /** True when the destination of a side holds the expected bytes. */
  check(side: "sab" | "ab"): boolean;
}

interface Plan {
  contiguous: { bytes: number; misaligned: boolean }[];
  poolPages: number;
  pages: number;
  tinyWindows: { regime: "tiny-cache" | "tiny-dram"; window: number }[];
  tinySegments: number;
  tinyMaxLen: number;
}

const MISALIGN_SRC = 3;
const MISALIGN_DST = 13;
const CONTIG_DST = 128 * MiB;

export function planFor(quick: boolean): Plan {
  const aligned = quick
    ? [64, KiB, 4 * KiB, 16 * KiB, 64 * KiB, MiB, 16 * MiB, 64 * MiB]
    : [64, 256, KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB];
  const misaligned = quick ? [4 * KiB, 64 * KiB, MiB] : [256, 4 * KiB, 64 * KiB, MiB, 16 * MiB];
  const contiguous = [
    ...aligned.map((bytes) => ({ bytes, misaligned: false })),
    ...misaligned.map((bytes) => ({ bytes, misaligned: true })),
  ].sort((a, b) => a.bytes - b.bytes || Number(a.misaligned) - Number(b.misaligned));
  return {
    contiguous,
    poolPages: quick ? 8192 : 32768,
    pages: quick ? 4096 : 16384,
    tinyWindows: [{ regime: "tiny-cache", window: MiB }, { regime: "tiny-dram", window: 64 * MiB }],
    tinySegments: 100_000,
    tinyMaxLen: 256,
  };
}

/** Copies per sample for a contiguous size: about 4 MiB of copying, at most 16384 copies. */
export const contiguousBatch = (bytes: number): number => Math.max(1, Math.min(16384, Math.ceil((4 * MiB) / bytes)));

/** The page indices: a partial Fisher-Yates shuffle, as memcpy.c draws them. */
export function pickPages(poolPages: number, count: number, seed: number): { pages: Uint32Array; hash: number } {
  const idx = new Uint32Array(poolPages);
  for (let i = 0; i < poolPages; i++) idx[i] = i;
  const next = mulberry32(seed);
  let hash = FNV_BASIS;
  for (let i = 0; i < count; i++) {
    const j = i + (next() % (poolPages - i));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
    hash = fnv(hash, idx[i]);
  }
  return { pages: idx.slice(0, count), hash };
}

/** Tiny segments as (dst, src, len) triples relative to the window, as memcpy.c draws them. */
export function tinySegments(window: number, count: number, maxLen: number, seed: number): { desc: Uint32Array; hash: number } {
  const half = window / 2;
  const next = mulberry32(seed);
  const desc = new Uint32Array(3 * count);
  let hash = FNV_BASIS;
  for (let i = 0; i < count; i++) {
    const len = 1 + (next() % maxLen);
    const src = next() % (half - len + 1);
    const dst = half + (next() % (half - len + 1));
    desc[3 * i] = dst;
    desc[3 * i + 1] = src;
    desc[3 * i + 2] = len;
    hash = fnv(fnv(fnv(hash, dst), src), len);
  }
  return { desc, hash };
}

function engineMethods(make: (strategy: StrategyName) => () => void): Method[] {
  return strategyNames.map((s) => ({ id: `engine:${s}`, kind: "engine", strategy: s, side: "sab", body: make(s) }));
}

function contiguousCases(lab: Lab, plan: Plan, disposers: (() => void)[]): Case[] {
  const engine = lab.engine;
  const u8 = lab.arena.u8;
  const srcView = lab.alloc(CONTIG_DST);
  const dstView = lab.alloc(CONTIG_DST);
  disposers.push(() => { lab.free(srcView); lab.free(dstView); });
  const srcBase = srcView.byteOffset;
  const dstBase = dstView.byteOffset;
  const ab = new Uint8Array(2 * CONTIG_DST);
  fillPattern(srcView, 1);
  fillPattern(ab.subarray(0, CONTIG_DST), 1);
  ab.fill(0, CONTIG_DST);

  return plan.contiguous.map(({ bytes, misaligned }): Case => {
    const so = misaligned ? MISALIGN_SRC : 0;
    const dO = misaligned ? MISALIGN_DST : 0;
    const s = srcBase + so;
    const d = dstBase + dO;
    const batch = contiguousBatch(bytes);
    const n = bytes;
    const sabSrc = u8.subarray(s, s + n);
    const sabDst = u8.subarray(d, d + n);
    const abSrc = ab.subarray(so, so + n);
    const abDst = ab.subarray(CONTIG_DST + dO, CONTIG_DST + dO + n);
    const abS = so;
    const abD = CONTIG_DST + dO;
    const methods: Method[] = [
      ...engineMethods((strategy) => () => {
        for (let i = 0; i < batch; i++) engine.copy(d, s, n, strategy);
      }),
      { id: "sab:set", kind: "builtin", strategy: null, side: "sab", body: () => {
        for (let i = 0; i < batch; i++) sabDst.set(sabSrc);
      } },
      { id: "sab:copyWithin", kind: "builtin", strategy: null, side: "sab", body: () => {
        for (let i = 0; i < batch; i++) u8.copyWithin(d, s, s + n);
      } },
      { id: "ab:set", kind: "builtin", strategy: null, side: "ab", body: () => {
        for (let i = 0; i < batch; i++) abDst.set(abSrc);
      } },
      { id: "ab:copyWithin", kind: "builtin", strategy: null, side: "ab", body: () => {
        for (let i = 0; i < batch; i++) ab.copyWithin(abD, abS, abS + n);
      } },
    ];
    return {
      regime: "contiguous", bytes, alignment: misaligned ? "misaligned" : "aligned", segments: 1, batch,
      label: `contiguous ${sizeLabel(bytes)} ${misaligned ? "misaligned" : "aligned"}`,
      native: { kind: "contig", bytes, srcOff: so, dstOff: dO, batch }, hash: 0, methods,
      reset: (side) => (side === "sab" ? engine.fill(d, 0, n) : abDst.fill(0)),
      check: (side) => (side === "sab" ? buf(sabDst).equals(buf(sabSrc)) : buf(abDst).equals(buf(abSrc))),
    };
  });
}

function pageCases(lab: Lab, plan: Plan, seed: number, disposers: (() => void)[]): Case[] {
  const engine = lab.engine;
  const u8 = lab.arena.u8;
  const order = Math.log2(plan.poolPages);
  if (!Number.isInteger(order) || plan.poolPages * PAGE_SIZE > lab.layout.poolBytes) {
    throw new Error(`bench: a pool of ${plan.poolPages} pages does not fit the lab's page pool`);
  }
  const pool = lab.allocPages(order);
  const linearView = lab.alloc(plan.pages * PAGE_SIZE);
  disposers.push(() => { lab.freePages(pool, order); lab.free(linearView); });
  const linear = linearView.byteOffset;
  const total = plan.pages * PAGE_SIZE;
  const poolBytes = plan.poolPages * PAGE_SIZE;
  const { pages, hash } = pickPages(plan.poolPages, plan.pages, seed);
  const list = lab.segmentList(plan.pages);
  disposers.push(() => list.free());
  for (const p of pages) list.push(pool + p * PAGE_SIZE, PAGE_SIZE);
  // The ordinary buffer: the pool, then the linear buffer, as in the arena.
  const ab = new Uint8Array(poolBytes + total);
  const abLinear = poolBytes;
  const count = plan.pages;
  const P = PAGE_SIZE;

  return (["pages-scatter", "pages-gather"] as const).map((regime): Case => {
    const scatter = regime === "pages-scatter";
    // Source data; the destination side starts zeroed.
    fillPattern(u8.subarray(scatter ? linear : pool, (scatter ? linear : pool) + (scatter ? total : poolBytes)), 2);
    fillPattern(scatter ? ab.subarray(abLinear) : ab.subarray(0, poolBytes), 2);
    const methods: Method[] = [
      ...engineMethods((strategy) => scatter
        ? () => engine.scatter(list, linear, strategy)
        : () => engine.gather(list, linear, strategy)),
      { id: "js:engine.copy", kind: "js-loop", strategy: "auto", side: "sab", body: scatter
        ? () => { for (let i = 0; i < count; i++) engine.copy(pool + pages[i] * P, linear + i * P, P, "auto"); }
        : () => { for (let i = 0; i < count; i++) engine.copy(linear + i * P, pool + pages[i] * P, P, "auto"); } },
      { id: "sab:set", kind: "js-loop", strategy: null, side: "sab", body: scatter
        ? () => { for (let i = 0; i < count; i++) u8.set(u8.subarray(linear + i * P, linear + i * P + P), pool + pages[i] * P); }
        : () => { for (let i = 0; i < count; i++) u8.set(u8.subarray(pool + pages[i] * P, pool + pages[i] * P + P), linear + i * P); } },
      { id: "sab:copyWithin", kind: "js-loop", strategy: null, side: "sab", body: scatter
        ? () => { for (let i = 0; i < count; i++) u8.copyWithin(pool + pages[i] * P, linear + i * P, linear + i * P + P); }
        : () => { for (let i = 0; i < count; i++) u8.copyWithin(linear + i * P, pool + pages[i] * P, pool + pages[i] * P + P); } },
      { id: "ab:set", kind: "js-loop", strategy: null, side: "ab", body: scatter
        ? () => { for (let i = 0; i < count; i++) ab.set(ab.subarray(abLinear + i * P, abLinear + i * P + P), pages[i] * P); }
        : () => { for (let i = 0; i < count; i++) ab.set(ab.subarray(pages[i] * P, pages[i] * P + P), abLinear + i * P); } },
      { id: "ab:copyWithin", kind: "js-loop", strategy: null, side: "ab", body: scatter
        ? () => { for (let i = 0; i < count; i++) ab.copyWithin(pages[i] * P, abLinear + i * P, abLinear + i * P + P); }
        : () => { for (let i = 0; i < count; i++) ab.copyWithin(abLinear + i * P, pages[i] * P, pages[i] * P + P); } },
    ];
    const mem = (side: "sab" | "ab") => (side === "sab" ? { m: u8, pool, linear } : { m: ab, pool: 0, linear: abLinear });
    return {
      regime, bytes: total, alignment: "page", segments: count, batch: 1,
      label: `${regime} ${sizeLabel(total)} over ${count} pages of ${sizeLabel(poolBytes)}`,
      native: { kind: scatter ? "scatter" : "gather", poolPages: plan.poolPages, pages: count, seed, batch: 1 }, hash,
      methods,
      reset: (side) => {
        const { m, pool: pb, linear: lb } = mem(side);
        if (scatter) for (let i = 0; i < count; i++) m.fill(0, pb + pages[i] * P, pb + pages[i] * P + P);
        else m.fill(0, lb, lb + total);
      },
      check: (side) => {
        const { m, pool: pb, linear: lb } = mem(side);
        for (let i = 0; i < count; i++) {
          if (!buf(m, pb + pages[i] * P, P).equals(buf(m, lb + i * P, P))) return false;
        }
        return true;
      },
    };
  });
}

function tinyCases(lab: Lab, plan: Plan, seed: number, disposers: (() => void)[]): Case[] {
  const engine = lab.engine;
  const u8 = lab.arena.u8;
  return plan.tinyWindows.map(({ regime, window }): Case => {
    const view = lab.alloc(window);
    const base = view.byteOffset;
    const half = window / 2;
    const count = plan.tinySegments;
    const { desc, hash } = tinySegments(window, count, plan.tinyMaxLen, seed);
    const table = lab.sgTable(count);
    disposers.push(() => { table.free(); lab.free(view); });
    let bytes = 0;
    for (let i = 0; i < 3 * count; i += 3) {
      table.push(base + desc[i], base + desc[i + 1], desc[i + 2]);
      bytes += desc[i + 2];
    }
    fillPattern(view, 3);
    const ab = new Uint8Array(window);
    ab.set(view);
    // The expected window after one pass: segments replayed in order.
    const initialDst = ab.slice(half);
    const expected = ab.slice();
    for (let i = 0; i < 3 * count; i += 3) expected.copyWithin(desc[i], desc[i + 1], desc[i + 1] + desc[i + 2]);
    const expectedDst = expected.subarray(half);
    const abs = new Uint32Array(desc.length);
    for (let i = 0; i < desc.length; i++) abs[i] = (i % 3 === 2 ? 0 : base) + desc[i];
    const m3 = 3 * count;

    const methods: Method[] = [
      ...engineMethods((strategy) => () => engine.sgCopy(table, strategy)),
      { id: "js:engine.copy", kind: "js-loop", strategy: "auto", side: "sab", body: () => {
        for (let i = 0; i < m3; i += 3) engine.copy(abs[i], abs[i + 1], abs[i + 2], "auto");
      } },
      { id: "sab:set", kind: "js-loop", strategy: null, side: "sab", body: () => {
        for (let i = 0; i < m3; i += 3) u8.set(u8.subarray(abs[i + 1], abs[i + 1] + abs[i + 2]), abs[i]);
      } },
      { id: "sab:copyWithin", kind: "js-loop", strategy: null, side: "sab", body: () => {
        for (let i = 0; i < m3; i += 3) u8.copyWithin(abs[i], abs[i + 1], abs[i + 1] + abs[i + 2]);
      } },
      { id: "ab:set", kind: "js-loop", strategy: null, side: "ab", body: () => {
        for (let i = 0; i < m3; i += 3) ab.set(ab.subarray(desc[i + 1], desc[i + 1] + desc[i + 2]), desc[i]);
      } },
      { id: "ab:copyWithin", kind: "js-loop", strategy: null, side: "ab", body: () => {
        for (let i = 0; i < m3; i += 3) ab.copyWithin(desc[i], desc[i + 1], desc[i + 1] + desc[i + 2]);
      } },
    ];
    return {
      regime, bytes, alignment: "random", segments: count, batch: 1,
      label: `${regime} ${count} segments of 1..${plan.tinyMaxLen} B in ${sizeLabel(window)}`,
      native: { kind: "tiny", window, segments: count, maxLen: plan.tinyMaxLen, seed, batch: 1 }, hash, methods,
      reset: (side) => (side === "sab" ? view : ab).set(initialDst, half),
      check: (side) => buf(side === "sab" ? view : ab, half).equals(buf(expectedDst)),
    };
  });
}

// ---------------------------------------------------------------------------
// Targets

function bestEngine(rows: CopyBenchRow[], ratio: (r: CopyBenchRow) => number | null): CopyBenchRow | undefined {
  let best: CopyBenchRow | undefined;
  for (const r of rows) {
    const v = ratio(r);
    if (r.kind !== "engine" || v === null) continue;
    if (best === undefined || v > (ratio(best) ?? -Infinity)) best = r;
  }
  return best;
}

const groupKey = (r: CopyBenchRow): string => `${r.regime}|${r.bytes}|${r.alignment}`;

function groups(rows: CopyBenchRow[], keep: (r: CopyBenchRow) => boolean): CopyBenchRow[][] {
  const m = new Map<string, CopyBenchRow[]>();
  for (const r of rows) if (keep(r)) m.set(groupKey(r), [...(m.get(groupKey(r)) ?? []), r]);
  return [...m.values()];
}

const fx = (v: number): string => `${v.toFixed(2)}x`;
const describe = (r: CopyBenchRow): string => r.regime === "contiguous"
  ? `contiguous ${sizeLabel(r.bytes)} ${r.alignment}`
  : `${r.regime} (${r.segments} ${r.alignment === "page" ? "pages" : "segments"}, ${sizeLabel(r.bytes)})`;

/** Each target: the worst case over its sizes of the best engine path. */
export function evaluateTargets(rows: CopyBenchRow[], native: NativeStatus): TargetResult[] {
  const noNative = native.status !== "ran" ? `not measured: ${native.reason ?? "native skipped"}` : null;
  const autoOf = (g: CopyBenchRow[]) => g.find((r) => r.method === "engine:auto");

  function worst(
    id: string, description: string, threshold: string, unit: string,
    keep: (r: CopyBenchRow) => boolean, ratio: (r: CopyBenchRow) => number | null,
    value: (r: CopyBenchRow) => number, met: (v: number) => boolean, needsNative: boolean,
  ): TargetResult {
    const gs = groups(rows, keep);
    if (needsNative && noNative) return { id, description, threshold, measured: null, unit, met: null, detail: noNative };
    const each: { v: number; best: CopyBenchRow; auto?: CopyBenchRow; group: CopyBenchRow[] }[] = [];
    for (const g of gs) {
      const best = bestEngine(g, ratio);
      if (best) each.push({ v: value(best), best, auto: autoOf(g), group: g });
    }
    if (each.length === 0) return { id, description, threshold, measured: null, unit, met: null, detail: "not measured: regime not run" };
    // The worst case is the one furthest from meeting the target.
    const lowerIsBetter = unit === "x native ns";
    const worstCase = each.reduce((w, e) =>
      (met(w.v) && !met(e.v)) || (met(w.v) === met(e.v) && (lowerIsBetter ? e.v > w.v : e.v < w.v)) ? e : w);
    const { v, best, auto, group } = worstCase;
    const autoV = auto ? value(auto) : null;
    let detail = `worst case ${describe(best)}: best engine path ${best.method} ${fx(v)}` +
      (auto && auto !== best && autoV !== null && Number.isFinite(autoV) ? `, engine:auto ${fx(autoV)}` : "");
    // Where the peer is not native, say what native reaches on the same case.
    const nativeRow = group.find((r) => r.kind === "native");
    const nativeV = nativeRow ? ratio(nativeRow) : null;
    if (!needsNative && nativeV !== null) detail += ` (native memcpy ${fx(nativeV)})`;
    if (each.length > 1) {
      detail += `; per case: ${each.map((e) => `${sizeLabel(e.best.bytes)}${e.best.alignment === "misaligned" ? " mis" : ""} ` +
        `${fx(e.v)} ${e.best.method.replace("engine:", "")}`).join(", ")}`;
    }
    return { id, description, threshold, measured: Number(v.toFixed(3)), unit, met: met(v), detail };
  }

  /** engine:auto against the fastest fixed strategy of the same case, worst case over every contiguous size and alignment. */
  function autoVsBest(): TargetResult {
    const id = "auto-vs-best-fixed";
    const description = "engine:auto vs the best fixed strategy (bulk, simd, words, bytes), every contiguous size and alignment";
    const threshold = ">= 0.95x best";
    const fixed = ["engine:bulk", "engine:simd", "engine:words", "engine:bytes"];
    const each = groups(rows, (r) => r.regime === "contiguous").flatMap((g) => {
      const auto = autoOf(g);
      const best = g.filter((r) => fixed.includes(r.method)).reduce<CopyBenchRow | undefined>((b, r) => (b === undefined || r.gbps > b.gbps ? r : b), undefined);
      return auto && best ? [{ v: auto.gbps / best.gbps, auto, best }] : [];
    });
    if (each.length === 0) return { id, description, threshold, measured: null, unit: "x best", met: null, detail: "not measured: regime not run" };
    const w = each.reduce((a, e) => (e.v < a.v ? e : a));
    const below = each.filter((e) => e.v < 0.95);
    return {
      id, description, threshold, measured: Number(w.v.toFixed(3)), unit: "x best", met: w.v >= 0.95,
      detail: `worst case ${describe(w.auto)}: auto ${w.auto.gbps.toFixed(2)} GB/s vs ${w.best.method} ${w.best.gbps.toFixed(2)} GB/s` +
        (below.length ? `; below 0.95x at ${below.map((e) => `${sizeLabel(e.auto.bytes)}${e.auto.alignment === "misaligned" ? " mis" : ""} ` +
          `(${fx(e.v)}, ${e.best.method.replace("engine:", "")})`).join(", ")}` : `; ${each.length} cases`),
    };
  }

  /**
   * The same target at each contiguous size: one line per size, met or
   * MISSED, the worse alignment of the size deciding.
   */
  function autoVsBestPerSize(): TargetResult[] {
    const fixed = ["engine:bulk", "engine:simd", "engine:words", "engine:bytes"];
    const bySize = new Map<number, { v: number; auto: CopyBenchRow; best: CopyBenchRow }[]>();
    for (const g of groups(rows, (r) => r.regime === "contiguous")) {
      const auto = autoOf(g);
      const best = g.filter((r) => fixed.includes(r.method)).reduce<CopyBenchRow | undefined>((b, r) => (b === undefined || r.gbps > b.gbps ? r : b), undefined);
      if (auto && best) bySize.set(auto.bytes, [...(bySize.get(auto.bytes) ?? []), { v: auto.gbps / best.gbps, auto, best }]);
    }
    return [...bySize].sort(([a], [b]) => a - b).map(([bytes, each]) => {
      const w = each.reduce((a, e) => (e.v < a.v ? e : a));
      return {
        id: `auto-vs-best-fixed-${sizeLabel(bytes).replace(" ", "")}`, description: `engine:auto vs the best fixed strategy at ${sizeLabel(bytes)}`,
        threshold: ">= 0.95x best", measured: Number(w.v.toFixed(3)), unit: "x best", met: w.v >= 0.95,
        detail: each.map((e) => `${e.auto.alignment} ${fx(e.v)} (auto ${e.auto.gbps.toFixed(2)} GB/s, ${e.best.method} ${e.best.gbps.toFixed(2)})`).join("; "),
      };
    });
  }

  return [
    autoVsBest(),
    ...autoVsBestPerSize(),
    worst("contiguous-native", "best engine path vs native memcpy, contiguous copies >= 64 KiB", ">= 0.95x native", "x native",
      (r) => r.regime === "contiguous" && r.bytes >= 64 * KiB, (r) => r.vsNative, (r) => r.vsNative ?? NaN, (v) => v >= 0.95, true),
    worst("pages-scatter-native", "best engine path vs native, 4 KiB page scatter", ">= 0.80x native", "x native",
      (r) => r.regime === "pages-scatter", (r) => r.vsNative, (r) => r.vsNative ?? NaN, (v) => v >= 0.8, true),
    worst("pages-gather-native", "best engine path vs native, 4 KiB page gather", ">= 0.80x native", "x native",
      (r) => r.regime === "pages-gather", (r) => r.vsNative, (r) => r.vsNative ?? NaN, (v) => v >= 0.8, true),
    worst("tiny-cache-native", "best engine path ns/segment vs native, cache-resident tiny segments", "<= 1.5x native ns/segment",
      "x native ns", (r) => r.regime === "tiny-cache", (r) => r.vsNative, (r) => 1 / (r.vsNative ?? NaN), (v) => v <= 1.5, true),
    worst("sab-set-4k-64k", "best engine path vs Uint8Array.set on the shared memory, contiguous 4..64 KiB", ">= 3x SAB set",
      "x SAB set", (r) => r.regime === "contiguous" && r.bytes >= 4 * KiB && r.bytes <= 64 * KiB,
      (r) => r.vsSabSet, (r) => r.vsSabSet ?? NaN, (v) => v >= 3, false),
  ];
}

// ---------------------------------------------------------------------------
// The run

const LAB_MEMORY = 1024 * MiB;

export async function runCopyBench(
  options: CopyBenchOptions = {},
  onProgress: (event: CopyBenchProgress) => void = () => {},
): Promise<CopyBenchResult> {
  const started = performance.now();
  const loadStart = os.loadavg()[0];
  const quick = options.quick ?? false;
  const seed = (options.seed ?? 0x5eed) >>> 0;
  const regimes = [...(options.regimes ?? regimeGroups)];
  const plan = planFor(quick);
  const budget = budgetFor(quick);
  // Each case in short rounds, the methods' order alternating (see the module comment).
  const rounds = quick ? 2 : 6;
  const roundBudget: NativeBudget = {
    ...budget, timeMs: budget.timeMs / rounds, minSamples: Math.ceil(budget.minSamples / rounds),
  };
  const notes: string[] = [];

  const lab = await Lab.create({ memoryBytes: LAB_MEMORY, poolBytes: Math.max(plan.poolPages * PAGE_SIZE, 2 * MiB) });
  const disposers: (() => void)[] = [];
  const rows: CopyBenchRow[] = [];
  if (options.native ?? true) onProgress({ phase: "native", message: "building the native memcpy peer (bench/native/memcpy.c)" });
  const { native, binary } = await nativePeer(options.native ?? true);
  try {
    const cases: Case[] = [
      ...(regimes.includes("contiguous") ? contiguousCases(lab, plan, disposers) : []),
      ...(regimes.includes("pages") ? pageCases(lab, plan, seed, disposers) : []),
      ...(regimes.includes("tiny") ? tinyCases(lab, plan, seed, disposers) : []),
    ];

    for (const [index, c] of cases.entries()) {
      onProgress({ phase: "case", index, total: cases.length, label: c.label });
      for (const m of c.methods) {
        c.reset(m.side);
        m.body();
        if (!c.check(m.side)) throw new Error(`bench: ${m.id} copied wrong bytes in ${c.label}`);
      }
      // Rounds of [the native peer (a subprocess, alone on the machine), then
      // every JavaScript-side method], samples pooled: a drift of the host's
      // state falls on every method of the case alike.
      let nativeSamples: number[] | undefined = binary === undefined ? undefined : [];
      const samples = new Map<string, number[]>(c.methods.map((m) => [m.id, []]));
      for (let round = 0; round < rounds; round++) {
        if (nativeSamples !== undefined) {
          const run = await runNative(binary!, [c.native], roundBudget);
          const n = run.status === "ran" ? run.results.get(nativeCaseKey(c.native)) : undefined;
          const why = run.status === "failed" ? run.reason : !n ? "no result" : n.hash !== c.hash
            ? `the C peer drew a different layout (hash ${n.hash} vs ${c.hash})` : undefined;
          if (why !== undefined) {
            notes.push(`native: ${c.label}: ${why}; its row is left out`);
            nativeSamples = undefined;
          } else {
            nativeSamples.push(...n!.samples);
          }
        }
        const order = round % 2 === 0 ? c.methods : [...c.methods].reverse();
        const got = measure(order.map((m) => ({ name: m.id, body: m.body, batch: c.batch })), roundBudget);
        for (const [id, v] of got) samples.get(id)!.push(...v);
      }
      const caseRows: CopyBenchRow[] = c.methods.map((m) => makeRow(c, m.id, m.kind, m.strategy, samples.get(m.id)!));
      if (nativeSamples) caseRows.unshift(makeRow(c, "native:memcpy", "native", null, nativeSamples));
      const nativeRow = caseRows.find((r) => r.kind === "native");
      const sabSet = caseRows.find((r) => r.method === "sab:set");
      for (const r of caseRows) {
        r.vsNative = nativeRow ? nativeRow.nsPerOp / r.nsPerOp : null;
        r.vsSabSet = sabSet ? sabSet.nsPerOp / r.nsPerOp : null;
      }
      rows.push(...caseRows);
    }
  } finally {
    for (const d of disposers.reverse()) d();
    lab.close();
  }

  if (native.status === "skipped") notes.push(`native memcpy rows skipped: ${native.reason}; vsNative is null`);
  const load = { start: loadStart, end: os.loadavg()[0] };
  const cpus = os.availableParallelism();
  // The run itself keeps about one CPU busy: only load beyond that counts.
  if (load.start > cpus / 2 || load.end > cpus / 2 + 1) {
    notes.push(`the machine was busy during this run (1-minute load average ${load.start.toFixed(1)} at the start, ` +
      `${load.end.toFixed(1)} at the end, on ${cpus} CPUs): other processes competed for the cores and caches, so ` +
      "ratios can be off by tens of percent; rerun on an idle machine");
  }
  notes.push(
    "figures are p50s of per-operation times; each sample times `batch` operations; ratios are speed ratios (>1 = faster)",
    "sg regimes: engine rows are one call per table; sab/ab/js rows are JavaScript loops with one call per segment",
    `misaligned contiguous copies: src at +${MISALIGN_SRC}, dst at +${MISALIGN_DST} bytes from 64-byte aligned bases`,
    "the VM is shared and noisy: compare ratios within a run, not absolute figures across runs",
  );
  return {
    machine: machineInfo(native.compiler), date: new Date().toISOString(), quick, seed, regimes, budget, rounds, load, native,
    rows, targets: evaluateTargets(rows, native), notes, durationMs: Math.round(performance.now() - started),
  };
}

function makeRow(c: Case, method: string, kind: MethodKind, strategy: StrategyName | null, samples: number[]): CopyBenchRow {
  const stats = summarize(samples);
  return {
    regime: c.regime, method, kind, strategy, bytes: c.bytes, alignment: c.alignment, segments: c.segments,
    batch: c.batch, gbps: c.bytes / stats.p50Ns, nsPerOp: stats.p50Ns,
    nsPerSegment: c.regime === "contiguous" ? null : stats.p50Ns / c.segments,
    vsNative: null, vsSabSet: null, stats,
  };
}

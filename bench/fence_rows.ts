/*
 * The fence benchmark's rows: sections, methods, budgets, the row and
 * result types, and the row arithmetic (a row from samples through
 * summarize(), vsRaw against the raw peer of the same case). Data only;
 * bench/fence.ts runs the benchmark (its comment says what each section
 * measures).
 */
import { summarize, type MachineInfo, type SampleStats, type TargetResult } from "../src/report.js";


export type FenceSection = "signal" | "signal-waiter" | "wake" | "resv" | "lock";
/** The sections in the order, which rows and tables follow. */
export const fenceSections: readonly FenceSection[] = ["signal", "signal-waiter", "wake", "resv", "lock"];
export type FenceMethodKind = "fence" | "raw" | "reference";

export interface FenceBenchOptions {
  /** A reduced run (under ~30 s). */
  quick?: boolean;
}

export interface FenceBudget {
  /** tinybench time per main-thread method and round (ms), after warmupMs of warm-up. */
  microMs: number;
  warmupMs: number;
  /** At least this many samples per main-thread method and round. */
  minSamples: number;
  /** Rounds of every main-thread case, its methods in alternating order, samples pooled. */
  rounds: number;
  /** Fences signalled per sample, no waiter. */
  signalBatch: number;
  /**
   * Cross-thread cases run in many short blocks, the methods taking turns
   * (the order reversed every other block): this host switches between
   * wake-up regimes within seconds, and short turns give every method the
   * same mix of them. Signals with a blocked waiter: blocks per method and
   * signals per block.
   */
  waiterBlocks: number;
  waiterSamples: number;
  /** How long the main thread lets a waiter fall asleep before it signals (µs). */
  settleUs: number;
  /** Ping-pong: blocks per method, round trips per block; the first `warmup` of each block are dropped. */
  roundTripBlocks: number;
  roundTrips: number;
  warmup: number;
  /**
   * Untimed blocks per method before the timed ones, so that both threads'
   * code is optimised (tinybench's warm-up, for the cross-thread cases).
   */
  warmupBlocks: number;
  /** Contended lock: windows per method, each lockMs long. */
  lockWindows: number;
  lockMs: number;
  /** Bound of every single wait (ms). */
  timeoutMs: number;
}

export interface FenceBenchRow {
  section: FenceSection;
  case: string;
  method: string;
  kind: FenceMethodKind;
  /** Fences involved (resv cases), else null. */
  fences: number | null;
  /** Operations per sample (1 where each sample is one signal or round trip). */
  batch: number;
  /** p50 ns per operation (a signal, a round trip, a resv call, a lock acquisition). */
  nsPerOp: number;
  /** Cost relative to the raw peer of the same case: nsPerOp / raw nsPerOp (> 1: slower). */
  vsRaw: number | null;
  stats: SampleStats;
  /**
   * Case-specific figures: waiterAsleep (the fraction of signals that found a
   * registered waiter), acquisitionsPerSec, acquisitions, contended,
   * contendedFraction, waitMs (the Mutex's statistics).
   */
  extra: Record<string, number | null>;
}

export interface FenceBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  budget: FenceBudget;
  /** The 1-minute load average when the run started and when it ended. */
  load: { start: number; end: number };
  rows: FenceBenchRow[];
  targets: TargetResult[];
  notes: string[];
  durationMs: number;
}

export interface FenceBenchProgress {
  index: number;
  total: number;
  label: string;
}

export function fenceBudgetFor(quick: boolean): FenceBudget {
  return quick
    ? { microMs: 40, warmupMs: 10, minSamples: 10, rounds: 2, signalBatch: 256, waiterBlocks: 4, waiterSamples: 75,
      settleUs: 200, roundTripBlocks: 12, roundTrips: 300, warmup: 20, warmupBlocks: 6, lockWindows: 4, lockMs: 60,
      timeoutMs: 5000 }
    : { microMs: 200, warmupMs: 30, minSamples: 20, rounds: 4, signalBatch: 256, waiterBlocks: 10, waiterSamples: 200,
      settleUs: 200, roundTripBlocks: 40, roundTrips: 500, warmup: 20, warmupBlocks: 10, lockWindows: 12, lockMs: 250,
      timeoutMs: 5000 };
}

// ---------------------------------------------------------------------------
// Statistics and rows

export interface RowSpec {
  section: FenceSection;
  case: string;
  method: string;
  kind: FenceMethodKind;
  fences?: number;
  batch: number;
}

export function makeRow(spec: RowSpec, samplesNs: number[], extra: Record<string, number | null> = {}): FenceBenchRow {
  const stats = summarize(samplesNs);
  return {
    section: spec.section, case: spec.case, method: spec.method, kind: spec.kind, fences: spec.fences ?? null,
    batch: spec.batch, nsPerOp: stats.p50Ns, vsRaw: null, stats, extra,
  };
}

/** Fills vsRaw: each row against the raw row of its section and case. */
export function addRatios(rows: FenceBenchRow[]): void {
  for (const r of rows) {
    const raw = rows.find((p) => p.kind === "raw" && p.section === r.section && p.case === r.case);
    r.vsRaw = raw && raw.nsPerOp > 0 ? r.nsPerOp / raw.nsPerOp : null;
  }
}


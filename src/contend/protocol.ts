/*
 * Between the contention experiment's host (run.ts) and its CPU threads
 * (workers/contend-cpu.ts): what a thread is given, what it answers, and the
 * control block both sides share in the arena.
 *
 * Control block (lab.alloc, user memory; i32 words, then f64 counters):
 *   START       0 -> 1 by the host once every thread is ready; the threads
 *               sleep on it (Atomics.wait) with the run's timeout; 0 -> 2
 *               (ABORTED) when the run failed before it began: a thread
 *               waiting then does nothing
 *   STOP        0 -> 1 by the host when the duration is over (iterations:
 *               once every thread has done its own) or the run failed; a
 *               thread that begins late still does at least one operation
 *   GENERATION  the run's generation counter (Atomics.add): unique stamps
 *   per thread  ops, bytes, tears, waits (f64, written by that thread only,
 *               read by the host for progress and at the end); the CPU
 *               threads' slots first, then one per device submitter thread
 *               (submitters "own", set after each round)
 * The control plane is comlink: hello() answers once the thread is ready,
 * run() once its loop has ended, with its wait samples.
 */
import type { LabHandle } from "../lab.js";
import { nowMs } from "../memory/futex.js";
import type { Sync } from "../sync/sync.js";
import type { ResolvedOptions, WaitStrategy } from "./options.js";
import type { SubmitterCounts, SubmitterData } from "./devices.js";

export type CpuRole = "writer" | "reader";

export interface CpuThreadData {
  handle: LabHandle;
  role: CpuRole;
  /** Writer or reader number (0-based), also its stamp's writer id. */
  index: number;
  /** This thread's counter slot in the control block. */
  slot: number;
  control: number;
  /** The shared buffers' records (DmaBufRecord.attach). */
  buffers: number[];
  /** This thread's own buffer's record (sharing < 1), or none. */
  own: number[];
  /** The fraction of operations on the shared buffers (options.ts, sharedAt). */
  sharing: number;
  size: number;
  chunks: number;
  wait: WaitStrategy;
  bypassFences: boolean;
  /** Operations to do, or null: until STOP. */
  iterations: number | null;
  timeoutMs: number;
}

export interface CpuRunResult {
  /** Every fence wait of the thread, ns. */
  waitsNs: Float64Array;
}

export interface ContendCpuApi {
  hello(): string;
  run(): Promise<CpuRunResult>;
}

/** What a device's submitter thread is given (workers/contend-submitter.ts). */
export interface SubmitterThreadData {
  handle: LabHandle;
  /** The device's number in the run. */
  index: number;
  /** Its counter slot in the control block. */
  slot: number;
  control: number;
  options: ResolvedOptions;
  device: SubmitterData;
}

export interface ContendSubmitterApi {
  hello(): string;
  /** Drives the device from START for the run's duration or iterations; its counters. */
  run(): Promise<SubmitterCounts[]>;
}

export interface Counters {
  ops: number;
  bytes: number;
  tears: number;
  waits: number;
}

const START = 0;
const ABORTED = 2;
const STOP = 1;
const GENERATION = 2;
const COUNTERS = 64;
const SLOT_BYTES = 32;
/** A counter slot's f64 words. */
const C_OPS = 0;
const C_BYTES = 1;
const C_TEARS = 2;
const C_WAITS = 3;

export const controlBytes = (slots: number): number => COUNTERS + slots * SLOT_BYTES;

/** A view of the control block at `offset` (zeroed by lab.alloc). */
export class Control {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;

  constructor(sync: Sync, readonly offset: number) {
    this.i32 = sync.i32;
    this.f64 = sync.f64;
  }

  private word(i: number): number {
    return (this.offset >>> 2) + i;
  }

  start(): void {
    Atomics.store(this.i32, this.word(START), 1);
    Atomics.notify(this.i32, this.word(START));
  }

  /** Sleeps until start() (true) or the timeout (false). */
  waitStart(timeoutMs: number): boolean {
    const deadline = nowMs() + timeoutMs;
    while (Atomics.load(this.i32, this.word(START)) === 0) {
      const left = deadline - nowMs();
      if (left <= 0) return false;
      Atomics.wait(this.i32, this.word(START), 0, left);
    }
    return true;
  }

  /**
   * Ends the run. Before start() (a failed set-up) it aborts it: threads
   * waiting to start wake up and do nothing. After start(), a thread that
   * begins late still does its first operation (or all its iterations).
   */
  stop(): void {
    Atomics.store(this.i32, this.word(STOP), 1);
    Atomics.compareExchange(this.i32, this.word(START), 0, ABORTED);
    Atomics.notify(this.i32, this.word(START));
  }

  get stopped(): boolean {
    return Atomics.load(this.i32, this.word(STOP)) !== 0;
  }

  /** stop() came before start(): the run never began. */
  get aborted(): boolean {
    return Atomics.load(this.i32, this.word(START)) === ABORTED;
  }

  nextGeneration(): number {
    return (Atomics.add(this.i32, this.word(GENERATION), 1) + 1) >>> 0;
  }

  private at(slot: number): number {
    return (this.offset + COUNTERS + slot * SLOT_BYTES) >>> 3;
  }

  counters(slot: number): Counters {
    const i = this.at(slot);
    return { ops: this.f64[i + C_OPS], bytes: this.f64[i + C_BYTES], tears: this.f64[i + C_TEARS], waits: this.f64[i + C_WAITS] };
  }

  count(slot: number, bytes: number, torn: boolean): void {
    const i = this.at(slot);
    this.f64[i + C_OPS]++;
    this.f64[i + C_BYTES] += bytes;
    if (torn) this.f64[i + C_TEARS]++;
  }

  /** A submitter thread's totals so far (its slot is its own). */
  set(slot: number, c: { ops: number; tears: number }): void {
    const i = this.at(slot);
    this.f64[i + C_OPS] = c.ops;
    this.f64[i + C_TEARS] = c.tears;
  }

  countWait(slot: number): void {
    this.f64[this.at(slot) + C_WAITS]++;
  }
}

/*
 * The fence benchmark: the sync layer's hot paths, each beside its raw
 * Atomics equivalent measured in the same run, with the ratio.
 *
 * Sections (row.section) and their cases (row.case):
 *   signal         no waiter: a batch of pre-created pending fences is
 *                  signalled; only the signals are timed (creation before,
 *                  put after). fence.signal(), checkAndSignal(), the engine's
 *                  fence_signal called directly, and the lab clock read a
 *                  signal takes, against Atomics.store + Atomics.notify on a
 *                  word per fence that nobody waits on.
 *   signal-waiter  waiter blocked: a worker is blocked in Fence.wait() (raw:
 *                  Atomics.wait) on the fence being signalled; the main
 *                  thread lets it fall asleep (settleUs), then times the one
 *                  signal. The signaller's cost only.
 *   wake           worker -> worker: two workers ping-pong, each blocking on
 *                  a fence the other signals (raw: Atomics.wait / notify on
 *                  two words); worker -> main: a worker blocks in wait(), the
 *                  main thread signals and awaits Fence.waitAsync() (raw:
 *                  Atomics.waitAsync). Figures are round trips (two
 *                  signal-to-wake latencies), timed by the side that starts.
 *                  Worker -> worker also runs the fences through the engine
 *                  (fence_signal / fence_wait) as a reference: the protocol
 *                  without the JavaScript API. Wake rows split round trips
 *                  into quick (< QUICK_WAKE_NS) and slow wake-ups.
 *   resv           add xN: N times (lock, reserveFences(1), addFence, unlock)
 *                  into an empty resv (raw: N times a compareExchange lock,
 *                  the slot and count stores, the unlocking store);
 *                  test, N signalled / N pending: testSignaled(BOOKKEEP) over N
 *                  fences (raw: Atomics.load of the N status words).
 *   lock           uncontended: Mutex lock() + unlock() on the main thread
 *                  (raw: compareExchange + store); contended: two workers
 *                  take one lock in a loop for lockMs (raw: the same
 *                  three-state futex lock without the Mutex's bookkeeping),
 *                  ns per acquisition and acquisitions/s, with the Mutex's
 *                  own statistics.
 *
 * Methods (row.kind): "fence" the product's API, "raw" the bare Atomics peer
 * of the same case, "reference" a component shown to explain a cost.
 *
 * Measurement: main-thread cases run under tinybench, each sample timing
 * `batch` operations (only the timed part: set-up and clean-up of a sample
 * are outside it) and recording the mean per operation; cross-thread cases
 * record one operation per sample (a signal, a round trip) with
 * performance.now(), whose own cost (tens of ns here) is in every such
 * sample, the raw peer's alike. Main-thread cases run in `rounds` rounds,
 * the methods in alternating order; cross-thread cases in many short
 * blocks, the methods taking turns, after untimed warm-up blocks; samples
 * are pooled, so that a drift of the host falls on every method alike.
 * Statistics come from summarize() (src/report/stats.ts): p50, p90, p99,
 * the 95% relative margin of error of the mean.
 * vsRaw is a cost ratio, p50 over the raw peer's p50 (> 1: slower), which
 * is how the targets are stated.
 *
 * Contract: runFenceBench() returns data and prints nothing; progress goes
 * to the onProgress callback. Workers are always terminated, every wait in
 * either thread is bounded (a timeout fails the run with an error naming
 * the wait), and each fence and resv created is put before the lab closes.
 */
import { existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Bench } from "tinybench";
import { Lab } from "../src/api/lab.js";
import { FENCE_STATUS, FENCE_WAITERS } from "../src/engine/abi.js";
import { artifactUrl } from "../src/engine/artifacts.js";
import { Mutex } from "../src/memory/mutex.js";
import type { Fence } from "../src/sync/fence.js";
import { DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_WRITE, type Resv } from "../src/sync/resv.js";
import type { Timeline } from "../src/sync/timeline.js";
import type {
  BenchFenceData, BenchFenceJob, BenchFenceReply, BenchFenceRequest, BenchFenceResult, BenchMode, HammerResult, PingMode,
} from "../workers/bench-fence.js";
import { durationLabel, machineInfo, summarize, type MachineInfo, type SampleStats, type TargetResult } from "../src/report.js";

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

interface RowSpec {
  section: FenceSection;
  case: string;
  method: string;
  kind: FenceMethodKind;
  fences?: number;
  batch: number;
}

function makeRow(spec: RowSpec, samplesNs: number[], extra: Record<string, number | null> = {}): FenceBenchRow {
  const stats = summarize(samplesNs);
  return {
    section: spec.section, case: spec.case, method: spec.method, kind: spec.kind, fences: spec.fences ?? null,
    batch: spec.batch, nsPerOp: stats.p50Ns, vsRaw: null, stats, extra,
  };
}

/** Fills vsRaw: each row against the raw row of its section and case. */
function addRatios(rows: FenceBenchRow[]): void {
  for (const r of rows) {
    const raw = rows.find((p) => p.kind === "raw" && p.section === r.section && p.case === r.case);
    r.vsRaw = raw && raw.nsPerOp > 0 ? r.nsPerOp / raw.nsPerOp : null;
  }
}

// ---------------------------------------------------------------------------
// Main-thread cases under tinybench

interface MicroTask extends RowSpec {
  /** Performs `batch` operations; returns the ms spent in the timed part. */
  run: () => number;
}

const taskKey = (t: RowSpec): string => `${t.case} | ${t.method}`;

/** Runs the tasks under tinybench; per-operation samples (ns) by taskKey. */
function measureTimed(tasks: MicroTask[], budget: FenceBudget): Map<string, number[]> {
  const bench = new Bench({
    time: budget.microMs, iterations: budget.minSamples, warmupTime: budget.warmupMs, warmupIterations: 2,
    retainSamples: true, throws: true,
  });
  for (const t of tasks) {
    bench.add(taskKey(t), () => {
      const t0 = performance.now();
      const timed = t.run();
      return { overriddenDuration: timed / t.batch, overriddenIterationCost: performance.now() - t0 };
    }, { async: false });
  }
  bench.runSync();
  const out = new Map<string, number[]>();
  for (const task of bench.tasks) {
    const r = task.result;
    if (r.state !== "completed") throw new Error(`bench fence: task ${task.name} ended in state ${r.state}`);
    out.set(task.name, Array.from(r.latency.samples ?? [], (ms) => ms * 1e6));
  }
  return out;
}

/** Rounds of a case's tasks, alternating their order; rows with pooled samples. */
function runMicro(tasks: MicroTask[], budget: FenceBudget): FenceBenchRow[] {
  const samples = new Map<string, number[]>(tasks.map((t) => [taskKey(t), []]));
  for (let round = 0; round < budget.rounds; round++) {
    const order = round % 2 === 0 ? tasks : [...tasks].reverse();
    for (const [key, got] of measureTimed(order, budget)) {
      const into = samples.get(key)!;
      for (const v of got) into.push(v);
    }
  }
  return tasks.map((t) => makeRow(t, samples.get(taskKey(t))!));
}

/** Times `fn` (which performs `batch` operations). */
function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

/** Operations per sample so that a sample's timed part lasts about targetUs. */
function batchFor(once: () => void, targetUs: number, max: number): number {
  once();
  let best = Infinity;
  for (let i = 0; i < 5; i++) best = Math.min(best, timed(once));
  return Math.max(1, Math.min(max, Math.ceil(targetUs / 1000 / Math.max(best, 1e-5))));
}

/** Arena words for the raw peers: lab.alloc()ed, freed with the lab's bench state. */
class Words {
  readonly views: Uint8Array[] = [];
  constructor(readonly lab: Lab) {}

  /** `count` Int32 words, each on its own cache line; returns the i32 index of the first (stride 16). */
  lines(count: number): number {
    const v = this.lab.alloc(count * 64);
    this.views.push(v);
    return v.byteOffset >>> 2;
  }

  /** A byte range of the arena (64-byte aligned). */
  bytes(n: number): number {
    const v = this.lab.alloc(n);
    this.views.push(v);
    return v.byteOffset;
  }

  free(): void {
    for (const v of this.views.splice(0)) this.lab.free(v);
  }
}

function signalTasks(lab: Lab, words: Words, budget: FenceBudget, timelines: Timeline[]): MicroTask[] {
  const { sync } = lab;
  const i32 = lab.arena.i32;
  const wasm = lab.engine.wasm;
  const B = budget.signalBatch;
  const tl = sync.timeline({ name: "bench-signal" });
  timelines.push(tl);
  const fresh = (): Fence[] => {
    const fences = new Array<Fence>(B);
    for (let i = 0; i < B; i++) fences[i] = tl.createFence();
    return fences;
  };
  const putAll = (fences: Fence[]) => { for (const f of fences) f.put(); };
  const base = words.lines(B);
  const spec = { section: "signal" as const, case: "no waiter", batch: B };
  let sink = 0;

  // One checked run of each fence path before timing: signalled, status 1, no waiter.
  for (const how of ["signal", "checkAndSignal", "wasm"] as const) {
    const fences = fresh();
    for (const f of fences) {
      if (how === "signal") f.signal();
      else if (how === "checkAndSignal") { if (f.checkAndSignal()) throw new Error("bench fence: a fresh fence was signalled"); }
      else if (wasm.fence_signal(f.offset, 0, sync.clock.nowNs()) !== 0) throw new Error("bench fence: fence_signal failed");
      if (f.status !== 1 || i32[(f.offset + FENCE_WAITERS) >>> 2] !== 0) throw new Error(`bench fence: ${how} left status ${f.status}`);
    }
    putAll(fences);
  }

  return [
    { ...spec, method: "fence.signal()", kind: "fence", run: () => {
      const fences = fresh();
      const dt = timed(() => { for (let i = 0; i < B; i++) fences[i].signal(); });
      putAll(fences);
      return dt;
    } },
    { ...spec, method: "fence.checkAndSignal()", kind: "fence", run: () => {
      const fences = fresh();
      let already = false;
      const dt = timed(() => { for (let i = 0; i < B; i++) already = fences[i].checkAndSignal() || already; });
      putAll(fences);
      if (already) throw new Error("bench fence: checkAndSignal found a fresh fence signalled");
      return dt;
    } },
    { ...spec, method: "engine fence_signal (wasm, direct)", kind: "reference", run: () => {
      const fences = fresh();
      const offsets = Int32Array.from(fences, (f) => f.offset);
      const ts = sync.clock.nowNs();
      let rc = 0;
      const dt = timed(() => { for (let i = 0; i < B; i++) rc |= wasm.fence_signal(offsets[i], 0, ts); });
      putAll(fences);
      if (rc !== 0) throw new Error(`bench fence: fence_signal returned ${rc}`);
      return dt;
    } },
    { ...spec, method: "timestamp: sync.clock.nowNs()", kind: "reference", run: () =>
      timed(() => { for (let i = 0; i < B; i++) sink += sync.clock.nowNs(); }) },
    { ...spec, method: "raw: Atomics.store only", kind: "reference", run: () => {
      for (let i = 0; i < B; i++) i32[base + 16 * i] = 0;
      return timed(() => { for (let i = 0; i < B; i++) Atomics.store(i32, base + 16 * i, 1); });
    } },
    { ...spec, method: "raw: Atomics.store + notify", kind: "raw", run: () => {
      for (let i = 0; i < B; i++) i32[base + 16 * i] = 0;
      let woken = 0;
      const dt = timed(() => {
        for (let i = 0; i < B; i++) {
          Atomics.store(i32, base + 16 * i, 1);
          woken += Atomics.notify(i32, base + 16 * i);
        }
      });
      if (woken !== 0 || sink < 0) throw new Error("bench fence: a raw notify woke a waiter");
      return dt;
    } },
  ];
}

/** Resv cases for one N: add, test with N signalled fences, test with N pending. */
function resvTasks(lab: Lab, words: Words, n: number, pending: Fence[], resvSignalled: Resv, resvPending: Resv,
  signalled: Fence[]): MicroTask[] {
  const { sync } = lab;
  const i32 = lab.arena.i32;
  const u32 = lab.arena.u32;
  const W = DMA_RESV_USAGE_WRITE;
  const fill = (r: Resv) => {
    for (let i = 0; i < n; i++) {
      r.lock();
      r.reserveFences(1);
      r.addFence(pending[i], W);
      r.unlock();
    }
  };
  // Reps per sample: about 40 µs of adds (at most 256 resv objects per sample).
  const reps = batchFor(() => { const r = sync.resv(); fill(r); r.put(); }, 40, 256);
  // The raw resv: a lock word, a count word and 64 slots {fence, usage}; up to RAW_BLOCKS of them, used in turn.
  const RAW_WORDS = 2 + 2 * 64;
  const RAW_BLOCKS = 256;
  const rawBase = words.bytes(RAW_BLOCKS * RAW_WORDS * 4) >>> 2;
  const rawFill = (b: number) => {
    for (let i = 0; i < n; i++) {
      while (Atomics.compareExchange(i32, b, 0, 1) !== 0) { /* uncontended: never spins */ }
      u32[b + 2 + 2 * i] = pending[i].offset;
      u32[b + 3 + 2 * i] = W;
      u32[b + 1] = i + 1;
      Atomics.store(i32, b, 0);
    }
  };
  const rawReps = batchFor(() => { for (let k = 0; k < 16; k++) rawFill(rawBase + k * RAW_WORDS); }, 20, 4096) * 16;
  const statusPending = Int32Array.from(pending.slice(0, n), (f) => (f.offset + FENCE_STATUS) >>> 2);
  const statusSignalled = Int32Array.from(signalled.slice(0, n), (f) => (f.offset + FENCE_STATUS) >>> 2);
  const rawTest = (idx: Int32Array) => {
    let all = 1;
    for (let j = 0; j < n; j++) if (Atomics.load(i32, idx[j]) === 0) all = 0;
    return all === 1;
  };
  const B = DMA_RESV_USAGE_BOOKKEEP;
  const testBatchS = batchFor(() => resvSignalled.testSignaled(B), 40, 4096);
  const testBatchP = batchFor(() => resvPending.testSignaled(B), 40, 4096);
  const rawBatch = batchFor(() => rawTest(statusPending), 20, 4096) * 16;
  const checks: [string, boolean][] = [
    ["testSignaled with signalled fences", resvSignalled.testSignaled(B) === true],
    ["testSignaled with pending fences", resvPending.testSignaled(B) === false],
    ["raw test with signalled fences", rawTest(statusSignalled)],
    ["raw test with pending fences", !rawTest(statusPending)],
  ];
  const probe = sync.resv();
  fill(probe);
  checks.push(["addFence count", probe.count === n]);
  probe.put();
  for (const [what, ok] of checks) if (!ok) throw new Error(`bench fence: resv n=${n}: ${what} answered wrong`);

  const spec = { section: "resv" as const, fences: n };
  const add = `add x${n}`;
  const testS = `test, ${n} signalled`;
  const testP = `test, ${n} pending`;
  const testBody = (r: Resv, batch: number, expect: boolean) => () => {
    let wrong = 0;
    const dt = timed(() => { for (let k = 0; k < batch; k++) if (r.testSignaled(B) !== expect) wrong++; });
    if (wrong) throw new Error(`bench fence: testSignaled answered wrong ${wrong} times`);
    return dt;
  };
  const rawTestBody = (idx: Int32Array, batch: number, expect: boolean) => () => {
    let wrong = 0;
    const dt = timed(() => { for (let k = 0; k < batch; k++) if (rawTest(idx) !== expect) wrong++; });
    if (wrong) throw new Error(`bench fence: the raw test answered wrong ${wrong} times`);
    return dt;
  };
  return [
    { ...spec, case: add, method: "resv: lock, reserve(1), addFence, unlock", kind: "fence", batch: reps, run: () => {
      const objs = Array.from({ length: reps }, () => sync.resv());
      const dt = timed(() => { for (const r of objs) fill(r); });
      for (const r of objs) r.put();
      return dt;
    } },
    { ...spec, case: add, method: "raw: CAS lock, slot+count stores, unlock", kind: "raw", batch: rawReps, run: () =>
      timed(() => { for (let k = 0; k < rawReps; k++) rawFill(rawBase + (k % RAW_BLOCKS) * RAW_WORDS); }) },
    { ...spec, case: testS, method: "resv.testSignaled(BOOKKEEP)", kind: "fence", batch: testBatchS,
      run: testBody(resvSignalled, testBatchS, true) },
    { ...spec, case: testS, method: "raw: Atomics.load of N status words", kind: "raw", batch: rawBatch,
      run: rawTestBody(statusSignalled, rawBatch, true) },
    { ...spec, case: testP, method: "resv.testSignaled(BOOKKEEP)", kind: "fence", batch: testBatchP,
      run: testBody(resvPending, testBatchP, false) },
    { ...spec, case: testP, method: "raw: Atomics.load of N status words", kind: "raw", batch: rawBatch,
      run: rawTestBody(statusPending, rawBatch, false) },
  ];
}

function uncontendedLockTasks(lab: Lab, words: Words): MicroTask[] {
  const i32 = lab.arena.i32;
  const mutex = new Mutex(lab.memory.buffer, words.bytes(64));
  mutex.init();
  const raw = words.lines(1);
  const batch = 1024;
  const spec = { section: "lock" as const, case: "uncontended (main thread)", batch };
  return [
    { ...spec, method: "Mutex lock() + unlock()", kind: "fence", run: () =>
      timed(() => { for (let k = 0; k < batch; k++) { mutex.lock(); mutex.unlock(); } }) },
    { ...spec, method: "raw: compareExchange + store", kind: "raw", run: () => {
      let failed = 0;
      const dt = timed(() => {
        for (let k = 0; k < batch; k++) {
          if (Atomics.compareExchange(i32, raw, 0, 1) !== 0) failed++;
          Atomics.store(i32, raw, 0);
        }
      });
      if (failed) throw new Error("bench fence: an uncontended raw lock was held");
      return dt;
    } },
  ];
}

// ---------------------------------------------------------------------------
// Workers

class BenchWorker {
  private serial = 0;
  private readonly pending = new Map<number, { resolve: (r: BenchFenceResult) => void; reject: (e: Error) => void }>();
  private dead: Error | null = null;
  private readonly exited: Promise<void>;

  private constructor(private readonly worker: import("node:worker_threads").Worker, readonly name: string) {
    this.exited = new Promise((resolve) => worker.once("exit", () => resolve()));
    worker.on("message", (m: BenchFenceReply) => {
      if (m.type === "ready") return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === "done") p.resolve(m.result);
      else p.reject(new Error(`bench fence: worker ${name}: ${m.message}`));
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on("error", (e) => fail(e instanceof Error ? e : new Error(String(e))));
    worker.on("exit", (code) => fail(new Error(`bench fence: worker ${name} exited (code ${code})`)));
  }

  static readonly url = artifactUrl("workers/bench-fence.mjs");

  /** Throws when the bundle is missing: before a run spends its first minute on the main thread. */
  static checkBuilt(): void {
    if (!existsSync(BenchWorker.url)) {
      throw new Error(`bench fence: the worker bundle ${fileURLToPath(BenchWorker.url)} is missing; build it first (npm run build)`);
    }
  }

  static async start(lab: Lab, name: string, timeoutMs: number): Promise<BenchWorker> {
    BenchWorker.checkBuilt();
    const url = BenchWorker.url;
    const { Worker } = await import("node:worker_threads");
    const data: BenchFenceData = { handle: lab.share(), name };
    const worker = new Worker(url, { workerData: data, name });
    const w = new BenchWorker(worker, name);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`bench fence: worker ${name} did not start within ${timeoutMs} ms`)), timeoutMs);
        worker.on("message", (m: BenchFenceReply) => { if (m.type === "ready") { clearTimeout(timer); resolve(); } });
        worker.once("error", (e) => { clearTimeout(timer); reject(e); });
        worker.once("exit", (code) => { clearTimeout(timer); reject(new Error(`bench fence: worker ${name} exited during start-up (code ${code})`)); });
      });
    } catch (e) {
      await w.terminate();
      throw e;
    }
    return w;
  }

  /** Runs a job; rejects if the worker fails, exits, or takes longer than limitMs. */
  run(job: BenchFenceJob, limitMs: number): Promise<BenchFenceResult> {
    if (this.dead) return Promise.reject(this.dead);
    const id = ++this.serial;
    return new Promise<BenchFenceResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`bench fence: worker ${this.name}: a ${job.kind} job took longer than ${limitMs} ms`));
      }, limitMs);
      this.pending.set(id, {
        resolve: (r) => { clearTimeout(timer); resolve(r); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.worker.postMessage({ id, job } satisfies BenchFenceRequest);
    });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}

/** Shared state of the cross-thread cases. */
interface CrossContext {
  lab: Lab;
  budget: FenceBudget;
  workers: BenchWorker[];
  timeline: Timeline;
  /** i32 indices of control words, each on its own cache line. */
  armed: number;
  ping: number;
  pong: number;
  counter: number;
  ready: number;
  start: number;
  stop: number;
  /** Byte offsets of two Int32 lists of fence offsets (capacity: the largest round). */
  listA: number;
  listB: number;
  /** i32 index of the waiter case's raw words (stride 16). */
  waiterWords: number;
  /** Byte offsets of the contended case's Mutex and raw lock word. */
  mutex: number;
  rawLock: number;
}

/** A job's outer bound: its waits are bounded by timeoutMs each; this catches a worker that stopped answering. */
const jobLimit = (budget: FenceBudget, ops: number): number => 30_000 + ops * 5 + 2 * budget.timeoutMs;

function spinUntil(what: string, deadline: number, done: () => boolean): void {
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`bench fence: ${what} did not happen in time`);
  }
}

function createFences(ctx: CrossContext, count: number, list: number): Fence[] {
  const fences = new Array<Fence>(count);
  const offsets = new Int32Array(ctx.lab.memory.buffer, list, count);
  for (let k = 0; k < count; k++) {
    fences[k] = ctx.timeline.createFence();
    offsets[k] = fences[k].offset;
  }
  return fences;
}

/** Terminates the workers before the fences they may still touch are put. */
async function withFences<T>(ctx: CrossContext, fences: Fence[], body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    await Promise.allSettled(ctx.workers.map((w) => w.terminate()));
    throw e;
  } finally {
    for (const f of fences) f.put();
  }
}

/** One round of signals with a blocked waiter: per-signal ns, and how many found a waiter registered. */
async function waiterRound(ctx: CrossContext, mode: BenchMode): Promise<{ samples: number[]; asleep: number }> {
  const { lab, budget } = ctx;
  const i32 = lab.arena.i32;
  const count = budget.waiterSamples;
  const fences = mode === "fence" ? createFences(ctx, count, ctx.listA) : [];
  if (mode === "raw") for (let k = 0; k < count; k++) i32[ctx.waiterWords + 16 * k] = 0;
  Atomics.store(i32, ctx.armed, 0);
  return withFences(ctx, fences, async () => {
    const job = ctx.workers[0].run({
      kind: "waiter", mode, count, list: ctx.listA, words: ctx.waiterWords, armed: ctx.armed, timeoutMs: budget.timeoutMs,
    }, jobLimit(budget, count));
    // A failing worker cannot be heard while this loop spins (its reply waits
    // for the event loop); every spin is bounded instead, and `await job` reports it.
    job.catch(() => {});
    const samples: number[] = [];
    let asleep = 0;
    const settleMs = budget.settleUs / 1000;
    for (let k = 0; k < count; k++) {
      spinUntil(`waiter ${k} arming`, performance.now() + budget.timeoutMs, () => Atomics.load(i32, ctx.armed) === k + 1);
      const until = performance.now() + settleMs;
      spinUntil("settling", until + budget.timeoutMs, () => performance.now() >= until);
      let t0: number, t1: number;
      if (mode === "fence") {
        const f = fences[k];
        if (Atomics.load(i32, (f.offset + FENCE_WAITERS) >>> 2) !== 0) asleep++;
        t0 = performance.now();
        f.signal();
        t1 = performance.now();
      } else {
        const w = ctx.waiterWords + 16 * k;
        t0 = performance.now();
        Atomics.store(i32, w, 1);
        asleep += Atomics.notify(i32, w);
        t1 = performance.now();
      }
      samples.push((t1 - t0) * 1e6);
    }
    await job;
    return { samples, asleep };
  });
}

/** One block of ping-pong round trips (ms -> ns), worker to worker or worker to main. */
async function pingPongRound(ctx: CrossContext, mode: PingMode, path: "worker" | "main"): Promise<number[]> {
  const { lab, budget } = ctx;
  const i32 = lab.arena.i32;
  const count = budget.roundTrips;
  if (mode === "engine" && path === "main") throw new Error("bench fence: the engine's fence_wait blocks; not on the main thread");
  const ping = mode !== "raw" ? createFences(ctx, count, ctx.listA) : [];
  const pong = mode !== "raw" ? createFences(ctx, count, ctx.listB) : [];
  Atomics.store(i32, ctx.ping, 0);
  Atomics.store(i32, ctx.pong, 0);
  const base = { mode, count, pingList: ctx.listA, pongList: ctx.listB, pingWord: ctx.ping, pongWord: ctx.pong,
    timeoutMs: budget.timeoutMs };
  const limit = jobLimit(budget, count);
  return withFences(ctx, [...ping, ...pong], async () => {
    const echo = ctx.workers[path === "worker" ? 1 : 0].run({ kind: "echo", ...base }, limit);
    let times: Float64Array;
    if (path === "worker") {
      const [a] = await Promise.all([ctx.workers[0].run({ kind: "ping", ...base }, limit), echo]);
      times = (a as { times: Float64Array }).times;
    } else {
      let failure: unknown;
      echo.catch((e) => { failure = e; });
      times = new Float64Array(count);
      const T = budget.timeoutMs;
      for (let k = 0; k < count; k++) {
        if (failure) throw failure;
        const t0 = performance.now();
        if (mode === "fence") {
          ping[k].signal();
          if ((await pong[k].waitAsync(T)) === 0) throw new Error(`bench fence: pong fence ${k} did not come within ${T} ms`);
        } else {
          Atomics.store(i32, ctx.ping, k + 1);
          Atomics.notify(i32, ctx.ping);
          while (Atomics.load(i32, ctx.pong) === k) {
            const r = Atomics.waitAsync(i32, ctx.pong, k, T);
            if (r.async && (await r.value) === "timed-out") throw new Error(`bench fence: pong ${k} did not come within ${T} ms`);
          }
        }
        times[k] = performance.now() - t0;
      }
      await echo;
    }
    return Array.from(times.subarray(budget.warmup), (ms) => ms * 1e6);
  });
}

interface HammerRound {
  nsPerAcquisition: number;
  acquisitions: number;
  elapsedMs: number;
  contended: number;
  waitMs: number | null;
}

/** One window of two workers taking one lock. */
async function hammerRound(ctx: CrossContext, mode: BenchMode): Promise<HammerRound> {
  const { lab, budget } = ctx;
  const i32 = lab.arena.i32;
  const mutex = new Mutex(lab.memory.buffer, ctx.mutex);
  mutex.init();
  for (const w of [ctx.counter, ctx.ready, ctx.start, ctx.stop, ctx.rawLock >>> 2]) Atomics.store(i32, w, 0);
  const job: BenchFenceJob = {
    kind: "hammer", mode, lock: mode === "fence" ? ctx.mutex : ctx.rawLock, counter: ctx.counter,
    ready: ctx.ready, start: ctx.start, stop: ctx.stop, timeoutMs: budget.timeoutMs,
  };
  const limit = jobLimit(budget, 0) + budget.lockMs;
  const jobs = ctx.workers.map((w) => w.run(job, limit));
  let failure: unknown;
  for (const j of jobs) j.catch((e) => { failure = e; });
  try {
    const deadline = performance.now() + budget.timeoutMs;
    for (;;) {
      const ready = Atomics.load(i32, ctx.ready);
      if (ready >= jobs.length) break;
      if (failure) throw failure;
      const left = deadline - performance.now();
      if (!(left > 0)) throw new Error("bench fence: the lock workers did not get ready in time");
      const r = Atomics.waitAsync(i32, ctx.ready, ready, left);
      if (r.async) await r.value;
    }
    Atomics.store(i32, ctx.start, 1);
    Atomics.notify(i32, ctx.start);
    await new Promise((r) => setTimeout(r, budget.lockMs));
    Atomics.store(i32, ctx.stop, 1);
    const results = (await Promise.all(jobs)) as HammerResult[];
    const acquisitions = results.reduce((a, r) => a + r.acquisitions, 0);
    const counted = i32[ctx.counter] >>> 0;
    if (counted !== acquisitions % 2 ** 32) {
      throw new Error(`bench fence: the ${mode} lock let updates through unprotected (counter ${counted}, acquisitions ${acquisitions})`);
    }
    const elapsedMs = Math.max(...results.map((r) => r.elapsedMs));
    if (mode === "fence") {
      const s = mutex.stats();
      if (s.acquisitions !== acquisitions % 2 ** 32) {
        throw new Error(`bench fence: Mutex statistics count ${s.acquisitions} acquisitions, the workers ${acquisitions}`);
      }
      return { nsPerAcquisition: (elapsedMs * 1e6) / acquisitions, acquisitions, elapsedMs, contended: s.contended, waitMs: s.waitMs };
    }
    const contended = results.reduce((a, r) => a + (r.contended ?? 0), 0);
    return { nsPerAcquisition: (elapsedMs * 1e6) / acquisitions, acquisitions, elapsedMs, contended, waitMs: null };
  } catch (e) {
    Atomics.store(i32, ctx.stop, 1);
    await Promise.allSettled(ctx.workers.map((w) => w.terminate()));
    throw e;
  }
}

/**
 * Round trips below this are "quick" wake-ups: the host woke the sleeping
 * thread's vCPU while it was still polling (a few µs); the others paid for
 * waking an idle vCPU (tens of µs). The two clusters are far apart here.
 */
export const QUICK_WAKE_NS = 20_000;

/** Wake-row extras: the share of quick round trips and each cluster's p50. */
function wakeRegimes(samplesNs: number[]): Record<string, number | null> {
  const quick = samplesNs.filter((x) => x < QUICK_WAKE_NS);
  const slow = samplesNs.filter((x) => x >= QUICK_WAKE_NS);
  return {
    quickFraction: samplesNs.length ? quick.length / samplesNs.length : null,
    quickP50Ns: quick.length ? summarize(quick).p50Ns : null,
    slowP50Ns: slow.length ? summarize(slow).p50Ns : null,
  };
}

// ---------------------------------------------------------------------------
// Targets

const fx = (v: number): string => `${v.toFixed(2)}x`;

export function evaluateFenceTargets(rows: FenceBenchRow[]): TargetResult[] {
  const find = (section: FenceSection, c: string, method?: string) =>
    rows.find((r) => r.section === section && r.case === c && (method === undefined ? r.kind === "raw" : r.method === method));
  const d = durationLabel;

  function target(id: string, description: string, threshold: string, limit: number,
    section: FenceSection, c: string, method: string, explain: (fence: FenceBenchRow, raw: FenceBenchRow) => string): TargetResult {
    const fence = find(section, c, method);
    const raw = find(section, c);
    if (!fence || !raw || fence.vsRaw === null) {
      return { id, description, threshold, measured: null, unit: "x raw", met: null, detail: "not measured" };
    }
    const v = fence.vsRaw;
    return { id, description, threshold, measured: Number(v.toFixed(3)), unit: "x raw", met: v <= limit, detail: explain(fence, raw) };
  }

  const signalNoWaiter = target("signal-no-waiter", "fence.signal() with no waiter vs Atomics.store + notify", "<= 2x raw", 2,
    "signal", "no waiter", "fence.signal()", (f, r) => {
      const clock = find("signal", "no waiter", "timestamp: sync.clock.nowNs()");
      const wasm = find("signal", "no waiter", "engine fence_signal (wasm, direct)");
      const store = find("signal", "no waiter", "raw: Atomics.store only");
      let s = `p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)}`;
      if (clock && wasm) {
        s += `; the signal's timestamp read (performance.now) is ${d(clock.nsPerOp)} (${fx(clock.nsPerOp / r.nsPerOp)} raw by itself) ` +
          `and the engine's fence_signal ${d(wasm.nsPerOp)}: together ${d(clock.nsPerOp + wasm.nsPerOp)}, against ${d(f.nsPerOp)} ` +
          "for the whole signal";
      }
      if (store) {
        s += `; of the raw peer, ${d(Math.max(0, r.nsPerOp - store.nsPerOp))} is the notify with nobody waiting, which the fence ` +
          "skips (WAITERS == 0)";
      }
      return s;
    });
  const signalWaiter = target("signal-waiter", "fence.signal() waking a blocked worker vs Atomics.store + notify", "<= 2x raw", 2,
    "signal-waiter", "waiter blocked", "fence.signal()", (f, r) =>
      `p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)} (p90 ${d(f.stats.p90Ns)} vs ${d(r.stats.p90Ns)}): both are dominated by the futex wake ` +
      `of a sleeping thread; waiter registered in ${pct(f.extra.waiterAsleep)} / asleep in ${pct(r.extra.waiterAsleep)} of the signals`);
  const wake = (id: string, c: string, description: string, method: string) => target(id, description, "<= 1.2x raw", 1.2,
    "wake", c, method, (f, r) => {
      const engine = rows.find((e) => e.section === "wake" && e.case === c && e.kind === "reference");
      // The split is worth a mention when both clusters hold a fair share of both methods' round trips.
      const mixed = [f, r].every((x) => (x.extra.quickFraction ?? 0) >= 0.05 && (x.extra.quickFraction ?? 1) <= 0.95);
      const cluster = (key: "quickP50Ns" | "slowP50Ns", name: string) => {
        const a = f.extra[key], b = r.extra[key];
        return mixed && a && b ? `; ${name} ${d(a)} vs ${d(b)} (${fx(a / b)})` : "";
      };
      return `round trip p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)}, p90 ${d(f.stats.p90Ns)} vs ${d(r.stats.p90Ns)}, ` +
        `p99 ${d(f.stats.p99Ns)} vs ${d(r.stats.p99Ns)} (one-way about half)` +
        cluster("quickP50Ns", `quick wake-ups (< ${d(QUICK_WAKE_NS)}, fence ${pct(f.extra.quickFraction)} / raw ` +
          `${pct(r.extra.quickFraction)} of round trips) p50`) +
        cluster("slowP50Ns", "slow ones p50") +
        (engine ? `; the engine's own fence_signal / fence_wait (the same protocol and timestamp, no JavaScript API) ` +
          `${d(engine.nsPerOp)}, ${fx(engine.nsPerOp / r.nsPerOp)} raw` : "");
    });
  const resvAdd = target("resv-add-64", "resv add of 64 fences (lock, reserve(1), addFence, unlock, each) vs its raw twin",
    "<= 3x raw", 3, "resv", "add x64", "resv: lock, reserve(1), addFence, unlock", (f, r) => {
      const one = find("resv", "add x1", "resv: lock, reserve(1), addFence, unlock");
      return `p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)} (${d(f.nsPerOp / 64)} vs ${d(r.nsPerOp / 64)} per add)` +
        (one ? `; one add into an empty resv ${d(one.nsPerOp)} (its first slot array is allocated there)` : "") +
        "; the fence side also takes a reference per add and grows its slot array (16, then 64 slots: two sync-heap allocations, one free) on the way";
    });
  return [
    signalNoWaiter,
    signalWaiter,
    wake("wake-worker", "worker -> worker", "signal-to-wake round trip worker <-> worker vs an Atomics.wait/notify ping-pong",
      "fence: signal() / wait()"),
    wake("wake-main", "worker -> main", "signal-to-wake round trip worker -> main waitAsync vs Atomics.waitAsync",
      "fence: signal() / waitAsync()"),
    resvAdd,
  ];
}

const pct = (v: number | null | undefined): string => (v === null || v === undefined ? "-" : `${(100 * v).toFixed(0)}%`);

// ---------------------------------------------------------------------------
// The run

const MiB = 1024 * 1024;
export const RESV_SIZES = [1, 4, 16, 64] as const;

export async function runFenceBench(
  options: FenceBenchOptions = {},
  onProgress: (event: FenceBenchProgress) => void = () => {},
): Promise<FenceBenchResult> {
  const started = performance.now();
  const loadStart = os.loadavg()[0];
  const quick = options.quick ?? false;
  const budget = fenceBudgetFor(quick);
  BenchWorker.checkBuilt();
  const notes: string[] = [];
  const rows: FenceBenchRow[] = [];

  const steps = ["signal, no waiter", ...RESV_SIZES.map((n) => `resv with ${n} fence${n === 1 ? "" : "s"}`),
    "lock, uncontended", "starting two workers", "signal with a blocked waiter", "wake-up, worker -> worker",
    "wake-up, worker -> main waitAsync", "lock, contended by two workers"];
  let step = 0;
  const progress = () => onProgress({ index: step, total: steps.length, label: steps[step++] });

  const lab = await Lab.create({ memoryBytes: 64 * MiB, syncBytes: 8 * MiB });
  const syncFreeBefore = lab.stats().sync.freeBytes;
  const words = new Words(lab);
  const timelines: Timeline[] = [];
  const resvs: Resv[] = [];
  const fences: Fence[] = [];
  const workers: BenchWorker[] = [];
  try {
    // ---- main thread ------------------------------------------------------
    progress();
    rows.push(...runMicro(signalTasks(lab, words, budget, timelines), budget));

    const maxN = Math.max(...RESV_SIZES);
    const resvTimelines = Array.from({ length: maxN }, (_, i) => lab.sync.timeline({ name: `bench-resv-${i}` }));
    timelines.push(...resvTimelines);
    const pending = resvTimelines.map((t) => t.createFence());
    const signalled = resvTimelines.map((t) => t.createFence());
    fences.push(...pending, ...signalled);
    const resvOf = (list: Fence[], n: number): Resv => {
      const r = lab.sync.resv();
      resvs.push(r);
      r.withLock(() => {
        r.reserveFences(n);
        for (let i = 0; i < n; i++) r.addFence(list[i], DMA_RESV_USAGE_WRITE);
      });
      return r;
    };
    const bySize = RESV_SIZES.map((n) => ({ n, pending: resvOf(pending, n), signalled: resvOf(signalled, n) }));
    for (const f of signalled) f.signal();
    for (const { n, pending: rp, signalled: rs } of bySize) {
      progress();
      rows.push(...runMicro(resvTasks(lab, words, n, pending, rs, rp, signalled), budget));
    }

    progress();
    rows.push(...runMicro(uncontendedLockTasks(lab, words), budget));

    // ---- across threads ---------------------------------------------------
    progress();
    // One at a time, into `workers`, so that a failed start still terminates the first.
    for (const i of [0, 1]) workers.push(await BenchWorker.start(lab, `bench-fence-${i}`, 20_000));
    const line = () => words.lines(1);
    const crossTimeline = lab.sync.timeline({ name: "bench-cross" });
    timelines.push(crossTimeline);
    const listBytes = 4 * Math.max(budget.roundTrips, budget.waiterSamples);
    /** The methods of a block, in turns: reversed every other block. */
    const turns = <M>(modes: M[], block: number): M[] => (block % 2 === 0 ? modes : [...modes].reverse());
    const ctx: CrossContext = {
      lab, budget, workers, timeline: crossTimeline,
      armed: line(), ping: line(), pong: line(), counter: line(), ready: line(), start: line(), stop: line(),
      listA: words.bytes(listBytes), listB: words.bytes(listBytes), waiterWords: words.lines(budget.waiterSamples),
      mutex: words.bytes(64), rawLock: words.bytes(64),
    };

    progress();
    {
      const samples = { fence: [] as number[], raw: [] as number[] };
      const asleep = { fence: 0, raw: 0 };
      for (let block = -Math.min(2, budget.warmupBlocks); block < budget.waiterBlocks; block++) {
        for (const mode of turns<BenchMode>(["fence", "raw"], block)) {
          const r = await waiterRound(ctx, mode);
          if (block < 0) continue;
          samples[mode].push(...r.samples);
          asleep[mode] += r.asleep;
        }
      }
      const spec = { section: "signal-waiter" as const, case: "waiter blocked", batch: 1 };
      rows.push(
        makeRow({ ...spec, method: "fence.signal()", kind: "fence" }, samples.fence,
          { waiterAsleep: asleep.fence / samples.fence.length }),
        makeRow({ ...spec, method: "raw: Atomics.store + notify", kind: "raw" }, samples.raw,
          { waiterAsleep: asleep.raw / samples.raw.length }),
      );
    }

    for (const path of ["worker", "main"] as const) {
      progress();
      const modes: PingMode[] = path === "worker" ? ["fence", "engine", "raw"] : ["fence", "raw"];
      const samples: Record<PingMode, number[]> = { fence: [], engine: [], raw: [] };
      for (let block = -budget.warmupBlocks; block < budget.roundTripBlocks; block++) {
        for (const mode of turns(modes, block)) {
          const got = await pingPongRound(ctx, mode, path);
          if (block >= 0) samples[mode].push(...got);
        }
      }
      const spec = { section: "wake" as const, case: path === "worker" ? "worker -> worker" : "worker -> main", batch: 1 };
      rows.push(
        makeRow({ ...spec, method: path === "worker" ? "fence: signal() / wait()" : "fence: signal() / waitAsync()", kind: "fence" },
          samples.fence, wakeRegimes(samples.fence)),
        ...(path === "worker"
          ? [makeRow({ ...spec, method: "engine: fence_signal / fence_wait (wasm)", kind: "reference" }, samples.engine,
            wakeRegimes(samples.engine))]
          : []),
        makeRow({ ...spec, method: path === "worker" ? "raw: notify / Atomics.wait" : "raw: notify / Atomics.waitAsync", kind: "raw" },
          samples.raw, wakeRegimes(samples.raw)),
      );
    }

    progress();
    {
      const rounds = { fence: [] as HammerRound[], raw: [] as HammerRound[] };
      for (let window = -1; window < budget.lockWindows; window++) {
        for (const mode of turns<BenchMode>(["fence", "raw"], window)) {
          const r = await hammerRound(ctx, mode);
          if (window >= 0) rounds[mode].push(r);
        }
      }
      const spec = { section: "lock" as const, case: "contended, 2 workers", batch: 1 };
      const extra = (rs: HammerRound[]) => {
        const acquisitions = rs.reduce((a, r) => a + r.acquisitions, 0);
        const elapsedMs = rs.reduce((a, r) => a + r.elapsedMs, 0);
        const contended = rs.reduce((a, r) => a + r.contended, 0);
        const waits = rs.map((r) => r.waitMs);
        return {
          acquisitionsPerSec: acquisitions / (elapsedMs / 1000), acquisitions, contended,
          contendedFraction: contended / acquisitions,
          waitMs: waits.every((w) => w !== null) ? waits.reduce((a, w) => a + (w ?? 0), 0) : null,
        };
      };
      rows.push(
        makeRow({ ...spec, method: "Mutex lock() + unlock()", kind: "fence" }, rounds.fence.map((r) => r.nsPerAcquisition),
          extra(rounds.fence)),
        makeRow({ ...spec, method: "raw: three-state futex lock", kind: "raw" }, rounds.raw.map((r) => r.nsPerAcquisition),
          extra(rounds.raw)),
      );
    }
  } finally {
    await Promise.allSettled(workers.map((w) => w.terminate()));
    for (const r of resvs) r.put();
    for (const f of fences) f.put();
    for (const t of timelines) t.unref();
    words.free();
    const syncFreeAfter = lab.stats().sync.freeBytes;
    if (syncFreeAfter !== syncFreeBefore) {
      notes.push(`the sync heap had ${syncFreeBefore} bytes free before the run and ${syncFreeAfter} after: a record leaked`);
    }
    lab.close();
  }

  rows.sort((a, b) => fenceSections.indexOf(a.section) - fenceSections.indexOf(b.section));
  addRatios(rows);
  const targets = evaluateFenceTargets(rows);
  const load = { start: loadStart, end: os.loadavg()[0] };
  const cpus = os.availableParallelism();
  if (load.start > cpus / 2 || load.end > cpus / 2 + 1) {
    notes.push(`the machine was busy during this run (1-minute load average ${load.start.toFixed(1)} at the start, ` +
      `${load.end.toFixed(1)} at the end, on ${cpus} CPUs): cross-thread figures depend on idle CPUs; rerun on an idle machine`);
  }
  if (cpus < 3) {
    notes.push(`${cpus} CPUs: in the worker -> worker and contended cases the main thread sleeps, so each worker has a CPU; ` +
      "a thread that blocks leaves its vCPU idle and the hypervisor must wake it, which dominates every cross-thread figure, " +
      "fence and raw alike (quick wake-ups, a few µs, when the vCPU is still polling; slow ones, tens of µs, when it is not)");
  }
  notes.push(...explainMisses(rows, targets));
  notes.push(
    "vsRaw (×raw) is a cost ratio: p50 over the raw peer's p50 in the same case and run (> 1 = slower); targets use it",
    `main-thread figures are per operation, each sample timing a batch; cross-thread figures are one operation per sample, ` +
      `with one performance.now() pair (about ${durationLabel(rowNs(rows, "signal", "timestamp: sync.clock.nowNs()"))} a read) inside`,
    `signal with a waiter: the main thread waits until the worker has armed, then ${budget.settleUs} µs more so that it sleeps, ` +
      "and times the one signal (the signaller's cost only)",
    `cross-thread cases run in short blocks, the methods taking turns (${budget.waiterBlocks} x ${budget.waiterSamples} signals, ` +
      `${budget.roundTripBlocks} x ${budget.roundTrips} round trips, ${budget.lockWindows} lock windows of ${budget.lockMs} ms per method), ` +
      "so that every method sees the same mix of the host's wake-up regimes",
    `wake-up figures are round trips (two wake-ups); ${budget.warmupBlocks} untimed blocks per method come first (JIT ` +
      `warm-up in both threads), and the first ${budget.warmup} of each block are dropped`,
    "contended lock: p50/p90/p99 are over the windows (ns per acquisition in each), acquisitions/s over all of them",
    "the raw lock is the Mutex's algorithm (three states, the same 64 spins) without its owner word, statistics and deadlines",
    "the VM is shared and noisy: compare ratios within a run, not absolute figures across runs",
  );
  return {
    machine: machineInfo(), date: new Date().toISOString(), quick, budget, load, rows, targets, notes,
    durationMs: Math.round(performance.now() - started),
  };
}

function rowNs(rows: FenceBenchRow[], section: FenceSection, method: string): number {
  return rows.find((r) => r.section === section && r.method === method)?.nsPerOp ?? NaN;
}

/** Notes that say why a target was missed, from the rows of the same run. */
export function explainMisses(rows: FenceBenchRow[], targets: TargetResult[]): string[] {
  const out: string[] = [];
  for (const t of targets) {
    if (t.met !== false) continue;
    if (t.id === "signal-no-waiter") {
      const clock = rowNs(rows, "signal", "timestamp: sync.clock.nowNs()");
      const raw = rowNs(rows, "signal", "raw: Atomics.store + notify");
      out.push(`signal-no-waiter missed: the timestamp the contract requires (performance.now) costs ${durationLabel(clock)}, ` +
        `${fx(clock / raw)} the raw peer by itself on this machine; see the reference rows of the signal section`);
    } else if (t.id === "wake-worker" || t.id === "wake-main") {
      const c = t.id === "wake-worker" ? "worker -> worker" : "worker -> main";
      const of = (kind: FenceMethodKind) => rows.find((r) => r.section === "wake" && r.case === c && r.kind === kind);
      const fence = of("fence"), raw = of("raw"), engine = of("reference");
      if (!fence || !raw) continue;
      const d = durationLabel;
      let s = `${t.id} missed (${fx(fence.nsPerOp / raw.nsPerOp)} raw, p50s).`;
      if (engine) {
        s += ` The protocol itself, signalled and waited by the engine with its timestamp, is ${fx(engine.nsPerOp / raw.nsPerOp)} ` +
          `raw; the other ${d(fence.nsPerOp - engine.nsPerOp)} per round trip is the JavaScript API on the wake-up path.`;
      }
      s += " Between waking up and the notify that wakes the other side, a leg through the API does more than the engine's: " +
        "wait() reads the clock for the time left it returns (in the contract) and dispatches callbacks, signal() checks " +
        "its arguments; right after a wake-up such work costs several times what it costs in a hot loop (a clock read: " +
        "a few hundred ns, against ~40).";
      const quick = raw.extra.quickFraction ?? 0;
      const fs = fence.extra.slowP50Ns, rs = raw.extra.slowP50Ns;
      if (quick >= 0.5) {
        s += ` It shows because this host woke sleeping threads within a few µs for ${pct(quick)} of the raw round trips here` +
          (fs && rs ? `; among the slow wake-ups (tens of µs, the reference's ~46 µs state) the ratio is ${fx(fs / rs)}` : "");
      } else {
        s += " Most round trips here were slow wake-ups: compare the p90/p99 columns and the quick/slow split in the target's detail";
      }
      out.push(s);
    } else {
      out.push(`${t.id} missed: ${t.detail}`);
    }
  }
  return out;
}

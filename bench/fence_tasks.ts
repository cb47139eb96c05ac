/*
 * The fence benchmark's main-thread cases: each case a set of tasks
 * (MicroTask: `batch` operations, returning the ms of the timed part) run
 * under tinybench in alternating rounds, the product's API beside its raw
 * Atomics peer on arena words (Words). Tasks create their fences outside
 * the timed part and put them after.
 */
import type { Lab } from "../src/api/lab.js";
import { FENCE_STATUS, FENCE_WAITERS } from "../src/engine/abi.js";
import { Mutex } from "../src/memory/mutex.js";
import type { Fence } from "../src/sync/fence.js";
import { DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_WRITE, type Resv } from "../src/sync/resv.js";
import type { Timeline } from "../src/sync/timeline.js";

import { makeRow, type FenceBenchRow, type FenceBudget, type RowSpec } from "./fence_rows.js";
import { measure } from "./harness.js";

// ---------------------------------------------------------------------------
// Main-thread cases under tinybench (bench/harness.ts)

interface MicroTask extends RowSpec {
  /** Performs `batch` operations; returns the ms spent in the timed part. */
  run: () => number;
}

const taskKey = (t: RowSpec): string => `${t.case} | ${t.method}`;

/** Rounds of a case's tasks under the shared harness (measure), alternating their order; rows with pooled samples. */
export function runMicro(tasks: MicroTask[], budget: FenceBudget): FenceBenchRow[] {
  const samples = new Map<string, number[]>(tasks.map((t) => [taskKey(t), []]));
  const perRound = { timeMs: budget.microMs, minSamples: budget.minSamples, warmupMs: budget.warmupMs };
  for (let round = 0; round < budget.rounds; round++) {
    const order = round % 2 === 0 ? tasks : [...tasks].reverse();
    for (const [key, got] of measure(order.map((t) => ({ name: taskKey(t), body: t.run, batch: t.batch })), perRound)) {
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
export class Words {
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

export function signalTasks(lab: Lab, words: Words, budget: FenceBudget, timelines: Timeline[]): MicroTask[] {
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
export function resvTasks(lab: Lab, words: Words, n: number, pending: Fence[], resvSignalled: Resv, resvPending: Resv,
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

export function uncontendedLockTasks(lab: Lab, words: Words): MicroTask[] {
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


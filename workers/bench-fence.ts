/*
 * The worker side of the fence benchmark (bench/fence.ts, `dmabuf-lab bench
 * fence`), bundled to build/workers/bench-fence.mjs.
 *
 * It attaches to the lab (workerData: BenchFenceData), posts {type:"ready"},
 * then runs each BenchFenceRequest {id, job} to the end and answers
 * {type:"done", id, result} or {type:"error", id, message}, one job at a
 * time. Every job has a "fence" form (the product's API: Fence.wait and
 * Fence.signal, Mutex) and a "raw" form (bare Atomics on arena words) of the
 * same shape, so that the bench can put the two side by side.
 *
 * Fences cross as arena offsets, in an Int32 list in the arena; the main
 * thread holds every fence for the length of a job, so the worker uses
 * borrowed views (sync.view(offset, false)) built before it starts timing.
 * Words are Int32 indices into the arena (lab.arena.i32). Every blocking
 * wait here is bounded by the job's timeoutMs; a wait that runs out fails
 * the job with an error that names it.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Lab } from "../src/api/lab.js";
import type { LabHandle } from "../src/lab.js";
import { Mutex } from "../src/memory/mutex.js";
import type { Fence } from "../src/sync/fence.js";

export interface BenchFenceData {
  handle: LabHandle;
  name: string;
}

export type BenchMode = "fence" | "raw";
/** Ping-pong only: "engine" signals and waits through the engine's exports (fence_signal, fence_wait). */
export type PingMode = BenchMode | "engine";

export type BenchFenceJob =
  /**
   * Blocks on `count` fences (or raw words) in turn, for the cost of a
   * signal that has a waiter to wake. Before blocking on the k-th it stores
   * k + 1 in word `armed`; fence mode then Fence.wait()s on fence k of
   * `list`; raw mode Atomics.wait()s while word `words + 16 k` is 0.
   */
  | { kind: "waiter"; mode: BenchMode; count: number; list: number; words: number; armed: number; timeoutMs: number }
  /**
   * One side of a ping-pong, `count` round trips. "ping" (side A) signals
   * ping k and waits for pong k, and answers with the round-trip times in
   * ms; "echo" (side B) waits for ping k and signals pong k. Fence mode: the
   * fences of the Int32 lists `pingList` and `pongList` (Fence.signal,
   * Fence.wait); engine mode: the same fences through the engine
   * (fence_signal with a lab-clock timestamp, fence_wait); raw mode: the
   * words `pingWord` and `pongWord` (Atomics.store k + 1 and notify, wait
   * while the other word is k).
   */
  | { kind: "ping" | "echo"; mode: PingMode; count: number; pingList: number; pongList: number;
    pingWord: number; pongWord: number; timeoutMs: number }
  /**
   * Takes and releases one lock as fast as it can between the `start` and
   * `stop` words (both 0 -> non-zero), incrementing word `counter` (not
   * atomically: the lock is what protects it) while holding it. Fence mode
   * takes the Mutex at byte offset `lock`; raw mode runs the same
   * three-state futex lock on word `lock >>> 2` without owner, statistics
   * or timeout bookkeeping. It adds one to word `ready` before waiting for
   * `start`.
   */
  | { kind: "hammer"; mode: BenchMode; lock: number; counter: number; ready: number; start: number; stop: number;
    timeoutMs: number };

export interface HammerResult {
  acquisitions: number;
  /** Raw mode: acquisitions whose first compareExchange failed (as the Mutex counts them); null in fence mode, where the Mutex's statistics say it. */
  contended: number | null;
  elapsedMs: number;
}

export type BenchFenceResult = { times: Float64Array } | HammerResult | { count: number };

export interface BenchFenceRequest {
  id: number;
  job: BenchFenceJob;
}

export type BenchFenceReply =
  | { type: "ready" }
  | { type: "done"; id: number; result: BenchFenceResult }
  | { type: "error"; id: number; message: string };

const data = workerData as BenchFenceData;
const lab = await Lab.attach(data.handle);
const { sync } = lab;
const i32 = lab.arena.i32;

function views(list: number, count: number): Fence[] {
  const offsets = new Int32Array(lab.memory.buffer, list, count);
  return Array.from(offsets, (offset) => sync.view(offset, false));
}

function timedOut(what: string, k: number, timeoutMs: number): Error {
  return new Error(`${data.name}: ${what} ${k} did not come within ${timeoutMs} ms`);
}

/** Waits while word `index` is `value`; throws when a wait runs out. */
function rawWait(index: number, value: number, timeoutMs: number, what: string, k: number): void {
  while (Atomics.load(i32, index) === value) {
    if (Atomics.wait(i32, index, value, timeoutMs) === "timed-out") throw timedOut(what, k, timeoutMs);
  }
}

function waiter(job: Extract<BenchFenceJob, { kind: "waiter" }>): { count: number } {
  const { count, armed, timeoutMs } = job;
  if (job.mode === "fence") {
    const fences = views(job.list, count);
    for (let k = 0; k < count; k++) {
      Atomics.store(i32, armed, k + 1);
      if (fences[k].wait(timeoutMs) === 0) throw timedOut("the signal of fence", k, timeoutMs);
    }
  } else {
    for (let k = 0; k < count; k++) {
      Atomics.store(i32, armed, k + 1);
      rawWait(job.words + 16 * k, 0, timeoutMs, "the store to word", k);
    }
  }
  return { count };
}

function pingPong(job: Extract<BenchFenceJob, { kind: "ping" | "echo" }>): { times: Float64Array } | { count: number } {
  const { count, timeoutMs } = job;
  const times = new Float64Array(job.kind === "ping" ? count : 0);
  if (job.mode === "fence") {
    const ping = views(job.pingList, count);
    const pong = views(job.pongList, count);
    if (job.kind === "ping") {
      for (let k = 0; k < count; k++) {
        const t0 = performance.now();
        ping[k].signal();
        if (pong[k].wait(timeoutMs) === 0) throw timedOut("pong fence", k, timeoutMs);
        times[k] = performance.now() - t0;
      }
    } else {
      for (let k = 0; k < count; k++) {
        if (ping[k].wait(timeoutMs) === 0) throw timedOut("ping fence", k, timeoutMs);
        pong[k].signal();
      }
    }
  } else if (job.mode === "engine") {
    const ping = new Int32Array(lab.memory.buffer, job.pingList, count).slice();
    const pong = new Int32Array(lab.memory.buffer, job.pongList, count).slice();
    const { wasm } = lab.engine;
    const clock = sync.clock;
    const timeoutNs = BigInt(Math.round(timeoutMs * 1e6));
    const check = (rc: number, what: string, k: number) => {
      if (rc === 0) throw timedOut(what, k, timeoutMs);
      if (rc < 0) throw new Error(`${data.name}: ${what} ${k}: the engine returned ${rc}`);
    };
    if (job.kind === "ping") {
      for (let k = 0; k < count; k++) {
        const t0 = performance.now();
        if (wasm.fence_signal(ping[k], 0, clock.nowNs()) !== 0) throw new Error(`${data.name}: fence_signal of ping ${k} failed`);
        check(wasm.fence_wait(pong[k], timeoutNs), "pong fence", k);
        times[k] = performance.now() - t0;
      }
    } else {
      for (let k = 0; k < count; k++) {
        check(wasm.fence_wait(ping[k], timeoutNs), "ping fence", k);
        if (wasm.fence_signal(pong[k], 0, clock.nowNs()) !== 0) throw new Error(`${data.name}: fence_signal of pong ${k} failed`);
      }
    }
  } else {
    const { pingWord: p, pongWord: q } = job;
    if (job.kind === "ping") {
      for (let k = 0; k < count; k++) {
        const t0 = performance.now();
        Atomics.store(i32, p, k + 1);
        Atomics.notify(i32, p);
        rawWait(q, k, timeoutMs, "pong", k);
        times[k] = performance.now() - t0;
      }
    } else {
      for (let k = 0; k < count; k++) {
        rawWait(p, k, timeoutMs, "ping", k);
        Atomics.store(i32, q, k + 1);
        Atomics.notify(i32, q);
      }
    }
  }
  return job.kind === "ping" ? { times } : { count };
}

// The raw lock: Drepper's three-state futex mutex, the algorithm of
// src/memory/mutex.ts (the same 64 spins) without its owner word, statistics
// or deadline arithmetic. 0 unlocked, 1 locked, 2 locked with waiters.
const SPINS = 64;

function rawLock(s: number, timeoutMs: number): boolean {
  let c = Atomics.compareExchange(i32, s, 0, 1);
  if (c === 0) return false;
  for (let i = 0; i < SPINS && c !== 0; i++) c = Atomics.compareExchange(i32, s, 0, 1);
  if (c !== 0) {
    while (Atomics.exchange(i32, s, 2) !== 0) {
      if (Atomics.wait(i32, s, 2, timeoutMs) === "timed-out") {
        throw new Error(`${data.name}: the raw lock was not released within ${timeoutMs} ms`);
      }
    }
  }
  return true;
}

function rawUnlock(s: number): void {
  if (Atomics.sub(i32, s, 1) !== 1) {
    Atomics.store(i32, s, 0);
    Atomics.notify(i32, s, 1);
  }
}

function hammer(job: Extract<BenchFenceJob, { kind: "hammer" }>): HammerResult {
  const { counter, start, stop, timeoutMs } = job;
  const deadline = performance.now() + timeoutMs;
  Atomics.add(i32, job.ready, 1);
  Atomics.notify(i32, job.ready);
  while (Atomics.load(i32, start) === 0) {
    const left = deadline - performance.now();
    if (!(left > 0)) throw new Error(`${data.name}: the start word was not set within ${timeoutMs} ms`);
    Atomics.wait(i32, start, 0, left);
  }
  let acquisitions = 0;
  let contended = 0;
  const t0 = performance.now();
  if (job.mode === "fence") {
    const mutex = new Mutex(lab.memory.buffer, job.lock);
    while (Atomics.load(i32, stop) === 0) {
      mutex.lock(timeoutMs);
      i32[counter]++;
      mutex.unlock();
      acquisitions++;
    }
  } else {
    const s = job.lock >>> 2;
    while (Atomics.load(i32, stop) === 0) {
      if (rawLock(s, timeoutMs)) contended++;
      i32[counter]++;
      rawUnlock(s);
      acquisitions++;
    }
  }
  const elapsedMs = performance.now() - t0;
  return { acquisitions, contended: job.mode === "fence" ? null : contended, elapsedMs };
}

function run(job: BenchFenceJob): BenchFenceResult {
  switch (job.kind) {
    case "waiter": return waiter(job);
    case "ping":
    case "echo": return pingPong(job);
    case "hammer": return hammer(job);
  }
}

const port = parentPort!;
port.on("message", (req: BenchFenceRequest) => {
  let reply: BenchFenceReply;
  try {
    reply = { type: "done", id: req.id, result: run(req.job) };
  } catch (e) {
    reply = { type: "error", id: req.id, message: e instanceof Error ? e.stack ?? e.message : String(e) };
  }
  port.postMessage(reply);
});
port.postMessage({ type: "ready" } satisfies BenchFenceReply);

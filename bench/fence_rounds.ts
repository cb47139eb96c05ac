/*
 * The fence benchmark's cross-thread rounds: bench workers
 * (workers/bench-fence.ts) started and always terminated here, and one
 * round of each cross-thread case (a signal with a blocked waiter, a block
 * of ping-pong round trips, a window of two workers on one lock). Every
 * wait is bounded: a worker job has an outer limit (jobLimit), a spin on
 * the main thread a deadline.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Lab } from "../src/api/lab.js";
import { FENCE_WAITERS } from "../src/engine/abi.js";
import { artifactUrl } from "../src/engine/artifacts.js";
import { Mutex } from "../src/memory/mutex.js";
import type { Fence } from "../src/sync/fence.js";
import type { Timeline } from "../src/sync/timeline.js";
import type {
  BenchFenceData, BenchFenceJob, BenchFenceReply, BenchFenceRequest, BenchFenceResult, BenchMode, HammerResult, PingMode,
} from "../workers/bench-fence.js";
import { summarize } from "../src/report.js";

import type { FenceBudget } from "./fence_rows.js";

// ---------------------------------------------------------------------------
// Workers

export class BenchWorker {
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
export interface CrossContext {
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
export async function waiterRound(ctx: CrossContext, mode: BenchMode): Promise<{ samples: number[]; asleep: number }> {
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
export async function pingPongRound(ctx: CrossContext, mode: PingMode, path: "worker" | "main"): Promise<number[]> {
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

export interface HammerRound {
  nsPerAcquisition: number;
  acquisitions: number;
  elapsedMs: number;
  contended: number;
  waitMs: number | null;
}

/** One window of two workers taking one lock. */
export async function hammerRound(ctx: CrossContext, mode: BenchMode): Promise<HammerRound> {
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
export function wakeRegimes(samplesNs: number[]): Record<string, number | null> {
  const quick = samplesNs.filter((x) => x < QUICK_WAKE_NS);
  const slow = samplesNs.filter((x) => x >= QUICK_WAKE_NS);
  return {
    quickFraction: samplesNs.length ? quick.length / samplesNs.length : null,
    quickP50Ns: quick.length ? summarize(quick).p50Ns : null,
    slowP50Ns: slow.length ? summarize(slow).p50Ns : null,
  };
}


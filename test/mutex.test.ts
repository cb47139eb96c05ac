/*
 * The shared-memory mutex: one thread, a holder that never lets go, and real
 * workers incrementing a non-atomic counter under it.
 *
 * The workers run a few lines of plain JavaScript (eval) that import the
 * built library (dist/lib/index.js, written by scripts/build.mjs): a worker
 * cannot load the TypeScript sources.
 */
import { Worker } from "node:worker_threads";
import { describe, expect, test } from "vitest";
import { packageUrl } from "../src/engine/artifacts.js";
import { MUTEX_BYTES, Mutex, MUTEX_STATE } from "../src/memory/mutex.js";
import { dmaBufError } from "./helpers/errors.js";
import { cleanUpAfterEach } from "./helpers/lab.js";
import { releaseAll, reports, WorkerSet, type Inbox } from "./helpers/workers.js";

const WAIT_MS = 20_000;

/** A mutex at a non-zero offset of a fresh shared buffer, with room around it. */
function fresh(offset = 64): { mutex: Mutex; i32: Int32Array; state: number } {
  const sab = new SharedArrayBuffer(offset + MUTEX_BYTES + 64);
  const mutex = new Mutex(sab, offset);
  mutex.init();
  return { mutex, i32: new Int32Array(sab), state: (offset + MUTEX_STATE) >>> 2 };
}

describe("one thread", () => {
  test("lock, unlock and with; stats count the acquisitions", () => {
    const { mutex, i32, state } = fresh();
    expect(mutex.stats()).toEqual({ acquisitions: 0, contended: 0, waitMs: 0 });
    mutex.lock();
    expect(Atomics.load(i32, state)).not.toBe(0);
    mutex.unlock();
    expect(Atomics.load(i32, state)).toBe(0);
    expect(mutex.with(() => 42)).toBe(42);
    expect(Atomics.load(i32, state)).toBe(0);
    // with() releases the lock when fn throws.
    expect(() => mutex.with(() => { throw new Error("inside"); })).toThrow("inside");
    expect(Atomics.load(i32, state)).toBe(0);
    for (let i = 0; i < 100; i++) mutex.with(() => undefined);
    expect(mutex.stats()).toEqual({ acquisitions: 103, contended: 0, waitMs: 0 });
  });

  test("taking a lock this thread already holds is EDEADLK at once, and the lock stays held", () => {
    const { mutex, i32, state } = fresh();
    mutex.lock();
    expect(mutex.heldByMe()).toBe(true);
    const before = mutex.stats();
    // With no timeout at all, only the recursion check can end this call
    // (without it the test would hang until vitest's own limit fails it).
    expect(() => mutex.lock(Infinity)).toThrow(expect.objectContaining({ code: "EDEADLK", errno: 35 }));
    expect(Atomics.load(i32, state)).not.toBe(0);
    expect(mutex.stats()).toEqual(before);
    mutex.unlock();
    expect(mutex.heldByMe()).toBe(false);
  });

  test("the storage must be 8-byte aligned", () => {
    const sab = new SharedArrayBuffer(256);
    expect(() => new Mutex(sab, 4)).toThrow(RangeError);
    expect(() => new Mutex(sab, 8)).not.toThrow();
  });

  test("a holder that never unlocks: lock times out with EDEADLK, leaving the lock held and the stats alone", () => {
    const { mutex, i32, state } = fresh(128);
    mutex.with(() => undefined);
    const before = mutex.stats();
    Atomics.store(i32, state, 1); // a holder that died with the lock
    for (const timeoutMs of [0, 1, 30]) {
      const e = dmaBufError(() => mutex.lock(timeoutMs));
      expect({ code: e.code, errno: e.errno, syscall: e.syscall }).toEqual({ code: "EDEADLK", errno: 35, syscall: "mutex_lock" });
      expect(e.message).toContain("0x80");
      expect(e.message).toContain(`${timeoutMs} ms`);
      // Still held: a waiter may mark it contended (1 -> 2), never release it.
      expect(Atomics.load(i32, state)).not.toBe(0);
      expect(mutex.stats()).toEqual(before);
    }
    let ran = false;
    expect(dmaBufError(() => mutex.with(() => { ran = true; }, 10)).code).toBe("EDEADLK");
    expect(ran).toBe(false);
    expect(Atomics.load(i32, state)).not.toBe(0);
    // The holder's unlock releases it, and the mutex works again.
    mutex.unlock();
    expect(Atomics.load(i32, state)).toBe(0);
    expect(mutex.with(() => "again", 1000)).toBe("again");
    expect(mutex.stats().acquisitions).toBe(before.acquisitions + 1);
  });

  test("the mutex is not recursive: locking it twice on one thread times out", () => {
    const { mutex } = fresh();
    mutex.lock();
    try {
      expect(dmaBufError(() => mutex.lock(5)).code).toBe("EDEADLK");
    } finally {
      mutex.unlock();
    }
    expect(mutex.stats().acquisitions).toBe(1);
  });
});

// ---------------------------------------------------------------- threads

/** The worker: waits for the start flag, then increments the counter n times under the mutex. */
const WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
(async () => {
  const { Mutex } = await import(workerData.lib);
  const { sab, mutexOffset, counter, flag, n, mode, timeoutMs } = workerData;
  const mutex = new Mutex(sab, mutexOffset);
  const u32 = new Uint32Array(sab);
  const i32 = new Int32Array(sab);
  if (mode === "try") {
    // The main thread holds the lock; report how lock(tryTimeout) ends.
    try {
      mutex.lock(workerData.tryTimeout);
      parentPort.postMessage({ type: "result", code: "acquired" });
    } catch (e) {
      parentPort.postMessage({ type: "result", code: e.code, message: e.message });
    }
    return;
  }
  if (mode === "hold") {
    mutex.lock(timeoutMs);
    parentPort.postMessage({ type: "locked" });
    return; // and never unlock: the main thread terminates this worker
  }
  parentPort.postMessage({ type: "ready" });
  const deadline = Date.now() + timeoutMs;
  while (Atomics.load(i32, flag) === 0) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("the start flag never came");
    Atomics.wait(i32, flag, 0, left);
  }
  let scratch = 0;
  for (let i = 0; i < n; i++) {
    const step = () => {
      // A plain read-modify-write with a window in the middle: without
      // mutual exclusion, increments get lost.
      const v = u32[counter];
      for (let j = 0; j < (i & 15); j++) scratch += j;
      u32[counter] = v + 1;
    };
    if (i % 2 === 0) {
      mutex.lock(timeoutMs);
      try { step(); } finally { mutex.unlock(); }
    } else {
      mutex.with(step, timeoutMs);
    }
  }
  parentPort.postMessage({ type: "done", n, scratch });
})().catch((e) => parentPort.postMessage({ type: "error", message: String((e && e.stack) || e) }));
`;

interface Msg {
  type: string;
  message?: string;
  n?: number;
  code?: string;
}

const workers = new WorkerSet();
cleanUpAfterEach({ workers });

function start(name: string, workerData: object): Inbox {
  const worker = new Worker(WORKER, {
    eval: true, name,
    workerData: { lib: packageUrl("dist/lib/index.js").href, timeoutMs: WAIT_MS, ...workerData },
  });
  return workers.inbox(worker, name);
}

describe("the Promise forms", () => {
  test("withAsync serializes tasks of one thread that await while holding; lockAsync times out with EDEADLK", async () => {
    const { mutex } = fresh();
    const trace: string[] = [];
    const task = (name: string) => mutex.withAsync(async () => {
      trace.push(`${name} in`);
      await new Promise((r) => setTimeout(r, 5));
      trace.push(`${name} out`);
    }, WAIT_MS);
    await Promise.all([task("a"), task("b"), task("c")]);
    expect(trace).toEqual(["a in", "a out", "b in", "b out", "c in", "c out"]);
    mutex.lock();
    try {
      const e = await mutex.lockAsync(20).then(() => null, (err: unknown) => err);
      expect(e).toMatchObject({ code: "EDEADLK", errno: 35, syscall: "mutex_lock" });
    } finally {
      mutex.unlock();
    }
    expect(mutex.stats().acquisitions).toBe(4);
  });
});

/**
 * A mutex at 64 of a fresh shared buffer, a counter word, and `count`
 * started workers, each about to increment the counter n times under the
 * mutex (released together).
 */
async function countingWorkers(count: number, n: number) {
  const sab = new SharedArrayBuffer(256);
  const mutexOffset = 64;
  const mutex = new Mutex(sab, mutexOffset);
  mutex.init();
  const counter = 160 >>> 2;
  const flag = 192 >>> 2;
  const i32 = new Int32Array(sab);
  const u32 = new Uint32Array(sab);
  const inboxes = Array.from({ length: count }, (_, k) =>
    start(`counter-${k}`, { sab, mutexOffset, counter, flag, n, mode: "count" }));
  await releaseAll(inboxes, i32.subarray(flag, flag + 1), WAIT_MS);
  return { mutex, i32, u32, counter, inboxes };
}

describe("threads", () => {
  test("lockAsync on this thread against two workers: the count under the lock is exact", async () => {
    const n = 5_000;
    const { mutex, u32, counter, inboxes } = await countingWorkers(2, n);
    for (let i = 0; i < n; i++) {
      await mutex.lockAsync(WAIT_MS);
      u32[counter]++;
      mutex.unlock();
    }
    await reports(inboxes, WAIT_MS);
    expect(u32[counter]).toBe(3 * n);
    expect(mutex.stats().acquisitions).toBe(3 * n);
  });

  test.each([2, 3, 4])("%i workers increment a non-atomic counter under one mutex: the count is exact", async (count) => {
    const n = 20_000;
    const { mutex, i32, u32, counter, inboxes } = await countingWorkers(count, n);
    const done = await reports<Msg & { type: "done" }>(inboxes, WAIT_MS);
    expect(done.map((m) => m.n)).toEqual(Array(count).fill(n));
    expect(u32[counter]).toBe(count * n);
    const s = mutex.stats();
    expect(s.acquisitions).toBe(count * n);
    expect(s.contended).toBeGreaterThanOrEqual(0);
    expect(s.contended).toBeLessThanOrEqual(s.acquisitions);
    expect(s.waitMs).toBeGreaterThanOrEqual(0);
    expect(Atomics.load(i32, mutex.offset >>> 2)).toBe(0);
    // Still usable from this thread.
    mutex.with(() => { u32[counter]++; }, 1000);
    expect(u32[counter]).toBe(count * n + 1);
  });

  test.each([Number.NaN, -5, 0, 20])("lock(%s) from another thread while this one holds the mutex ends in EDEADLK", async (tryTimeout) => {
    // Run in a worker: were the wait unbounded, only the worker would hang,
    // and afterEach terminates it.
    const sab = new SharedArrayBuffer(128);
    const mutex = new Mutex(sab, 0);
    mutex.init();
    mutex.lock();
    try {
      const box = start("try", { sab, mutexOffset: 0, counter: 16, flag: 24, n: 0, mode: "try", tryTimeout });
      const m = await box.next<Msg>("result", WAIT_MS);
      expect(m.code, m.message).toBe("EDEADLK");
      expect(mutex.stats().acquisitions).toBe(1);
    } finally {
      mutex.unlock();
    }
  });

  test("a worker that dies holding the mutex: lock times out with EDEADLK instead of hanging", async () => {
    const sab = new SharedArrayBuffer(128);
    const mutex = new Mutex(sab, 0);
    mutex.init();
    const box = start("holder", { sab, mutexOffset: 0, counter: 16, flag: 24, n: 0, mode: "hold" });
    await box.next("locked", WAIT_MS);
    await box.worker.terminate();
    expect(mutex.stats().acquisitions).toBe(1);
    const e = dmaBufError(() => mutex.lock(20));
    expect(e).toMatchObject({ code: "EDEADLK", errno: 35, syscall: "mutex_lock" });
    expect(mutex.stats().acquisitions).toBe(1);
  });
});

/*
 * The engine's fence helpers (assembly/fence.ts: fence_signal, fence_wait)
 * against the JavaScript side over the same words, across real threads:
 * wasm signals seen by JavaScript waiters in a worker and by the main
 * thread's waitAsync; JavaScript signals ending a worker's wasm wait; wasm
 * waits that time out; one signal waking every waiter in every thread;
 * the signal-on-any array waking a worker; the engine's error codes.
 *
 * Before signalling, the tests wait (bounded) until the fence's WAITERS
 * word, or the control block's ANY_WAITERS, counts every waiter, so that
 * each waiter is really asleep when the signal comes. Workers are
 * fence-agent threads, terminated in afterEach whatever the outcome.
 */
import { describe, expect, test } from "vitest";
import { Lab, type Fence } from "../src/index.js";
import { CTL_ANY_WAITERS, FENCE_WAITERS } from "../src/engine/abi.js";
import { FenceAgent } from "./helpers/fence-agent.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { until, within } from "./helpers/waits.js";
import { WorkerSet } from "./helpers/workers.js";
import type { SignalResult, WaitResult, WasmWaitResult } from "./workers/fence-agent.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const WAIT_NS = BigInt(WAIT_MS) * 1_000_000n;
const SIGNAL_ALREADY = 1;
const EIO = -5;
const EFAULT = -14;
const EINVAL = -22;

const workers = new WorkerSet();
const labs = new LabSet({ memoryBytes: 16 * MiB });
cleanUpAfterEach({ workers, labs });
const newLab = (): Promise<Lab> => labs.create();
const startAgents = (lab: Lab, names: string[]): Promise<FenceAgent[]> => FenceAgent.startAll(workers, lab, names, WAIT_MS);

function fences(lab: Lab, n: number): Fence[] {
  const tl = lab.sync.timeline({ driver: "wasm-test", name: "wasm" });
  const out = Array.from({ length: n }, () => tl.createFence());
  tl.unref();
  return out;
}

const waiters = (lab: Lab, f: Fence) => Atomics.load(lab.sync.i32, (f.offset + FENCE_WAITERS) >>> 2);
const anyWaiters = (lab: Lab) => Atomics.load(lab.sync.i32, lab.arena.control(CTL_ANY_WAITERS) >>> 2);

/** Waits until exactly n waiters sleep on f (more would be a bookkeeping bug). */
async function untilWaiters(lab: Lab, f: Fence, n: number): Promise<void> {
  await until(() => waiters(lab, f) >= n, WAIT_MS, `${n} waiters on fence ${f.describe()}`);
  expect(waiters(lab, f)).toBe(n);
}

// ---------------------------------------------------------------------------

describe("wasm signals, JavaScript waits", () => {
  test("a worker's fence_signal wakes a blocking wait() in another worker and the main thread's waitAsync", async () => {
    const lab = await newLab();
    const [waiter, signaller] = await startAgents(lab, ["js-waiter", "wasm-signaller"]);
    for (const error of [0, EIO]) {
      const [f] = fences(lab, 1);
      let called = 0;
      f.addCallback(() => { called++; }); // main's watch: one more waiter
      const inWorker = waiter.request<WaitResult>({ op: "wait", offset: f.offset, timeoutMs: WAIT_MS });
      const inMain = f.waitAsync(WAIT_MS);
      await untilWaiters(lab, f, 3);
      const t0 = lab.sync.clock.nowNs();
      expect(await signaller.request<number>({ op: "wasm-signal", offset: f.offset, error })).toBe(0);
      const status = error === 0 ? 1 : error;
      const w = await inWorker;
      expect(w.left).toBeGreaterThan(0);
      expect(w.status).toBe(status);
      expect(w.threadId).toBe(waiter.threadId);
      expect(await within(inMain, WAIT_MS, "waitAsync")).toBeGreaterThan(0);
      expect(called).toBe(1);
      expect(f.status).toBe(status);
      expect(f.timestampNs).toBeGreaterThanOrEqual(t0);
      expect(f.timestampNs).toBeLessThanOrEqual(lab.sync.clock.nowNs());
      await until(() => waiters(lab, f) === 0, WAIT_MS, "waiters gone");
      // Second signals lose, from wasm and from JavaScript, and change nothing.
      const ts = f.timestampNs;
      expect(await signaller.request<number>({ op: "wasm-signal", offset: f.offset, error: 0 })).toBe(SIGNAL_ALREADY);
      expect(await signaller.request<SignalResult>({ op: "signal", offset: f.offset, strict: true }))
        .toMatchObject({ already: true, code: "EINVAL", status, timestampNs: ts });
      expect(f.checkAndSignal()).toBe(true);
      expect([f.status, f.timestampNs, called]).toEqual([status, ts, 1]);
      f.put();
    }
  });

  test("a wasm signal wakes a worker waiting on a signal-on-any array", async () => {
    const lab = await newLab();
    const [waiter, signaller] = await startAgents(lab, ["any-waiter", "wasm-signaller"]);
    const [a, b, c] = fences(lab, 3);
    const any = lab.sync.array([a, b, c], true);
    const waiting = waiter.request<WaitResult>({ op: "wait", offset: any.offset, timeoutMs: WAIT_MS });
    await until(() => anyWaiters(lab) >= 1, WAIT_MS, "the any-waiter");
    expect(await signaller.request<number>({ op: "wasm-signal", offset: c.offset, error: EIO })).toBe(0);
    expect(await waiting).toMatchObject({ status: EIO });
    expect([a.status, b.status, c.status, any.status]).toEqual([0, 0, EIO, EIO]);
    expect(anyWaiters(lab)).toBe(0);
    for (const f of [any, a, b, c]) f.put();
  });
});

describe("JavaScript signals, wasm waits", () => {
  test("main's signal() ends a worker's fence_wait with the status", async () => {
    const lab = await newLab();
    const [waiter] = await startAgents(lab, ["wasm-waiter"]);
    for (const error of [0, EIO]) {
      const [f] = fences(lab, 1);
      const waiting = waiter.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: WAIT_NS });
      await untilWaiters(lab, f, 1);
      f.signal(error);
      expect(await waiting).toEqual({ rc: error === 0 ? 1 : error, threadId: waiter.threadId });
      expect(waiters(lab, f)).toBe(0);
      f.put();
    }
  });

  test("fence_wait without a limit (-1) also ends at the signal", async () => {
    const lab = await newLab();
    const [waiter] = await startAgents(lab, ["wasm-waiter"]);
    const [f] = fences(lab, 1);
    const waiting = waiter.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: -1n });
    await untilWaiters(lab, f, 1);
    f.signal();
    expect((await waiting).rc).toBe(1);
    f.put();
  });

  test("fence_wait with a timeout returns 0 when it passes, and the status once signalled", async () => {
    const lab = await newLab();
    const [waiter] = await startAgents(lab, ["wasm-waiter"]);
    const [f] = fences(lab, 1);
    const word0 = Atomics.load(lab.arena.i32, 0); // static data: nothing writes it
    expect((await waiter.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: 20_000_000n })).rc).toBe(0);
    expect(waiters(lab, f), "WAITERS back down after a wait that timed out").toBe(0);
    expect(Atomics.load(lab.arena.i32, 0), "the wait wrote only its own record").toBe(word0);
    expect((await waiter.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: 0n })).rc).toBe(0);
    expect(f.status).toBe(0);
    expect(waiters(lab, f)).toBe(0);
    // The main thread may call it too: a zero timeout never blocks.
    expect(lab.engine.wasm.fence_wait(f.offset, 0n)).toBe(0);
    f.signal(EIO);
    expect((await waiter.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: 0n })).rc).toBe(EIO);
    expect((await waiter.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: WAIT_NS })).rc).toBe(EIO);
    expect(lab.engine.wasm.fence_wait(f.offset, 0n)).toBe(EIO);
    f.put();
  });
});

describe("one signal wakes every waiter", () => {
  test("four workers (two in wasm, two in JavaScript) and the main thread's waitAsync", async () => {
    const lab = await newLab();
    const agents = await startAgents(lab, ["wasm-0", "js-1", "wasm-2", "js-3"]);
    for (const signalFromWasm of [false, true]) {
      const [f] = fences(lab, 1);
      const inWorkers = agents.map((a, i) => (i % 2 === 0
        ? a.request<WasmWaitResult>({ op: "wasm-wait", offset: f.offset, timeoutNs: WAIT_NS }).then((r) => r.rc)
        : a.request<WaitResult>({ op: "wait", offset: f.offset, timeoutMs: WAIT_MS }).then((r) => (r.left > 0 ? r.status : 0))));
      const inMain = f.waitAsync(WAIT_MS);
      await untilWaiters(lab, f, 5);
      if (signalFromWasm) expect(lab.engine.wasm.fence_signal(f.offset, 0, lab.sync.clock.nowNs())).toBe(0);
      else f.signal();
      expect(await Promise.all(inWorkers)).toEqual([1, 1, 1, 1]);
      expect(await within(inMain, WAIT_MS, "waitAsync")).toBeGreaterThan(0);
      expect(waiters(lab, f)).toBe(0);
      f.put();
    }
  });
});

describe("the signal-on-any array", () => {
  test("a worker's wait() on array([a, b, c], any) wakes when main signals b", async () => {
    const lab = await newLab();
    const [waiter] = await startAgents(lab, ["any-waiter"]);
    const [a, b, c] = fences(lab, 3);
    const any = lab.sync.array([a, b, c], true);
    expect(any.signalOnAny).toBe(true);
    expect(await waiter.request<WaitResult>({ op: "wait", offset: any.offset, timeoutMs: 0 })).toMatchObject({ left: 0, status: 0 });
    const waiting = waiter.request<WaitResult>({ op: "wait", offset: any.offset, timeoutMs: WAIT_MS });
    await until(() => anyWaiters(lab) >= 1, WAIT_MS, "the any-waiter");
    expect(anyWaiters(lab)).toBe(1);
    b.signal();
    const r = await waiting;
    expect(r.left).toBeGreaterThan(0);
    expect(r.status).toBe(1);
    expect([a.status, b.status, c.status]).toEqual([0, 1, 0]);
    expect(any.timestampNs).toBe(b.timestampNs);
    expect(anyWaiters(lab)).toBe(0);
    // The all-signalled array of the same fences still waits for a and c.
    const all = lab.sync.array([a, b, c]);
    expect(await waiter.request<WaitResult>({ op: "wait", offset: all.offset, timeoutMs: 20 })).toMatchObject({ left: 0, status: 0 });
    a.signal();
    c.signal();
    expect(await waiter.request<WaitResult>({ op: "wait", offset: all.offset, timeoutMs: WAIT_MS })).toMatchObject({ status: 1 });
    for (const f of [any, all, a, b, c]) f.put();
  });
});

describe("engine error codes", () => {
  test("fence_signal and fence_wait check the record, the error and the kind, and change nothing", async () => {
    const lab = await newLab();
    const { wasm } = lab.engine;
    const now = () => lab.sync.clock.nowNs();
    const [f, g] = fences(lab, 2);
    const arr = lab.sync.array([f, g]);
    expect(wasm.fence_signal(0, 0, now())).toBe(EFAULT); // below the sync heap
    expect(wasm.fence_signal(f.offset + 4, 0, now())).toBe(EFAULT); // not a record boundary
    expect(wasm.fence_signal(lab.layout.syncBase + lab.layout.syncBytes, 0, now())).toBe(EFAULT); // past its end
    expect(wasm.fence_wait(0, 0n)).toBe(EFAULT);
    expect(wasm.fence_wait(f.offset + 4, 0n)).toBe(EFAULT);
    expect(wasm.fence_signal(f.offset, 1, now())).toBe(EINVAL);
    expect(wasm.fence_signal(f.offset, -4096, now())).toBe(EINVAL);
    expect(wasm.fence_signal(arr.offset, 0, now())).toBe(EINVAL); // a container
    expect([f.status, g.status, arr.status, f.timestampNs]).toEqual([0, 0, 0, 0]);
    expect(wasm.fence_signal(f.offset, -4095, now())).toBe(0);
    expect(wasm.fence_signal(f.offset, EIO, now())).toBe(SIGNAL_ALREADY);
    expect(f.status).toBe(-4095);
    // An error set from JavaScript before a wasm signal with error 0 shows in the status.
    g.setError(EIO);
    expect(wasm.fence_signal(g.offset, 0, now())).toBe(0);
    expect(g.status).toBe(EIO);
    expect(arr.status).toBe(-4095);
    for (const x of [arr, f, g]) x.put();
  });
});

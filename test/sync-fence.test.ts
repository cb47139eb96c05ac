/*
 * dma_fence (src/sync/fence.ts): the kernel's st-dma-fence.c tests by name,
 * with the same inputs and expectations mapped to this API, then the rest
 * of the contract: contexts, names, timestamps (also across threads),
 * misuse codes, references, deadlines, waitAsync, callbacks across threads
 * and racing signallers.
 *
 * Mapping: signal() is the 6.x dma_fence_signal (EINVAL when already
 * signalled), checkAndSignal() the 7.0 dma_fence_check_and_signal (true
 * when already signalled); add_callback's -ENOENT is a thrown ENOENT;
 * wait(ms) is dma_fence_wait_timeout with the 7.0 default wait (0 on
 * timeout, 1 for a zero timeout on a signalled fence). Signalling is always
 * enabled here, so enable_sw_signaling has no counterpart. The "mock" fence
 * is a fence on a timeline named mock/mock with seqno 0.
 *
 * Workers: fence-agent (fence operations on command), fence-race (one
 * thread of race_signal_callback), fence-signal-race (racing signallers).
 * Every worker is terminated in afterEach, whatever the outcome; every wait
 * has a timeout.
 */
import { threadId } from "node:worker_threads";
import { describe, expect, test } from "vitest";
import { Lab, type Fence } from "../src/index.js";
import { FENCE_WAITERS } from "../src/engine/abi.js";
import { isLater } from "../src/sync/fence.js";
import { codeOf } from "./helpers/errors.js";
import { FenceAgent } from "./helpers/fence-agent.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { withSeed } from "./helpers/prng.js";
import { until, within } from "./helpers/waits.js";
import { releaseAll, reports, WorkerSet } from "./helpers/workers.js";
import type { GcDropResult, SignalResult, WaitResult } from "./workers/fence-agent.js";
import { RACE_WORDS, SLOT0, STOP, type FenceRaceData, type FenceRaceReport } from "./workers/fence-race.js";
import type { FenceSignalRaceData, FenceSignalRaceReport } from "./workers/fence-signal-race.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const EIO = -5;

const workers = new WorkerSet();
const labs = new LabSet({ memoryBytes: 16 * MiB });
cleanUpAfterEach({ workers, labs });
const newLab = (): Promise<Lab> => labs.create();
const startAgent = (lab: Lab, name: string): Promise<FenceAgent> => FenceAgent.start(workers, lab, name, WAIT_MS);

/** The kernel's mock fence: driver and timeline "mock", seqno 0 (on a fresh context). */
function mock(lab: Lab): Fence {
  const timeline = lab.sync.timeline({ driver: "mock", name: "mock" });
  try {
    return timeline.createFence(0n);
  } finally {
    timeline.unref(); // the fence holds the timeline
  }
}

const turns = async (n: number) => { for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve)); };

// ---------------------------------------------------------------------------

describe("st-dma-fence (KUnit suite dma-buf-fence)", () => {
  test("sanitycheck", async () => {
    const lab = await newLab();
    const f = mock(lab);
    f.signal();
    f.put();
  });

  test("signaling", async () => {
    const lab = await newLab();
    // 7.0: check_and_signal reports "was not signalled" and signals.
    const f = mock(lab);
    expect(f.isSignaled()).toBe(false);
    expect(f.checkAndSignal()).toBe(false);
    expect(f.isSignaled()).toBe(true);
    expect(f.checkAndSignal()).toBe(true);
    f.put();
    // 6.x: signal returns 0 the first time, -EINVAL the second.
    const g = mock(lab);
    expect(g.isSignaled()).toBe(false);
    g.signal();
    expect(g.isSignaled()).toBe(true);
    expect(codeOf(() => g.signal())).toBe("EINVAL");
    g.put();
  });

  test("add_callback", async () => {
    const lab = await newLab();
    const f = mock(lab);
    let seen = false;
    f.addCallback(() => { seen = true; });
    f.signal();
    expect(seen).toBe(true);
    f.put();
  });

  test("late_add_callback", async () => {
    const lab = await newLab();
    const f = mock(lab);
    f.signal();
    let seen = false;
    expect(codeOf(() => f.addCallback(() => { seen = true; }))).toBe("ENOENT");
    expect(f.checkAndSignal()).toBe(true);
    await turns(3);
    expect(seen).toBe(false);
    f.put();
  });

  test("rm_callback", async () => {
    const lab = await newLab();
    const f = mock(lab);
    let seen = false;
    const cb = () => { seen = true; };
    f.addCallback(cb);
    expect(f.removeCallback(cb)).toBe(true);
    f.signal();
    await turns(3);
    expect(seen).toBe(false);
    f.put();
  });

  test("late_rm_callback", async () => {
    const lab = await newLab();
    const f = mock(lab);
    let seen = false;
    const cb = () => { seen = true; };
    f.addCallback(cb);
    f.signal();
    expect(seen).toBe(true);
    expect(f.removeCallback(cb)).toBe(false);
    f.put();
  });

  test("status", async () => {
    const lab = await newLab();
    const f = mock(lab);
    expect(f.status).toBe(0);
    f.signal();
    expect(f.status).toBe(1);
    f.put();
  });

  test("error", async () => {
    const lab = await newLab();
    const f = mock(lab);
    f.setError(EIO);
    expect(f.status).toBe(0);
    f.signal();
    expect(f.status).toBe(EIO);
    f.put();
  });

  test("wait", async () => {
    const lab = await newLab();
    const f = mock(lab);
    expect(f.wait(0)).toBe(0);
    f.signal();
    expect(f.wait(0)).toBe(1);
    expect(f.checkAndSignal()).toBe(true);
    f.put();
  });

  test("wait_timeout", async (ctx) => {
    const lab = await newLab();
    const agent = await startAgent(lab, "timer");
    const f = mock(lab);
    const JIFFY = 4; // ms, HZ = 250
    const HZ = WAIT_MS; // one "second", generous for a loaded 2-core machine
    try {
      expect(f.wait(JIFFY)).toBe(0);
      const fired = new Int32Array(new SharedArrayBuffer(4));
      await agent.request({ op: "timer-signal", offset: f.offset, delayMs: JIFFY, fired });
      const left = f.wait(HZ);
      if (left === 0) {
        // As the kernel: a timer that did not fire skips the test, one that did fails it.
        expect(Atomics.load(fired, 0), "the timer fired but wait() timed out").toBe(0);
        ctx.skip("timer did not fire");
      }
      expect(left).toBeGreaterThan(0);
      expect(f.status).toBe(1);
      await agent.event("fired");
    } finally {
      f.checkAndSignal();
      f.put();
    }
  });

  test("stub", async () => {
    const lab = await newLab();
    const stubs: Fence[] = [];
    const probe = lab.sync.stub();
    const refcount = probe.refcount;
    probe.put();
    for (let i = 0; i < 64; i++) {
      const f = lab.sync.stub();
      stubs.push(f);
      expect(f.isSignaled(), `stub ${i}`).toBe(true);
    }
    expect(new Set(stubs.map((f) => f.offset)).size).toBe(1);
    const f = stubs[0];
    expect(f.context).toBe(0n);
    expect(f.seqno).toBe(0n);
    expect(f.names).toEqual({ driver: "stub", timeline: "stub" });
    expect(f.status).toBe(1);
    expect(f.timestampNs).toBeLessThanOrEqual(lab.sync.clock.nowNs());
    for (const s of stubs) s.put();
    const again = lab.sync.stub();
    expect(again.refcount).toBe(refcount);
    again.put();
  });

  test("race_signal_callback", async () => {
    const lab = await newLab();
    for (const before of [false, true]) {
      const freeBefore = lab.stats().sync.freeBytes;
      const mem = lab.alloc(4 * RACE_WORDS);
      const words = new Int32Array(lab.memory.buffer, mem.byteOffset, RACE_WORDS);
      const inboxes = ([0, 1] as const).map((id) => {
        const data: FenceRaceData = { handle: lab.share(), id, before, words: mem.byteOffset, maxIterations: 8000, timeoutMs: 5000 };
        return workers.start("fence-race", `race-${Number(before)}-${id}`, data);
      });
      // The kernel lets the threads run for 50 ms; here about 300 ms or 8000 iterations, whichever comes first.
      const stop = setTimeout(() => {
        Atomics.store(words, STOP, 1);
        Atomics.notify(words, SLOT0);
        Atomics.notify(words, SLOT0 + 1);
      }, 300);
      try {
        for (const r of await reports<FenceRaceReport>(inboxes, WAIT_MS)) {
          expect(r.error, `pass before=${before}, thread ${r.id} (${r.passes} passes, ${r.misses} misses)`).toBeUndefined();
          expect(r.passes, `thread ${r.id}`).toBeGreaterThan(0);
        }
        expect(Atomics.load(words, SLOT0)).toBe(0);
        expect(Atomics.load(words, SLOT0 + 1)).toBe(0);
        // Every fence of the pass (and the callbacks' references) released: the sync heap is as before.
        lab.free(mem);
        await until(() => lab.stats().sync.freeBytes === freeBefore, WAIT_MS, `sync heap back to ${freeBefore} free bytes`);
      } finally {
        clearTimeout(stop);
        await workers.terminateAll();
      }
    }
  });
});

// ---------------------------------------------------------------------------

describe("dma_fence contract", () => {
  test("a fence whose callbacks were all removed is released by the watch even if it never signals", async () => {
    const lab = await newLab();
    const before = lab.stats().sync.freeBytes;
    const tl = lab.sync.timeline({ name: "never" });
    const f = tl.createFence();
    const cb = () => { throw new Error("must not run"); };
    f.addCallback(cb);
    expect(f.removeCallback(cb)).toBe(true);
    f.put();
    tl.unref();
    // The watch lets go at its next slice (about a second); wait for that, bounded.
    const deadline = performance.now() + 10_000;
    while (lab.stats().sync.freeBytes !== before && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lab.stats().sync.freeBytes).toBe(before);
  });

  test("contexts are unique and increasing, never 0, also from two worker threads at once", async () => {
    const lab = await newLab();
    const { sync } = lab;
    const a = sync.allocContext();
    const b = sync.allocContext(5);
    const c = sync.allocContext();
    expect(a).toBeGreaterThan(0n);
    expect(b).toBe(a + 1n);
    expect(c).toBe(b + 5n);

    const agents = await Promise.all([startAgent(lab, "ctx-0"), startAgent(lab, "ctx-1")]);
    await withSeed(async (rng) => {
      const counts = agents.map(() => Array.from({ length: 3000 }, () => rng.int(1, 4)));
      const mainCounts = Array.from({ length: 300 }, () => rng.int(1, 4));
      const pending = agents.map((agent, i) => agent.request<bigint[]>({ op: "contexts", counts: counts[i] }));
      const mine = mainCounts.map((n) => sync.allocContext(n));
      const theirs = await Promise.all(pending);
      const ranges: [bigint, bigint][] = [];
      for (const [firsts, ns] of [...theirs.map((t, i) => [t, counts[i]] as const), [mine, mainCounts] as const]) {
        for (let i = 0; i < firsts.length; i++) {
          expect(firsts[i]).toBeGreaterThan(c);
          if (i > 0) expect(firsts[i], "contexts of one thread increase").toBeGreaterThanOrEqual(firsts[i - 1] + BigInt(ns[i - 1]));
          ranges.push([firsts[i], firsts[i] + BigInt(ns[i])]);
        }
      }
      ranges.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
      for (let i = 1; i < ranges.length; i++) expect(ranges[i][0], "ranges do not overlap").toBeGreaterThanOrEqual(ranges[i - 1][1]);
      // Nothing was lost either: the ranges tile the counter.
      const total = [...counts.flat(), ...mainCounts].reduce((n, k) => n + k, 0);
      expect(sync.allocContext()).toBe(c + 1n + BigInt(total));
    });
  });

  test("seqno, context and names; 32-bit wrapping order", async () => {
    const lab = await newLab();
    const tl = lab.sync.timeline({ driver: "drv", name: "tl-0" });
    const plain = lab.sync.timeline();
    const [a, b, c] = [tl.createFence(), tl.createFence(), tl.createFence(42n)];
    expect([a.seqno, b.seqno, c.seqno]).toEqual([1n, 2n, 42n]);
    expect(tl.createFence().seqno).toBe(3n); // explicit seqnos do not move the counter
    for (const f of [a, b, c]) {
      expect(f.context).toBe(tl.context);
      expect(f.names).toEqual({ driver: "drv", timeline: "tl-0" });
    }
    expect(plain.context).not.toBe(tl.context);
    const d = plain.createFence();
    expect(d.names).toEqual({ driver: "dmabuf-lab", timeline: "timeline" });
    expect(isLater(b, a)).toBe(true);
    expect(isLater(a, b)).toBe(false);
    expect(isLater(a, a)).toBe(false);
    const [high, low] = [tl.createFence(0xffffffffn), tl.createFence(0x1_0000_0001n)];
    expect(isLater(low, high)).toBe(true); // 1 comes after 0xffffffff (32-bit wrap)
    expect(isLater(high, low)).toBe(false);
    expect(codeOf(() => lab.sync.timeline({ name: "x".repeat(32) }))).toBe("EINVAL");
    for (const f of [a, b, c, d, high, low]) f.put();
    tl.unref();
    plain.unref();
  });

  test("the timestamp is taken at signalling, 0 before, and never changes after", async () => {
    const lab = await newLab();
    const f = mock(lab);
    expect(f.timestampNs).toBe(0);
    const t0 = lab.sync.clock.nowNs();
    f.signal();
    const t1 = lab.sync.clock.nowNs();
    const ts = f.timestampNs;
    expect(ts).toBeGreaterThanOrEqual(t0);
    expect(ts).toBeLessThanOrEqual(t1);
    expect(f.checkAndSignal()).toBe(true);
    expect(codeOf(() => f.signal(EIO))).toBe("EINVAL");
    expect(f.timestampNs).toBe(ts);
    expect(f.status).toBe(1);
    f.put();
  });

  test("timestamps are monotonic across threads: 500 alternating turns of main and a worker", async () => {
    const lab = await newLab();
    const agent = await startAgent(lab, "alternate");
    const tl = lab.sync.timeline();
    const fences = Array.from({ length: 1000 }, () => tl.createFence());
    tl.unref();
    const turn = new Int32Array(lab.memory.buffer, lab.alloc(4).byteOffset, 1);
    const theirs = agent.request<number>({ op: "alternate", offsets: fences.map((f) => f.offset), turn, timeoutMs: WAIT_MS });
    const deadline = performance.now() + WAIT_MS;
    for (let k = 0; k < fences.length; k += 2) {
      // Bounded spin (the worker answers fast when it runs on the other core), then sleep.
      for (let spin = 0; spin < 100_000 && Atomics.load(turn, 0) !== k; spin++);
      for (let now = Atomics.load(turn, 0); now !== k; now = Atomics.load(turn, 0)) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`turn ${k} never came (turn is ${now})`);
        Atomics.wait(turn, 0, now, left);
      }
      fences[k].signal();
      Atomics.store(turn, 0, k + 1);
      Atomics.notify(turn, 0);
    }
    expect(await theirs).toBe(fences.length / 2);
    const ts = fences.map((f) => f.timestampNs);
    for (let k = 1; k < ts.length; k++) {
      expect(ts[k], `fence ${k} (signalled by ${k % 2 ? "the worker" : "main"}) after fence ${k - 1}`).toBeGreaterThanOrEqual(ts[k - 1]);
    }
    for (const f of fences) f.put();
  });

  test("set_error after signalling gives EINVAL and changes nothing", async () => {
    const lab = await newLab();
    const f = mock(lab);
    f.signal();
    const ts = f.timestampNs;
    expect(codeOf(() => f.setError(EIO))).toBe("EINVAL");
    expect(f.status).toBe(1);
    expect(f.timestampNs).toBe(ts);
    const g = mock(lab);
    g.signal(-22);
    expect(codeOf(() => g.setError(EIO))).toBe("EINVAL");
    expect(g.status).toBe(-22);
    f.put();
    g.put();
  });

  test("set_error with 0, a positive, out-of-range or non-integer value gives EINVAL and stores nothing", async () => {
    const lab = await newLab();
    const f = mock(lab);
    for (const bad of [0, 1, 22, -4096, -1e9, -1.5, Number.NaN, -Infinity]) {
      expect(codeOf(() => f.setError(bad)), `set_error(${bad})`).toBe("EINVAL");
    }
    expect(f.status).toBe(0);
    f.signal();
    expect(f.status).toBe(1);
    // The limits themselves are valid; the last error set wins.
    const g = mock(lab);
    g.setError(-1);
    g.setError(-4095);
    g.signal();
    expect(g.status).toBe(-4095);
    // An error given to signal overrides one set before.
    const h = mock(lab);
    h.setError(-1);
    h.signal(EIO);
    expect(h.status).toBe(EIO);
    for (const x of [f, g, h]) x.put();
  });

  test("signal with a bad error gives EINVAL and leaves the fence pending", async () => {
    const lab = await newLab();
    const f = mock(lab);
    for (const bad of [1, 4095, -4096, 0.5, -4.5, 2 ** 32 - 5, -(2 ** 32) + 1, Number.NaN]) {
      expect(codeOf(() => f.signal(bad)), `signal(${bad})`).toBe("EINVAL");
      expect(codeOf(() => f.checkAndSignal(bad)), `checkAndSignal(${bad})`).toBe("EINVAL");
      expect(f.status, `after signal(${bad})`).toBe(0);
      expect(f.timestampNs).toBe(0);
    }
    f.signal(-4095);
    expect(f.status).toBe(-4095);
    f.put();
  });

  test("a container cannot be signalled or given an error: EINVAL, its fences stay pending", async () => {
    const lab = await newLab();
    const [a, b] = [mock(lab), mock(lab)];
    for (const any of [false, true]) {
      const arr = lab.sync.array([a, b], any);
      expect(codeOf(() => arr.signal())).toBe("EINVAL");
      expect(codeOf(() => arr.checkAndSignal())).toBe("EINVAL");
      expect(codeOf(() => arr.setError(EIO))).toBe("EINVAL");
      expect(lab.engine.wasm.fence_signal(arr.offset, 0, lab.sync.clock.nowNs())).toBe(-22);
      expect([arr.status, a.status, b.status]).toEqual([0, 0, 0]);
      arr.put();
    }
    a.put();
    b.put();
  });

  test("put() of a borrowed view, or a second put(), gives EINVAL and changes nothing", async () => {
    const lab = await newLab();
    const [a, b] = [mock(lab), mock(lab)];
    const arr = lab.sync.array([a, b]);
    expect(a.refcount).toBe(2);
    const [child] = arr.children();
    expect(child.owned).toBe(false);
    expect(codeOf(() => child.put())).toBe("EINVAL");
    expect(a.refcount).toBe(2);
    const extra = a.get();
    expect(a.refcount).toBe(3);
    extra.put();
    expect(codeOf(() => extra.put())).toBe("EINVAL");
    expect(a.refcount).toBe(2);
    arr.put();
    expect(a.refcount).toBe(1);
    a.put();
    b.put();
  });

  test("references: the record is freed with the last put, in whichever thread", async () => {
    const lab = await newLab();
    const agent = await startAgent(lab, "refs");
    const free = () => lab.stats().sync.freeBytes;
    const before = free();
    const tl = lab.sync.timeline();
    const f = tl.createFence();
    const afterCreate = free();
    expect(afterCreate).toBeLessThan(before);
    expect(f.refcount).toBe(1);
    const g = f.get();
    expect(g.is(f)).toBe(true);
    expect(f.refcount).toBe(2);
    f.put();
    expect(g.refcount).toBe(1);
    expect(free()).toBe(afterCreate);
    // A worker takes its own reference (fenceAt) for the operation and puts it.
    const r = await agent.request<SignalResult>({ op: "signal", offset: g.offset });
    expect(r).toMatchObject({ already: false, status: 1 });
    expect(g.refcount).toBe(1);
    {
      using h = lab.sync.fenceAt(g.offset);
      expect(h.refcount).toBe(2);
    }
    expect(g.refcount).toBe(1);
    g.put();
    tl.unref(); // the timeline goes with its last fence and its own reference
    expect(free()).toBe(before);
  });

  test("an owned view collected without put() drops its reference (FinalizationRegistry)", async () => {
    const lab = await newLab();
    const agent = await startAgent(lab, "gc");
    const f = mock(lab);
    const r = await agent.request<GcDropResult>({ op: "gc-drop", offset: f.offset, attempts: 50 });
    expect(r.refcountWithView).toBe(2);
    expect(r.refcountAfter, `after ${r.attempts} collections`).toBe(1);
    expect(f.refcount).toBe(1);
    f.put();
  });

  test("deadline hint: 0 when none, the earliest is kept, non-positive values give EINVAL", async () => {
    const lab = await newLab();
    const f = mock(lab);
    expect(f.deadlineNs).toBe(0);
    f.setDeadline(5e6);
    expect(f.deadlineNs).toBe(5e6);
    f.setDeadline(8e6);
    expect(f.deadlineNs).toBe(5e6);
    f.setDeadline(3e6);
    expect(f.deadlineNs).toBe(3e6);
    for (const bad of [0, -1, Number.NaN]) expect(codeOf(() => f.setDeadline(bad)), `setDeadline(${bad})`).toBe("EINVAL");
    expect(f.deadlineNs).toBe(3e6);
    f.put();
  });

  test("waitAsync resolves when a worker signals, and gives 0 on timeout", async () => {
    const lab = await newLab();
    const agent = await startAgent(lab, "async");
    const f = mock(lab);
    const g = mock(lab);
    expect(await g.waitAsync(0)).toBe(0);
    expect(await g.waitAsync(20)).toBe(0);
    expect(g.status).toBe(0);
    const waiting = f.waitAsync(WAIT_MS);
    const r = await agent.request<SignalResult>({ op: "signal", offset: f.offset, error: EIO });
    expect(r.already).toBe(false);
    expect(await within(waiting, WAIT_MS, "waitAsync")).toBeGreaterThan(0);
    expect(f.status).toBe(EIO);
    expect(await f.waitAsync(0)).toBe(1);
    await expect(f.waitAsync(-1)).rejects.toMatchObject({ code: "EINVAL" });
    f.put();
    g.put();
  });

  test("wait() with a negative or NaN timeout gives EINVAL", async () => {
    const lab = await newLab();
    const f = mock(lab);
    for (const bad of [-1, Number.NaN]) expect(codeOf(() => f.wait(bad)), `wait(${bad})`).toBe("EINVAL");
    f.put();
  });

  test("callbacks added in main run once, in order, from the event loop when a worker signals", async () => {
    const lab = await newLab();
    const agent = await startAgent(lab, "signaller");
    const f = mock(lab);
    const calls: string[] = [];
    let done!: () => void;
    const ran = new Promise<void>((resolve) => { done = resolve; });
    f.addCallback((g) => { calls.push(`1:${g.offset === f.offset}:${threadId}`); });
    f.addCallback(() => { calls.push("2"); done(); });
    await agent.request<SignalResult>({ op: "signal", offset: f.offset });
    await within(ran, WAIT_MS, "the callbacks");
    expect(calls).toEqual([`1:true:${threadId}`, "2"]);
    // Seeing the signal again runs nothing again.
    expect(f.wait(0)).toBe(1);
    expect(await f.waitAsync(0)).toBe(1);
    await turns(3);
    expect(calls).toHaveLength(2);
    f.put();
  });

  test("a worker's callback runs in the worker, once, when main signals; main's runs inside signal()", async () => {
    const lab = await newLab();
    const agent = await startAgent(lab, "listener");
    const f = mock(lab);
    expect(await agent.request({ op: "callback", offset: f.offset })).toEqual({ added: true });
    let mine = 0;
    f.addCallback(() => { mine++; });
    f.signal(EIO);
    expect(mine).toBe(1);
    const e = await agent.event("callback");
    expect(e).toMatchObject({ offset: f.offset, threadId: agent.threadId, calls: 1, status: EIO });
    expect(agent.threadId).not.toBe(threadId);
    expect(await agent.request({ op: "wait", offset: f.offset, timeoutMs: 0 })).toMatchObject({ left: 1, status: EIO });
    expect(await agent.request<number>({ op: "callback-count", offset: f.offset })).toBe(1);
    // A late add in the worker: ENOENT, never run.
    expect(await agent.request({ op: "callback", offset: f.offset })).toEqual({ added: false, code: "ENOENT" });
    expect(await agent.request<number>({ op: "callback-count", offset: f.offset })).toBe(0);
    expect(mine).toBe(1);
    f.put();
  });

  test("a worker's callback runs inside its own wait() when another thread signals", async () => {
    const lab = await newLab();
    const [listener, signaller] = await Promise.all([startAgent(lab, "listener"), startAgent(lab, "signaller")]);
    const f = mock(lab);
    expect(await listener.request({ op: "callback", offset: f.offset })).toEqual({ added: true });
    const waiting = listener.request<WaitResult>({ op: "wait", offset: f.offset, timeoutMs: WAIT_MS });
    // The listener's callback watch and its wait() both sleep on the fence before the signal.
    const waiters = () => Atomics.load(lab.sync.i32, (f.offset + FENCE_WAITERS) >>> 2);
    await until(() => waiters() === 2, WAIT_MS, "the listener's watch and wait()");
    await signaller.request<SignalResult>({ op: "signal", offset: f.offset });
    const w = await waiting;
    expect(w.left).toBeGreaterThan(0);
    expect(await listener.event("callback")).toMatchObject({ calls: 1, threadId: listener.threadId });
    // The callback ran before wait() returned (its event came before the reply).
    expect(listener.log).toEqual(["reply:callback", "event:callback", "reply:wait"]);
    expect(await listener.request<number>({ op: "callback-count", offset: f.offset })).toBe(1);
    f.put();
  });

  test.each([2, 4])("%i workers race to signal the same 4000 fences: exactly one wins each", async (count) => {
    const lab = await newLab();
    const N = 4000;
    const tl = lab.sync.timeline();
    const fences = Array.from({ length: N }, () => tl.createFence());
    tl.unref();
    const offsetsMem = lab.alloc(4 * N);
    const winsMem = lab.alloc(4 * N);
    const offsets = new Int32Array(lab.memory.buffer, offsetsMem.byteOffset, N);
    const wins = new Int32Array(lab.memory.buffer, winsMem.byteOffset, N);
    fences.forEach((f, i) => { offsets[i] = f.offset; });
    const start = new Int32Array(new SharedArrayBuffer(4));
    const boxes = Array.from({ length: count }, (_, index) => {
      const data: FenceSignalRaceData = {
        handle: lab.share(), index, count: N, offsets: offsetsMem.byteOffset, wins: winsMem.byteOffset, start, timeoutMs: WAIT_MS,
      };
      return workers.start("fence-signal-race", `signaller-${index}`, data);
    });
    await releaseAll(boxes, start, WAIT_MS);
    const done = await reports<FenceSignalRaceReport>(boxes, WAIT_MS);
    for (const r of done) expect(r.won + r.lost).toBe(N);
    expect(done.reduce((n, r) => n + r.won, 0)).toBe(N);
    const errors = new Set(done.map((r) => -(r.index + 1)));
    fences.forEach((f, i) => {
      if (wins[i] !== 1) expect.fail(`fence ${i}: ${wins[i]} winners`);
      if (!errors.has(f.status)) expect.fail(`fence ${i}: status ${f.status} is no worker's error`);
      if (!(f.timestampNs > 0)) expect.fail(`fence ${i}: no timestamp`);
    });
    // The status names the winner: each worker's wins are the fences with its error.
    for (const r of done) expect(fences.filter((f) => f.status === -(r.index + 1)).length, `worker ${r.index}`).toBe(r.won);
    for (const f of fences) f.put();
    lab.free(offsetsMem);
    lab.free(winsMem);
  });
});

/*
 * dma_resv: the kernel's KUnit suite (drivers/dma-buf/st-dma-resv.c) by name,
 * for every usage (KERNEL, WRITE, READ, BOOKKEEP), then the rules it does not
 * cover: usage visibility, usageRw, add_fence's replacement rule against a
 * plain-JS model over seeded random sequences, the misuse codes (EINVAL,
 * ENOSPC, ENOMEM, each with nothing changed), get_singleton, waiting by
 * usage, the lock and its statistics (with real workers), and references.
 *
 * Kernel -> here: the selftest's fences all have context 0, so each test
 * makes its fences on one "selftest" timeline. Queries that the kernel runs
 * under RCU (test_signaled, get_fences, unlocked iteration) take the lock
 * briefly here, so they run after unlock(). The unlocked iteration's forced
 * restart (the kernel corrupts the cursor) is a reserveFences() that
 * replaces the slot array between two steps. Workers are terminated in
 * afterEach whatever the outcome; every wait has a timeout; contention is
 * never assumed (two cores, no parallelism guarantee) except where this
 * thread holds the lock and watches a worker block on it.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { DmaBufError, Lab, type Fence } from "../src/index.js";
import { FENCE_KIND_ARRAY } from "../src/engine/abi.js";
import { MUTEX_STATE } from "../src/memory/mutex.js";
import { FenceArray } from "../src/sync/fence_array.js";
import {
  DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE,
  Resv, usageNames, usageRw, type ResvUsage,
} from "../src/sync/resv.js";
import type { Timeline } from "../src/sync/timeline.js";
import { codeOf, dmaBufError } from "./helpers/errors.js";
import { cleanUpAfterEach, heapBalanced, LabSet } from "./helpers/lab.js";
import { withSeed, type Prng } from "./helpers/prng.js";
import { sleep } from "./helpers/waits.js";
import { releaseAll, reports, WorkerSet, type Inbox } from "./helpers/workers.js";
import type { ResvAgentData, ResvAgentReport } from "./workers/resv-agent.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const USAGES: ResvUsage[] = [DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_WRITE, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_BOOKKEEP];

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create({ memoryBytes: 32 * MiB });
});
afterAll(() => lab?.close());

const workers = new WorkerSet();
/** Labs of single tests (the shared one is `lab`). */
const extraLabs = new LabSet();
cleanUpAfterEach({ workers, labs: extraLabs });
// A test that fails while a worker works on its object leaks the object
// rather than freeing records a worker may still touch.

const heapFree = (l: Lab = lab): number => l.stats().sync.freeBytes;

/** Runs a test body and checks that every record it made was released. */
const balanced = heapBalanced(() => lab);

/** The selftest's fences: one context (one timeline), seqno 0. The caller unrefs it. */
const selftestTimeline = (l: Lab = lab): Timeline => l.sync.timeline({ driver: "selftest", name: "selftest" });
const mockTimeline = (): Timeline => lab.sync.timeline({ driver: "mock", name: "mock" });

/** A fence as text for assertions (printing a view would dump the whole arena). */
const desc = (f: Fence | null | undefined): string | null => (f ? f.describe() : null);

/** The entries under the lock: [fence offset, usage], in slot order. */
function entries(resv: Resv): [number, number][] {
  return resv.withLock(() => [...resv.iter(DMA_RESV_USAGE_BOOKKEEP)].map((e) => [e.fence.offset, e.usage]));
}

/** lock; reserve n; add; unlock. */
function addLocked(resv: Resv, f: Fence, usage: ResvUsage, reserve = 1): void {
  resv.withLock(() => {
    resv.reserveFences(reserve);
    resv.addFence(f, usage);
  });
}

function startAgent(name: string, data: Omit<ResvAgentData, "handle" | "start" | "timeoutMs"> & { start?: Int32Array }): Inbox {
  const full: ResvAgentData = {
    handle: lab.share(), start: new Int32Array(new SharedArrayBuffer(4)), timeoutMs: WAIT_MS, ...data,
  };
  return workers.start("resv-agent", name, full);
}

// ---- the KUnit suite ----------------------------------------------------------

/**
 * The selftests' setup and teardown around body: a fence on the selftest
 * timeline (seqno 0) and a new object; after body, the object and the fence
 * are put and the timeline unref'd. The sync heap must balance.
 */
function withFenceAndResv(body: (f: Fence, resv: Resv) => void): () => Promise<void> {
  return balanced(() => {
    const t = selftestTimeline();
    const f = t.createFence(0n);
    const resv = lab.sync.resv();
    body(f, resv);
    resv.put();
    f.put();
    t.unref();
  });
}

describe.each(USAGES.map((u) => [usageNames[u], u] as const))("KUnit dma-resv, usage %s", (_name, usage) => {
  test("sanitycheck", balanced(() => {
    const t = selftestTimeline();
    const f = t.createFence(0n);
    f.signal();
    f.put();
    const resv = lab.sync.resv();
    expect(() => resv.lock()).not.toThrow();
    resv.unlock();
    resv.put();
    t.unref();
  }));

  test("signaling", withFenceAndResv((f, resv) => {
    resv.lock();
    resv.reserveFences(1);
    resv.addFence(f, usage);
    // The kernel tests under the lock (RCU); testSignaled takes the lock itself here.
    resv.unlock();
    expect(resv.testSignaled(usage), "test_signaled with the fence pending").toBe(false);
    f.signal();
    expect(resv.testSignaled(usage), "test_signaled with the fence signalled").toBe(true);
  }));

  test("for_each", withFenceAndResv((f, resv) => {
    resv.lock();
    resv.reserveFences(1);
    resv.addFence(f, usage);
    const seen = [...resv.iter(usage)];
    expect(seen.length, "exactly one fence").toBe(1);
    expect(seen[0].fence.is(f)).toBe(true);
    expect(seen[0].usage).toBe(usage);
    expect(seen[0].restarted).toBe(true);
    f.signal();
    // The locked iteration does not skip signalled fences.
    expect([...resv.iter(usage)].length).toBe(1);
    resv.unlock();
  }));

  test("for_each_unlocked", withFenceAndResv((f, resv) => {
    addLocked(resv, f, usage);
    let r = "ENOENT";
    let runs = 0;
    for (const e of resv.iterUnlocked(usage)) {
      runs++;
      try {
        expect(r, "more than one fence").not.toBe("OK");
        expect(e.restarted, `step ${runs}: restarted`).toBe(true);
        expect(e.fence.is(f)).toBe(true);
        expect(e.usage).toBe(usage);
        if (r === "ENOENT") {
          r = "EINVAL";
          // Force a restart: a new slot array between this step and the next.
          resv.withLock(() => resv.reserveFences(64));
        } else if (r === "EINVAL") {
          r = "OK";
        }
      } finally {
        e.fence.put();
      }
      if (runs > 4) break;
    }
    expect(runs, "the body runs exactly twice").toBe(2);
    expect(r).toBe("OK");
    f.signal();
  }));

  test("get_fences", withFenceAndResv((f, resv) => {
    addLocked(resv, f, usage);
    const fences = resv.getFences(usage);
    expect(fences.length).toBe(1);
    expect(fences[0].is(f)).toBe(true);
    expect(fences[0].owned).toBe(true);
    expect(f.refcount).toBe(3);
    f.signal();
    fences.forEach((x) => x.put());
  }));
});

// ---- usages -------------------------------------------------------------------

describe("usages", () => {
  test("a query at usage U sees every fence of usage <= U, for every pair", balanced(() => {
    const t = selftestTimeline();
    for (const stored of USAGES) {
      for (const query of USAGES) {
        const what = `stored ${usageNames[stored]}, query ${usageNames[query]}`;
        const visible = stored <= query;
        const f = t.createFence(0n);
        const resv = lab.sync.resv();
        addLocked(resv, f, stored);
        expect(resv.withLock(() => [...resv.iter(query)].length), `${what}: iter`).toBe(visible ? 1 : 0);
        expect(resv.testSignaled(query), `${what}: test_signaled`).toBe(!visible);
        const got = resv.getFences(query);
        expect(got.length, `${what}: get_fences`).toBe(visible ? 1 : 0);
        got.forEach((x) => x.put());
        const unlocked = [...resv.iterUnlocked(query)];
        expect(unlocked.length, `${what}: unlocked iteration`).toBe(visible ? 1 : 0);
        unlocked.forEach((e) => e.fence.put());
        expect(resv.wait(query, 0), `${what}: wait(0)`).toBe(visible ? 0 : 1);
        f.signal();
        resv.put();
        f.put();
      }
    }
    t.unref();
  }));

  test("several usages in one object: each query sees the fences up to it, in slot order", balanced(() => {
    const ts = USAGES.map(() => mockTimeline());
    const fences = ts.map((t) => t.createFence(1n));
    const resv = lab.sync.resv();
    // Added in an order that is not the usage order.
    const order: ResvUsage[] = [DMA_RESV_USAGE_READ, DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_WRITE];
    for (const u of order) addLocked(resv, fences[u], u);
    for (const q of USAGES) {
      const expected = order.filter((u) => u <= q).map((u) => [fences[u].offset, u]);
      expect(resv.withLock(() => [...resv.iter(q)].map((e) => [e.fence.offset, e.usage])), usageNames[q]).toEqual(expected);
      const got = resv.getFences(q);
      expect(got.map((x) => x.offset)).toEqual(expected.map(([o]) => o));
      got.forEach((x) => x.put());
    }
    // Signalled fences leave the unlocked queries, not the locked iteration.
    fences[DMA_RESV_USAGE_KERNEL].signal();
    expect(resv.testSignaled(DMA_RESV_USAGE_KERNEL)).toBe(true);
    expect(resv.testSignaled(DMA_RESV_USAGE_WRITE)).toBe(false);
    expect(resv.withLock(() => [...resv.iter(DMA_RESV_USAGE_KERNEL)].length)).toBe(1);
    const unlocked = [...resv.iterUnlocked(DMA_RESV_USAGE_BOOKKEEP)];
    expect(unlocked.map((e) => e.fence.offset)).toEqual(
      order.filter((u) => u !== DMA_RESV_USAGE_KERNEL).map((u) => fences[u].offset));
    expect(unlocked.map((e) => e.restarted)).toEqual([true, false, false]);
    unlocked.forEach((e) => e.fence.put());
    for (const f of fences) f.checkAndSignal();
    resv.put();
    fences.forEach((f) => f.put());
    ts.forEach((t) => t.unref());
  }));

  test("usageRw: a writer waits for readers (READ), a reader for writers (WRITE)", balanced(() => {
    expect(usageRw(true)).toBe(DMA_RESV_USAGE_READ);
    expect(usageRw(false)).toBe(DMA_RESV_USAGE_WRITE);
    const t = mockTimeline();
    const reader = t.createFence(1n);
    const resv = lab.sync.resv();
    addLocked(resv, reader, DMA_RESV_USAGE_READ);
    expect(resv.testSignaled(usageRw(true)), "a new writer sees the reader").toBe(false);
    expect(resv.testSignaled(usageRw(false)), "a new reader does not").toBe(true);
    reader.signal();
    resv.put();
    reader.put();
    t.unref();
  }));

  test("bad usages are refused with EINVAL", balanced(() => {
    const t = mockTimeline();
    const f = t.createFence(1n);
    const resv = lab.sync.resv();
    resv.lock();
    resv.reserveFences(1);
    for (const bad of [4, -1, 1.5, Number.NaN]) {
      expect(codeOf(() => resv.addFence(f, bad as ResvUsage)), `addFence usage ${bad}`).toBe("EINVAL");
      expect(codeOf(() => [...resv.iter(bad as ResvUsage)]), `iter usage ${bad}`).toBe("EINVAL");
    }
    resv.unlock();
    for (const bad of [4, -1]) {
      expect(codeOf(() => resv.getFences(bad as ResvUsage))).toBe("EINVAL");
      expect(codeOf(() => resv.testSignaled(bad as ResvUsage))).toBe("EINVAL");
      expect(codeOf(() => [...resv.iterUnlocked(bad as ResvUsage)])).toBe("EINVAL");
    }
    expect(resv.count).toBe(0);
    expect(f.refcount).toBe(1);
    f.signal();
    resv.put();
    f.put();
    t.unref();
  }));
});

// ---- add_fence's replacement rule against a model ------------------------------

/** dma_fence_is_later for 32-bit seqnos: a is later when (a - b) mod 2^32 is in (0, 2^31). */
function later32(a: bigint, b: bigint): boolean {
  const d = Number(BigInt.asUintN(32, a - b));
  return d > 0 && d < 2 ** 31;
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(n));

/**
 * The kernel's dma_resv list as plain data. Capacity: the kernel's
 * reserve_fences rule (max(num + n, 2 max) when growing, max(4,
 * roundup_pow_of_two(n)) for the first list; the lab's first list holds at
 * least 16), rounded up to the allocator's
 * block as the kernel rounds to the slab bucket: here 64-byte granules, 8
 * bytes a slot, power-of-two blocks.
 */
class ResvModel {
  list: { f: Fence; usage: ResvUsage }[] = [];
  capacity = 0;
  hasList = false;
  /** RESV_CURSOR: the entry the next add without a same-context match looks at. */
  cursor = 0;
  readonly signalled = new Set<number>();

  reserve(n: number): "room" | "compacted" | "grown" {
    if (this.hasList && this.list.length + n <= this.capacity) return "room";
    const pending = this.list.filter((e) => !this.signalled.has(e.f.offset));
    const grow = !this.hasList || 2 * (pending.length + n) > this.capacity;
    if (grow) {
      const wanted = this.hasList ? Math.max(pending.length + n, 4 * this.capacity) : Math.max(16, nextPow2(n));
      // 16 bytes of the block per slot (the slot and its two index buckets), 64-byte granules.
      this.capacity = Math.max(4, nextPow2(wanted));
    }
    this.hasList = true;
    this.list = pending;
    this.cursor = 0;
    return grow ? "grown" : "compacted";
  }

  add(f: Fence, usage: ResvUsage): "same-context" | "signalled" | "appended" | "ENOSPC" {
    for (const [i, e] of this.list.entries()) {
      if (e.f.context === f.context && e.usage >= usage && (e.f.offset === f.offset || later32(f.seqno, e.f.seqno))) {
        this.list[i] = { f, usage };
        return "same-context";
      }
    }
    const n = this.list.length;
    const at = this.cursor < n ? this.cursor : 0;
    const next = at + 1 < n ? at + 1 : 0;
    if (n > 0 && this.signalled.has(this.list[at].f.offset)) {
      this.list[at] = { f, usage };
      this.cursor = next;
      return "signalled";
    }
    if (!this.hasList || n >= this.capacity) return "ENOSPC";
    this.list.push({ f, usage });
    this.cursor = next;
    return "appended";
  }

  refsOn(f: Fence): number {
    return this.list.filter((e) => e.f.offset === f.offset).length;
  }
}

const SEQNOS = [0xfffffffen, 0xffffffffn, 0n, 1n, 2n, 3n];

function runModelSequence(rng: Prng, steps: number, outcomes: Map<string, number>): void {
  const timelines = [0, 1, 2].map(() => mockTimeline());
  const pool: Fence[] = [];
  const model = new ResvModel();
  const resv = lab.sync.resv();
  const log: string[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const roll = rng.next();
      if (roll < 0.2) {
        const n = rng.int(1, 3);
        log.push(`reserve ${n}`);
        const how = model.reserve(n);
        resv.withLock(() => resv.reserveFences(n));
        outcomes.set(`reserve: ${how}`, (outcomes.get(`reserve: ${how}`) ?? 0) + 1);
      } else if (roll < 0.45) {
        const pending = pool.filter((f) => !model.signalled.has(f.offset));
        if (pending.length === 0) continue;
        const f = rng.pick(pending);
        log.push(`signal ${f.describe()}`);
        f.signal();
        model.signalled.add(f.offset);
      } else {
        let f: Fence;
        if (pool.length > 0 && rng.next() < 0.35) {
          f = rng.pick(pool);
        } else {
          f = rng.pick(timelines).createFence(rng.pick(SEQNOS));
          pool.push(f);
        }
        const usage = rng.pick(USAGES);
        log.push(`add ${f.describe()} ${usageNames[usage]}`);
        const expected = model.add(f, usage);
        let actual: string = "added";
        try {
          resv.withLock(() => resv.addFence(f, usage));
        } catch (e) {
          if (!(e instanceof DmaBufError)) throw e;
          actual = e.code;
        }
        expect(actual, `step ${step}: ${log.slice(-12).join("; ")}`).toBe(expected === "ENOSPC" ? "ENOSPC" : "added");
        outcomes.set(expected, (outcomes.get(expected) ?? 0) + 1);
      }
      const what = `after step ${step}: ${log.slice(-12).join("; ")}`;
      expect(entries(resv), what).toEqual(model.list.map((e) => [e.f.offset, e.usage]));
      expect(resv.count, what).toBe(model.list.length);
      for (const f of pool) expect(f.refcount, `${what}: refcount of ${f.describe()}`).toBe(1 + model.refsOn(f));
    }
  } finally {
    for (const f of pool) f.checkAndSignal();
    resv.put();
    for (const f of pool) {
      expect(f.refcount).toBe(1);
      f.put();
    }
    timelines.forEach((t) => t.unref());
  }
}

describe("add_fence's replacement rule", () => {
  test("the first entry of the same context with a usage not stronger and a seqno not later is replaced, else a signalled entry at the cursor; a reservation that finds the array full drops the signalled ones",
    balanced(() => {
      const t = mockTimeline();
      const other = mockTimeline();
      const resv = lab.sync.resv();
      const w1 = t.createFence(1n);
      const w2 = t.createFence(2n);
      const r3 = t.createFence(3n);
      const k4 = t.createFence(4n);
      const old = t.createFence(0n);
      const o1 = other.createFence(1n);
      resv.withLock(() => resv.reserveFences(8));
      resv.withLock(() => resv.addFence(w1, DMA_RESV_USAGE_WRITE));
      resv.withLock(() => resv.addFence(w2, DMA_RESV_USAGE_WRITE));
      expect(entries(resv), "later, same usage: replaced").toEqual([[w2.offset, DMA_RESV_USAGE_WRITE]]);
      resv.withLock(() => resv.addFence(r3, DMA_RESV_USAGE_READ));
      expect(entries(resv), "weaker usage: added beside").toEqual([[w2.offset, DMA_RESV_USAGE_WRITE], [r3.offset, DMA_RESV_USAGE_READ]]);
      resv.withLock(() => resv.addFence(old, DMA_RESV_USAGE_KERNEL));
      expect(entries(resv).length, "an older seqno is not replaced").toBe(3);
      resv.withLock(() => resv.addFence(w2, DMA_RESV_USAGE_WRITE));
      expect(entries(resv).length, "the same fence again: replaced by itself").toBe(3);
      expect(w2.refcount).toBe(2);
      resv.withLock(() => resv.addFence(k4, DMA_RESV_USAGE_KERNEL));
      expect(entries(resv), "a stronger usage replaces the first match and lowers its usage").toEqual([
        [k4.offset, DMA_RESV_USAGE_KERNEL], [r3.offset, DMA_RESV_USAGE_READ], [old.offset, DMA_RESV_USAGE_KERNEL]]);
      old.signal();
      resv.withLock(() => resv.addFence(o1, DMA_RESV_USAGE_BOOKKEEP));
      expect(entries(resv), "the entry at the cursor (r3) is pending: the new one is appended").toEqual([
        [k4.offset, DMA_RESV_USAGE_KERNEL], [r3.offset, DMA_RESV_USAGE_READ], [old.offset, DMA_RESV_USAGE_KERNEL],
        [o1.offset, DMA_RESV_USAGE_BOOKKEEP]]);
      resv.withLock(() => resv.reserveFences(13));
      expect(entries(resv), "a reservation that finds the array full drops the signalled fence").toEqual([
        [k4.offset, DMA_RESV_USAGE_KERNEL], [r3.offset, DMA_RESV_USAGE_READ], [o1.offset, DMA_RESV_USAGE_BOOKKEEP]]);
      const third = mockTimeline();
      const x1 = third.createFence(1n);
      k4.signal();
      resv.withLock(() => resv.addFence(x1, DMA_RESV_USAGE_READ));
      expect(entries(resv), "a signalled entry at the cursor is replaced by a fence of another context").toEqual([
        [x1.offset, DMA_RESV_USAGE_READ], [r3.offset, DMA_RESV_USAGE_READ], [o1.offset, DMA_RESV_USAGE_BOOKKEEP]]);
      expect([w1, w2, r3, k4, old, o1, x1].map((f) => f.refcount)).toEqual([1, 1, 2, 1, 1, 2, 2]);
      for (const f of [w1, w2, r3, o1, x1]) f.checkAndSignal();
      resv.put();
      for (const f of [w1, w2, r3, k4, old, o1, x1]) f.put();
      t.unref();
      other.unref();
      third.unref();
    }));

  test("seeded random sequences of reserve / add / signal match the model", balanced(() => withSeed((rng) => {
    const outcomes = new Map<string, number>();
    for (let seq = 0; seq < 30; seq++) runModelSequence(rng, 400, outcomes);
    // Every branch of the rule was exercised.
    for (const k of ["reserve: room", "reserve: compacted", "reserve: grown", "same-context", "signalled", "appended", "ENOSPC"]) {
      expect(outcomes.get(k) ?? 0, `outcome ${k}`).toBeGreaterThan(0);
    }
  })));
});

// ---- misuse --------------------------------------------------------------------

describe("misuse changes nothing", () => {
  test("reserveFences(0) and other non-positive counts: EINVAL", balanced(() => {
    const resv = lab.sync.resv();
    resv.lock();
    for (const n of [0, -1, 1.5, Number.NaN]) expect(codeOf(() => resv.reserveFences(n)), `reserveFences(${n})`).toBe("EINVAL");
    resv.unlock();
    resv.put();
  }));

  test("addFence with no reserved slot: ENOSPC, count, fences and references unchanged", balanced(() => {
    const resv = lab.sync.resv();
    const t = mockTimeline();
    const first = t.createFence(1n);
    // No list at all.
    expect(resv.withLock(() => dmaBufError(() => resv.addFence(first, DMA_RESV_USAGE_WRITE))).code).toBe("ENOSPC");
    expect(resv.count).toBe(0);
    expect(first.refcount).toBe(1);
    addLocked(resv, first, DMA_RESV_USAGE_WRITE);
    // Fill the reserved slots with fences of new contexts until one is refused.
    const timelines = [t];
    const fences = [first];
    let refused: Fence | undefined;
    for (let i = 0; i < 1000 && refused === undefined; i++) {
      const ti = mockTimeline();
      timelines.push(ti);
      const f = ti.createFence(1n);
      fences.push(f);
      const before = entries(resv);
      const refs = fences.map((x) => x.refcount);
      const err = resv.withLock(() => {
        try {
          resv.addFence(f, DMA_RESV_USAGE_READ);
          return undefined;
        } catch (e) {
          return e;
        }
      });
      if (err !== undefined) {
        expect(err).toBeInstanceOf(DmaBufError);
        expect((err as DmaBufError).code).toBe("ENOSPC");
        expect(entries(resv)).toEqual(before);
        expect(resv.count).toBe(before.length);
        expect(fences.map((x) => x.refcount)).toEqual(refs);
        refused = f;
      }
    }
    expect(desc(refused), "a full list refuses an append").not.toBeNull();
    const full = resv.count;
    expect(full).toBeGreaterThanOrEqual(4);
    // A replacement needs no slot: a later fence of a held context.
    const later = t.createFence(2n);
    fences.push(later);
    resv.withLock(() => resv.addFence(later, DMA_RESV_USAGE_WRITE));
    expect(resv.count).toBe(full);
    expect(entries(resv)[0]).toEqual([later.offset, DMA_RESV_USAGE_WRITE]);
    // A signalled entry is dropped by the next reservation that finds the array full.
    fences[3].signal();
    const capacityBefore = entries(resv).length;
    resv.withLock(() => resv.reserveFences(1));
    resv.withLock(() => resv.addFence(refused!, DMA_RESV_USAGE_READ));
    expect(resv.count).toBe(capacityBefore);
    expect(entries(resv).map(([f]) => f)).not.toContain(fences[3].offset);
    expect(entries(resv)[entries(resv).length - 1]).toEqual([refused!.offset, DMA_RESV_USAGE_READ]);
    for (const f of fences) f.checkAndSignal();
    resv.put();
    fences.forEach((f) => f.put());
    timelines.forEach((x) => x.unref());
  }));

  test("adding a container: EINVAL", balanced(() => {
    const t = mockTimeline();
    const f = t.createFence(1n);
    const array = lab.sync.array([f]);
    const chain = lab.sync.chain(null, f, 1n);
    const resv = lab.sync.resv();
    resv.lock();
    resv.reserveFences(1);
    expect(codeOf(() => resv.addFence(array, DMA_RESV_USAGE_WRITE))).toBe("EINVAL");
    expect(codeOf(() => resv.addFence(chain, DMA_RESV_USAGE_WRITE))).toBe("EINVAL");
    resv.unlock();
    expect(resv.count).toBe(0);
    expect([f.refcount, array.refcount, chain.refcount]).toEqual([3, 1, 1]);
    f.signal();
    resv.put();
    for (const x of [chain, array, f]) x.put();
    t.unref();
  }));

  test("the sync heap exhausted: ENOMEM from reserveFences and getSingleton, nothing changed", async () => {
    const small = await extraLabs.create({ memoryBytes: 16 * MiB, syncBytes: 64 * 1024 });
    const pristine = heapFree(small);
    const t = selftestTimeline(small);
    const a = t.createFence(1n);
    const tb = small.sync.timeline();
    const b = tb.createFence(1n);
    const resv = small.sync.resv();
    addLocked(resv, a, DMA_RESV_USAGE_WRITE);
    addLocked(resv, b, DMA_RESV_USAGE_READ);
    // Fill the heap with fences (one granule each) until it refuses.
    const filler: Fence[] = [];
    let refused: DmaBufError | undefined;
    for (let i = 0; i < 64 * 1024 / 64 + 8 && refused === undefined; i++) {
      try {
        filler.push(t.createFence(BigInt(i + 2)));
      } catch (e) {
        refused = e as DmaBufError;
      }
    }
    expect(refused?.code).toBe("ENOMEM");
    expect(heapFree(small)).toBe(0);

    const before = entries(resv);
    const refs = [a.refcount, b.refcount];
    const cursor = resv.iterUnlocked(DMA_RESV_USAGE_BOOKKEEP);
    const first = cursor.next();
    expect(first.done).toBe(false);
    expect(resv.withLock(() => dmaBufError(() => resv.reserveFences(64))).code).toBe("ENOMEM");
    expect(entries(resv)).toEqual(before);
    expect(resv.count).toBe(2);
    const second = cursor.next();
    expect(second.done || second.value.restarted, "the slot array was not replaced").toBe(false);
    for (const r of [first, second]) if (!r.done) r.value.fence.put();
    expect(cursor.next().done).toBe(true);
    expect(dmaBufError(() => resv.getSingleton(DMA_RESV_USAGE_BOOKKEEP)).code).toBe("ENOMEM");
    expect([a.refcount, b.refcount]).toEqual(refs);
    expect(heapFree(small)).toBe(0);

    // With room again, both work.
    filler.splice(0).forEach((f) => f.put());
    resv.withLock(() => resv.reserveFences(64));
    expect(entries(resv)).toEqual(before);
    const single = resv.getSingleton(DMA_RESV_USAGE_BOOKKEEP)!;
    expect(single.kind).toBe(FENCE_KIND_ARRAY);
    single.put();
    a.signal();
    b.signal();
    resv.put();
    a.put();
    b.put();
    t.unref();
    tb.unref();
    expect(heapFree(small)).toBe(pristine);
  });
});

// ---- get_singleton -------------------------------------------------------------

describe("getSingleton", () => {
  test("null, the one fence itself, or a new array of all of them", balanced(() => {
    const ts = [mockTimeline(), mockTimeline(), mockTimeline()];
    const [w, r, k] = ts.map((t) => t.createFence(1n));
    const resv = lab.sync.resv();
    expect(desc(resv.getSingleton(DMA_RESV_USAGE_BOOKKEEP)), "empty").toBeNull();
    addLocked(resv, r, DMA_RESV_USAGE_READ);
    expect(desc(resv.getSingleton(DMA_RESV_USAGE_WRITE)), "nothing visible at WRITE").toBeNull();
    const one = resv.getSingleton(DMA_RESV_USAGE_READ)!;
    expect(one.is(r)).toBe(true);
    expect(one.owned).toBe(true);
    expect(r.refcount).toBe(3);
    one.put();
    addLocked(resv, w, DMA_RESV_USAGE_WRITE);
    addLocked(resv, k, DMA_RESV_USAGE_KERNEL);
    const all = resv.getSingleton(DMA_RESV_USAGE_BOOKKEEP)!;
    expect(all instanceof FenceArray).toBe(true);
    const array = all as FenceArray;
    expect(array.children().map((c) => c.offset)).toEqual([r, w, k].map((f) => f.offset));
    expect(array.signalOnAny).toBe(false);
    expect(array.seqno).toBe(1n);
    expect(ts.some((t) => t.context === array.context)).toBe(false);
    expect([r, w, k].map((f) => f.refcount)).toEqual([3, 3, 3]);
    const two = resv.getSingleton(DMA_RESV_USAGE_WRITE)! as FenceArray;
    expect(two.children().map((c) => c.offset)).toEqual([w, k].map((f) => f.offset));
    expect(two.context).not.toBe(array.context);
    two.put();
    // Only pending fences count.
    r.signal();
    w.signal();
    const last = resv.getSingleton(DMA_RESV_USAGE_BOOKKEEP)!;
    expect(last.is(k)).toBe(true);
    last.put();
    expect(array.isSignaled()).toBe(false);
    k.signal();
    expect(array.isSignaled()).toBe(true);
    expect(desc(resv.getSingleton(DMA_RESV_USAGE_BOOKKEEP))).toBeNull();
    array.put();
    resv.put();
    [w, r, k].forEach((f) => f.put());
    ts.forEach((t) => t.unref());
  }));
});

// ---- waiting -------------------------------------------------------------------

describe("waiting by usage", () => {
  test("wait and waitAsync: time left when nothing visible is pending, 0 on timeout", balanced(async () => {
    const ts = [mockTimeline(), mockTimeline()];
    const [w, r] = ts.map((t) => t.createFence(1n));
    const resv = lab.sync.resv();
    addLocked(resv, w, DMA_RESV_USAGE_WRITE);
    addLocked(resv, r, DMA_RESV_USAGE_READ);
    expect(resv.wait(DMA_RESV_USAGE_KERNEL, 0)).toBe(1);
    expect(resv.wait(DMA_RESV_USAGE_KERNEL, 50)).toBeGreaterThan(0);
    expect(resv.wait(DMA_RESV_USAGE_KERNEL)).toBe(Infinity);
    expect(await resv.waitAsync(DMA_RESV_USAGE_KERNEL, 0)).toBe(1);
    expect(resv.wait(DMA_RESV_USAGE_WRITE, 0)).toBe(0);
    expect(resv.wait(DMA_RESV_USAGE_WRITE, 5)).toBe(0);
    expect(await resv.waitAsync(DMA_RESV_USAGE_WRITE, 5)).toBe(0);
    expect(await resv.waitAsync(DMA_RESV_USAGE_WRITE, 0)).toBe(0);
    w.signal();
    expect(resv.wait(DMA_RESV_USAGE_WRITE, 5)).toBeGreaterThan(0);
    expect(resv.wait(DMA_RESV_USAGE_READ, 5)).toBe(0);
    expect(await resv.waitAsync(DMA_RESV_USAGE_BOOKKEEP, 5)).toBe(0);
    const waiting = resv.waitAsync(DMA_RESV_USAGE_BOOKKEEP, WAIT_MS);
    setTimeout(() => r.signal(), 1);
    expect(await waiting).toBeGreaterThan(0);
    expect(resv.wait(DMA_RESV_USAGE_BOOKKEEP, 0)).toBe(1);
    expect(codeOf(() => resv.wait(DMA_RESV_USAGE_READ, -1))).toBe("EINVAL");
    resv.put();
    [w, r].forEach((f) => f.put());
    ts.forEach((t) => t.unref());
  }));

  test("a blocking wait is woken by a signal from another thread", balanced(async () => {
    const t = mockTimeline();
    const f = t.createFence(1n);
    const resv = lab.sync.resv();
    addLocked(resv, f, DMA_RESV_USAGE_WRITE);
    const box = startAgent("resv-signal", { mode: "signal", index: 0, resv: 0, fence: f.offset, steps: 0, contexts: 0 });
    await box.next("ready", WAIT_MS);
    expect(resv.wait(DMA_RESV_USAGE_READ, WAIT_MS), "time left (0: timed out)").toBeGreaterThan(0);
    await box.next("done", WAIT_MS);
    expect(f.isSignaled()).toBe(true);
    resv.put();
    f.put();
    t.unref();
  }));
});

// ---- the lock ------------------------------------------------------------------

describe("the lock", () => {
  test("lockStats counts acquisitions; lock is not recursive", balanced(() => {
    const resv = lab.sync.resv();
    expect(resv.lockStats()).toEqual({ acquisitions: 0, contended: 0, waitMs: 0 });
    resv.lock();
    resv.unlock();
    expect(resv.lockStats()).toEqual({ acquisitions: 1, contended: 0, waitMs: 0 });
    expect(resv.withLock(() => 7)).toBe(7);
    expect(resv.lockStats().acquisitions).toBe(2);
    resv.lock();
    expect(codeOf(() => resv.lock(5))).toBe("EDEADLK");
    resv.unlock();
    const s = resv.lockStats();
    expect(s.acquisitions).toBe(3);
    // Unlocked queries take it too.
    resv.testSignaled(DMA_RESV_USAGE_BOOKKEEP);
    expect(resv.lockStats().acquisitions).toBeGreaterThan(s.acquisitions);
    resv.put();
  }));

  test("a worker blocked on the held lock: its acquisition is counted as contended", balanced(async () => {
    const resv = lab.sync.resv();
    const state = (resv.mutex.offset + MUTEX_STATE) >>> 2;
    resv.lock();
    let held = true;
    try {
      const before = resv.lockStats();
      const box = startAgent("resv-lock-once", { mode: "lock-once", index: 0, resv: resv.offset, fence: 0, steps: 0, contexts: 0 });
      await box.next("ready", WAIT_MS);
      // Wait (bounded) until the worker has marked the lock contended, i.e. it is blocked on it.
      const deadline = Date.now() + WAIT_MS;
      while (Atomics.load(lab.arena.i32, state) !== 2 && Date.now() < deadline) await sleep(1);
      expect(Atomics.load(lab.arena.i32, state), "the worker blocks on the lock").toBe(2);
      expect(resv.count).toBe(0);
      resv.unlock();
      held = false;
      const report = await box.next<ResvAgentReport>("done", WAIT_MS);
      const after = resv.lockStats();
      expect(after.acquisitions - before.acquisitions).toBe(1);
      expect(after.contended - before.contended).toBe(1);
      expect(after.waitMs).toBeGreaterThan(before.waitMs);
      expect(entries(resv)).toEqual(report.last.map((e) => [e.fence, e.usage]));
      for (const e of resv.getFences(DMA_RESV_USAGE_BOOKKEEP)) {
        e.signal();
        e.put();
      }
    } finally {
      if (held) resv.unlock();
    }
    resv.put();
  }));

  test("two workers add fences to one object under its lock: a consistent list, every acquisition counted",
    balanced(async () => {
      const resv = lab.sync.resv();
      const before = resv.lockStats();
      const start = new Int32Array(new SharedArrayBuffer(4));
      const steps = 3000;
      const contexts = 16;
      const boxes = [0, 1].map((index) =>
        startAgent(`resv-add-${index}`, { mode: "add", index, resv: resv.offset, fence: 0, steps, contexts, start }));
      await releaseAll(boxes, start, WAIT_MS);
      const done = await reports<ResvAgentReport>(boxes, WAIT_MS);
      const after = resv.lockStats();

      for (const r of done) expect(r.problems, `worker ${r.index}`).toEqual([]);
      const acquisitions = done.reduce((n, r) => n + r.acquisitions, 0);
      expect(after.acquisitions - before.acquisitions).toBe(acquisitions);
      const contended = after.contended - before.contended;
      expect(contended).toBeGreaterThanOrEqual(0);
      expect(contended).toBeLessThanOrEqual(acquisitions);
      if (contended === 0) expect(after.waitMs).toBe(before.waitMs);

      // Exactly the last fence of each worker's contexts, each once, each held only by the object.
      const expected = done.flatMap((r) => r.last.map((e) => [e.fence, e.usage] as [number, number]));
      expect(expected.length).toBe(2 * contexts);
      const list = entries(resv);
      expect(resv.count).toBe(2 * contexts);
      const byOffset = (x: [number, number], y: [number, number]) => x[0] - y[0];
      expect([...list].sort(byOffset)).toEqual([...expected].sort(byOffset));
      for (const [offset] of list) expect(lab.sync.view(offset, false).refcount).toBe(1);
      // Each worker's entries keep the order of its first adds (round robin over its contexts).
      for (const r of done) {
        const mine = new Set(r.last.map((e) => e.fence));
        expect(list.filter(([o]) => mine.has(o)).map(([o]) => o)).toEqual(r.last.map((e) => e.fence));
      }
      for (const [offset] of list) lab.sync.view(offset, false).signal();
      // put() releases every fence (and with them the workers' timelines).
      resv.put();
    }));
});

// ---- references ----------------------------------------------------------------

describe("references", () => {
  test("put() of the last reference releases every fence: the sync heap is back where it was", async () => {
    const pristine = heapFree();
    const ts = [mockTimeline(), mockTimeline()];
    const resv = lab.sync.resv();
    const other = Resv.attach(lab.sync, resv.offset);
    const fences: Fence[] = [];
    for (let i = 0; i < 12; i++) {
      const f = ts[i % 2].createFence(BigInt(i + 1));
      fences.push(f);
      addLocked(resv, f, USAGES[i % 4]);
      if (i % 5 === 4) f.signal();
    }
    const held = entries(resv).map(([o]) => o);
    fences.forEach((f) => f.put());
    ts.forEach((t) => t.unref());
    expect(heapFree()).toBeLessThan(pristine);
    for (const o of held) expect(lab.sync.view(o, false).refcount).toBe(1);
    resv.put();
    expect(heapFree(), "another view still holds the object").toBeLessThan(pristine);
    expect(codeOf(() => resv.put())).toBe("EINVAL");
    expect(other.count).toBe(held.length);
    for (const o of held) lab.sync.view(o, false).checkAndSignal();
    other.put();
    expect(heapFree()).toBe(pristine);
  });
});

/*
 * dma-fence-unwrap and dma_fence_unwrap_merge: the kernel's KUnit suite
 * (drivers/dma-buf/st-dma-fence-unwrap.c) by name, with its inputs and
 * expectations, then the merge rules it does not cover (signalled inputs,
 * a single survivor, 32-bit seqno wrap-around) and the semantics of
 * dma_fence_array (status, signal-on-any, timestamps, names).
 *
 * Kernel -> here: mock_fence() is a fence of seqno 1 on a fresh "mock"
 * timeline (a fresh context, so mocks made earlier have smaller contexts);
 * mock_array/mock_chain take new references here instead of consuming the
 * caller's, so every test puts what it made. Every test ends by checking
 * that the sync heap is back to where it started: nothing leaked.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Lab, type Fence } from "../src/index.js";
import { FENCE_KIND_ARRAY, FENCE_KIND_PLAIN, FENCE_KIND_STUB } from "../src/engine/abi.js";
import { FenceArray } from "../src/sync/fence_array.js";
import { unwrap } from "../src/sync/fence_unwrap.js";
import type { Timeline } from "../src/sync/timeline.js";
import { codeOf } from "./helpers/errors.js";
import { heapBalanced } from "./helpers/lab.js";
import { clockPast } from "./helpers/waits.js";

const MiB = 1024 * 1024;

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create({ memoryBytes: 32 * MiB });
});
afterAll(() => lab?.close());

/** A "mock" timeline: a fresh context. The caller unrefs it. */
const mockTimeline = (): Timeline => lab.sync.timeline({ driver: "mock", name: "mock" });

/** The kernel's mock_fence(): seqno 1 on a fresh context. */
function mock(seqno = 1n): Fence {
  const t = mockTimeline();
  try {
    return t.createFence(seqno);
  } finally {
    t.unref();
  }
}

/** Runs a test body and checks that every record it made was released. */
const balanced = heapBalanced(() => lab);

const putAll = (...fences: Fence[]): void => fences.forEach((f) => f.put());

/** Offsets, to compare records (views are new objects). */
const ids = (fences: Fence[]): number[] => fences.map((f) => f.offset);

/** The kernel's check: every fence seen is one of `expected`, each exactly once, none missing. */
function expectExactly(seen: Fence[], expected: Fence[]): void {
  expect(new Set(ids(seen)).size, "no fence seen twice").toBe(seen.length);
  expect([...ids(seen)].sort((a, b) => a - b)).toEqual([...ids(expected)].sort((a, b) => a - b));
}


describe("KUnit dma-fence-unwrap", () => {
  test("sanitycheck", balanced(() => {
    const f = mock();
    const a = lab.sync.array([f]);
    const c = lab.sync.chain(null, a, 1n);
    expect(ids(unwrap(c))).toEqual([f.offset]);
    f.signal();
    putAll(c, a, f);
  }));

  test("unwrap_array", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const a = lab.sync.array([f1, f2]);
    expectExactly(unwrap(a), [f1, f2]);
    f1.signal();
    f2.signal();
    putAll(a, f1, f2);
  }));

  test("unwrap_chain", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const c = lab.sync.chain(f1, f2, 1n);
    const seen = unwrap(c);
    expectExactly(seen, [f1, f2]);
    // The head's fence first, then the plain fence it was linked after.
    expect(ids(seen)).toEqual(ids([f2, f1]));
    f1.signal();
    f2.signal();
    putAll(c, f1, f2);
  }));

  test("unwrap_chain_array", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const a = lab.sync.array([f1, f2]);
    const c = lab.sync.chain(null, a, 1n);
    expectExactly(unwrap(c), [f1, f2]);
    f1.signal();
    f2.signal();
    putAll(c, a, f1, f2);
  }));

  test("unwrap_merge", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const f3 = lab.sync.merge(f1, f2);
        expectExactly(unwrap(f3), [f1, f2]);
    expect(f3 instanceof FenceArray).toBe(true);
    expect(ids((f3 as FenceArray).children())).toEqual(ids([f1, f2]));
    f1.signal();
    f2.signal();
    putAll(f3, f1, f2);
  }));

  test("unwrap_merge_duplicate", balanced(() => {
    const f1 = mock();
    const f2 = lab.sync.merge(f1, f1);
    expectExactly(unwrap(f2), [f1]);
    expect(f2.is(f1), "merge(f1, f1) is f1 itself").toBe(true);
    expect(f1.refcount).toBe(2);
    f1.signal();
    putAll(f2, f1);
  }));

  test("unwrap_merge_seqno", balanced(() => {
    const t0 = mockTimeline();
    const t1 = mockTimeline();
    expect(t0.context < t1.context).toBe(true);
    const f1 = t1.createFence(1n);
    const f2 = t1.createFence(2n);
    const f3 = t0.createFence(1n);
    const f4 = lab.sync.merge(f1, f2, f3);
    // Enforced order: f3 (context 0) first, then f2; f1 (older on context 1) dropped.
    expect(ids(unwrap(f4))).toEqual(ids([f3, f2]));
    putAll(f4);
    for (const f of [f1, f2, f3]) f.signal();
    putAll(f1, f2, f3);
    t0.unref();
    t1.unref();
  }));

  test("unwrap_merge_order", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const a1 = lab.sync.array([f1, f2]);
    const c1 = lab.sync.chain(null, f1, 1n);
    const c2 = lab.sync.chain(c1, f2, 1n);
    // seqno 1 is not later than c1's 1: c2 has a new context.
    expect(c2.context).not.toBe(c1.context);
    expect(ids(unwrap(c2))).toEqual(ids([f2, f1]));
    const a2 = lab.sync.merge(a1, c2);
    const seen = unwrap(a2);
    expectExactly(seen, [f1, f2]);
    // The kernel only logs an unexpected order; the sort by context makes it f1, f2 here.
    expect(ids(seen)).toEqual(ids([f1, f2]));
    f1.signal();
    f2.signal();
    putAll(a2, c2, c1, a1, f1, f2);
  }));

  test("unwrap_merge_complex", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const f3 = lab.sync.merge(f1, f2);
    const f4 = lab.sync.array([f2, f1]);
    const stub = lab.sync.stub();
    const f5 = lab.sync.merge(f3, f4, stub);
    // The stub is signalled (filtered); duplicates are removed.
    expectExactly(unwrap(f5), [f1, f2]);
    expect(ids(unwrap(f5))).toEqual(ids([f1, f2]));
    f1.signal();
    f2.signal();
    putAll(f5, stub, f4, f3, f1, f2);
  }));

  test("unwrap_merge_complex_seqno", balanced(() => {
    const t0 = mockTimeline();
    const t1 = mockTimeline();
    expect(t0.context < t1.context).toBe(true);
    const f1 = t0.createFence(2n);
    const f2 = t1.createFence(1n);
    const f3 = t0.createFence(1n);
    const f4 = t1.createFence(2n);
    const f5 = lab.sync.array([f1, f2]);
    const f6 = lab.sync.array([f3, f4]);
    const f7 = lab.sync.merge(f5, f6);
    // Enforced order: f1 (latest of context 0), then f4 (latest of context 1).
    expect(ids(unwrap(f7))).toEqual(ids([f1, f4]));
    for (const f of [f1, f2, f3, f4]) f.signal();
    putAll(f7, f6, f5, f1, f2, f3, f4);
    t0.unref();
    t1.unref();
  }));
});

describe("unwrap iteration", () => {
  test("a plain fence is itself; an array gives every child, signalled ones included", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    expect(ids(unwrap(f1))).toEqual([f1.offset]);
    const a = lab.sync.array([f1, f2]);
    f1.signal();
    expect(ids(unwrap(a))).toEqual(ids([f1, f2]));
    f2.signal();
    expect(ids(unwrap(a))).toEqual(ids([f1, f2]));
    putAll(a, f1, f2);
  }));

  test("a chain gives its own fence, then only the earlier ones still pending", balanced(() => {
    const fences = [1n, 2n, 3n, 4n].map((s) => mock(s));
    let prev: Fence | null = null;
    const nodes: Fence[] = [];
    for (const [i, f] of fences.entries()) {
      const node: Fence = lab.sync.chain(prev, f, BigInt(i + 1));
      nodes.push(node);
      prev = node;
    }
    const tail = nodes[3];
    expect(ids(unwrap(tail))).toEqual(ids([fences[3], fences[2], fences[1], fences[0]]));
    fences[1].signal();
    expect(ids(unwrap(tail))).toEqual(ids([fences[3], fences[2], fences[0]]));
    fences[3].signal();
    // The head's own fence is given even when signalled.
    expect(ids(unwrap(tail))).toEqual(ids([fences[3], fences[2], fences[0]]));
    fences[0].signal();
    fences[2].signal();
    expect(ids(unwrap(tail))).toEqual(ids([fences[3]]));
    putAll(...nodes.reverse(), ...fences);
  }));
});

describe("merge rules", () => {
  test("only signalled fences: a new private stub, signalled at the latest input timestamp", balanced(async () => {
    const f1 = mock();
    const f2 = mock();
    const f3 = mock();
    const a = lab.sync.array([f2, f3]);
    f2.signal();
    await clockPast(lab, f2.timestampNs);
    f3.signal(-5);
    await clockPast(lab, f3.timestampNs);
    f1.signal();
    const latest = Math.max(f1.timestampNs, f2.timestampNs, f3.timestampNs);
    expect(latest).toBe(f1.timestampNs);

    const global = lab.sync.stub();
    const s1 = lab.sync.merge(a, f1);
    const s2 = lab.sync.merge(f3, a);
    for (const s of [s1, s2]) {
      expect(s.kind).toBe(FENCE_KIND_STUB);
      expect(s.isSignaled()).toBe(true);
      expect(s.status).toBe(1);
      expect(s.context).toBe(0n);
      expect(s.seqno).toBe(0n);
      expect(s.names).toEqual({ driver: "stub", timeline: "stub" });
      expect(s.is(global), "a private stub, not the lab's stub").toBe(false);
      expect(s.refcount).toBe(1);
    }
    expect(s1.is(s2), "each merge makes a new stub").toBe(false);
    expect(s1.timestampNs).toBe(latest);
    expect(s2.timestampNs).toBe(Math.max(f2.timestampNs, f3.timestampNs));
    putAll(s1, s2, global, a, f1, f2, f3);
  }));

  test("nothing at all to merge: a private stub", balanced(() => {
    const s = lab.sync.merge();
    expect(s.kind).toBe(FENCE_KIND_STUB);
    expect(s.isSignaled()).toBe(true);
    s.put();
  }));

  test("a single survivor is returned unwrapped: the same record, a new reference", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const f3 = mock();
    const a = lab.sync.array([f1, f2]);
    const c = lab.sync.chain(null, f3, 1n);
    f2.signal();
    f3.signal();
    const before = f1.refcount;
    const m = lab.sync.merge(a, c);
    expect(m.is(f1)).toBe(true);
    expect(m.kind).toBe(FENCE_KIND_PLAIN);
    expect(m.owned).toBe(true);
    expect(f1.refcount).toBe(before + 1);
    m.put();
    expect(f1.refcount).toBe(before);
    // Two fences of one context: one survivor after dedup, also unwrapped.
    const t = mockTimeline();
    const g1 = t.createFence(3n);
    const g2 = t.createFence(4n);
    const stub = lab.sync.stub();
    const m2 = lab.sync.merge(g1, stub, g2);
    expect(m2.is(g2)).toBe(true);
    expect(m2.kind).toBe(FENCE_KIND_PLAIN);
    f1.signal();
    g1.signal();
    g2.signal();
    putAll(m2, stub, c, a, f1, f2, f3, g1, g2);
    t.unref();
  }));

  test("seqnos compare as 32-bit with wrap-around: 1 is later than 0xffffffff", balanced(() => {
    const t = mockTimeline();
    const old = t.createFence(0xffffffffn);
    const wrapped = t.createFence(1n);
    const other = mock();
    for (const inputs of [[old, wrapped], [wrapped, old]]) {
      const m = lab.sync.merge(...inputs);
      expect(m.is(wrapped)).toBe(true);
      m.put();
    }
    const m = lab.sync.merge(old, other, wrapped);
    expect(m.kind).toBe(FENCE_KIND_ARRAY);
    // Sorted by context: the timeline's context is older than other's.
    expect(ids(unwrap(m))).toEqual(ids([wrapped, other]));
    // Without wrap-around the larger seqno is the later one.
    const s5 = t.createFence(5n);
    const s3 = t.createFence(3n);
    const m5 = lab.sync.merge(s3, s5);
    expect(m5.is(s5)).toBe(true);
    for (const f of [old, wrapped, other, s5, s3]) f.signal();
    putAll(m, m5, old, wrapped, other, s5, s3);
    t.unref();
  }));

  test("merge does not consume its inputs and drops containers' references with the result", balanced(() => {
    const f1 = mock();
    const f2 = mock();
    const a = lab.sync.array([f1, f2]);
    expect([f1.refcount, f2.refcount, a.refcount]).toEqual([2, 2, 1]);
    const m = lab.sync.merge(a, f1);
    expect([f1.refcount, f2.refcount, a.refcount]).toEqual([3, 3, 1]);
    m.put();
    expect([f1.refcount, f2.refcount, a.refcount]).toEqual([2, 2, 1]);
    f1.signal();
    f2.signal();
    putAll(a, f1, f2);
  }));
});

describe("dma_fence_array", () => {
  test("status: pending while any child is; then the first error in array order, else 1", balanced(() => {
    const [f1, f2, f3] = [mock(), mock(), mock()];
    const a = lab.sync.array([f1, f2, f3]);
    expect(a.signalOnAny).toBe(false);
    expect(a.status).toBe(0);
    f3.signal(-5);
    expect(a.status).toBe(0);
    f2.signal(-2);
    expect(a.status).toBe(0);
    expect(a.isSignaled()).toBe(false);
    f1.signal();
    expect(a.status).toBe(-2);
    expect(a.isSignaled()).toBe(true);

    const [g1, g2] = [mock(), mock()];
    const ok = lab.sync.array([g1, g2]);
    g2.signal();
    g1.signal();
    expect(ok.status).toBe(1);
    putAll(a, ok, f1, f2, f3, g1, g2);
  }));

  test("signal-on-any: signalled with its first child, whose status it takes", balanced(async () => {
    const [f1, f2, f3] = [mock(), mock(), mock()];
    const a = lab.sync.array([f1, f2, f3], true);
    expect(a.signalOnAny).toBe(true);
    expect(a.status).toBe(0);
    expect(a.timestampNs).toBe(0);
    expect(a.wait(0)).toBe(0);
    f2.signal(-5);
    expect(a.status).toBe(-5);
    expect(a.isSignaled()).toBe(true);
    expect(a.timestampNs).toBe(f2.timestampNs);
    expect(a.wait(0)).toBe(1);
    await clockPast(lab, f2.timestampNs);
    f1.signal();
    expect(a.status).toBe(-5);
    expect(a.timestampNs).toBe(f2.timestampNs);
    f3.signal();
    putAll(a, f1, f2, f3);
  }));

  test("timestamps: 0 while pending, then the last child's signal time", balanced(async () => {
    const [f1, f2] = [mock(), mock()];
    const a = lab.sync.array([f1, f2]);
    expect(a.timestampNs).toBe(0);
    f2.signal();
    expect(a.timestampNs).toBe(0);
    await clockPast(lab, f2.timestampNs);
    f1.signal();
    expect(f1.timestampNs).toBeGreaterThan(f2.timestampNs);
    expect(a.timestampNs).toBe(f1.timestampNs);
    putAll(a, f1, f2);
  }));

  test("names, context and seqno; children are held; containers and nothing are refused", balanced(() => {
    const [f1, f2] = [mock(), mock()];
    const a = lab.sync.array([f1, f2]);
    const b = lab.sync.array([f1]);
    expect(a.names).toEqual({ driver: "dma_fence_array", timeline: "unbound" });
    expect(a.seqno).toBe(1n);
    expect(b.context).not.toBe(a.context);
    expect(a.context).not.toBe(f1.context);
    expect([f1.refcount, f2.refcount]).toEqual([3, 2]);
    expect(codeOf(() => lab.sync.array([]))).toBe("EINVAL");
    expect(codeOf(() => lab.sync.array([f1, a]))).toBe("EINVAL");
    const c = lab.sync.chain(null, f2, 1n);
    expect(codeOf(() => lab.sync.array([c]))).toBe("EINVAL");
    expect(codeOf(() => a.signal())).toBe("EINVAL");
    expect([f1.refcount, f2.refcount]).toEqual([3, 3]);
    putAll(c, b, a);
    expect([f1.refcount, f2.refcount]).toEqual([1, 1]);
    f1.signal();
    f2.signal();
    putAll(f1, f2);
  }));

  test("waitAsync on an array resolves when its last child signals", balanced(async () => {
    const [f1, f2] = [mock(), mock()];
    const a = lab.sync.array([f1, f2]);
    expect(await a.waitAsync(0)).toBe(0);
    f1.signal();
    const waiting = a.waitAsync(20_000);
    setTimeout(() => f2.signal(), 1);
    expect(await waiting).toBeGreaterThan(0);
    expect(a.status).toBe(1);
    putAll(a, f1, f2);
  }));
});

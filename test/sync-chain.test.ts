/*
 * dma-fence-chain: the kernel's KUnit suite (drivers/dma-buf/st-dma-fence-chain.c)
 * by name, with its inputs and expectations, then the init rules, timestamps
 * and names.
 *
 * Kernel -> here: a mock fence is a fence on one "mock" timeline (the
 * kernel's mocks all share context 0); fence_chains_init builds the nodes
 * with lab.sync.chain(), which takes new references (the test puts its own
 * in fence_chains_fini). Chains here are evaluated from their fences and are
 * never pruned: walk() skips signalled nodes, which must give the kernel's
 * answers. The kthreads of find_race and the wait tests are real worker
 * threads (test/workers/chain-race.ts, chain-wait.ts); find_race runs for
 * 1 s instead of 5, and every wait has a timeout. Workers are terminated in
 * afterEach whatever the outcome. Every test checks that the sync heap is
 * back where it started once everything is put.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Lab, type Fence } from "../src/index.js";
import { FenceChain } from "../src/sync/fence_chain.js";
import type { Timeline } from "../src/sync/timeline.js";
import { codeOf } from "./helpers/errors.js";
import { cleanUpAfterEach, heapBalanced } from "./helpers/lab.js";
import { shuffle, withSeed } from "./helpers/prng.js";
import { clockPast, sleep } from "./helpers/waits.js";
import { releaseAll, reports, WorkerSet } from "./helpers/workers.js";
import type { ChainRaceData, ChainRaceReport } from "./workers/chain-race.js";
import type { ChainWaitData, ChainWaitReport } from "./workers/chain-wait.js";

const MiB = 1024 * 1024;
const CHAIN_SZ = 4 << 10;
const WAIT_MS = 20_000;
const RACE_MS = 1_000;

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create({ memoryBytes: 32 * MiB });
});
afterAll(() => lab?.close());

/** Workers are terminated in afterEach, and by a test itself before it frees the records they use. */
const workers = new WorkerSet();
cleanUpAfterEach({ workers });

const heapFree = (): number => lab.stats().sync.freeBytes;
const balanced = heapBalanced(() => lab);

const mockTimeline = (): Timeline => lab.sync.timeline({ driver: "mock", name: "mock" });

/** A fence as text for assertions (printing a view would dump the whole arena). */
const desc = (f: Fence | null | undefined): string | null => (f ? f.describe() : null);

interface FenceChains {
  timeline: Timeline;
  fences: Fence[];
  chains: FenceChain[];
  tail: FenceChain;
}

const seqnoInc = (i: number): bigint => BigInt(i + 1);
const seqnoInc2 = (i: number): bigint => BigInt(2 * i + 2);

/** The kernel's fence_chains_init: fences[i] in chains[i] of seqno seqnoFn(i), each after the last. */
function fenceChainsInit(count: number, seqnoFn: (i: number) => bigint): FenceChains {
  const timeline = mockTimeline();
  const fences: Fence[] = [];
  const chains: FenceChain[] = [];
  let tail: FenceChain | null = null;
  for (let i = 0; i < count; i++) {
    fences.push(timeline.createFence(0n));
    tail = lab.sync.chain(tail, fences[i], seqnoFn(i));
    chains.push(tail);
  }
  return { timeline, fences, chains, tail: tail! };
}

/** fence_chains_fini: signal and put every fence in array order, then put every node. */
function fenceChainsFini(fc: FenceChains): void {
  for (const f of fc.fences) {
    f.checkAndSignal();
    f.put();
  }
  for (const c of fc.chains) c.put();
  fc.timeline.unref();
}

/** fenceChainsInit, then body, then fenceChainsFini whatever body did. */
async function withFenceChains(count: number, seqnoFn: (i: number) => bigint, body: (fc: FenceChains) => void | Promise<void>): Promise<void> {
  const fc = fenceChainsInit(count, seqnoFn);
  try {
    await body(fc);
  } finally {
    fenceChainsFini(fc);
  }
}

describe("KUnit dma-fence-chain", () => {
  test("sanitycheck", balanced(() => {
    const t = mockTimeline();
    const f = t.createFence(0n);
    const chain = lab.sync.chain(null, f, 1n);
    expect(chain.isSignaled()).toBe(false);
    f.signal();
    expect(chain.isSignaled()).toBe(true);
    f.put();
    chain.put();
    t.unref();
  }));

  test("find_seqno", balanced(() => withFenceChains(64, seqnoInc, (fc) => {
    const tail = fc.tail;
    const same = FenceChain.findSeqno(tail, 0n);
    expect(same !== null && same.is(tail), "find_seqno(0) is a no-op: the same node").toBe(true);
    expect(same!.owned, "and, like every find_seqno result, a borrowed view").toBe(false);
    for (let i = 0; i < 64; i++) {
      const s = BigInt(i + 1);
      expect(FenceChain.findSeqno(tail, s)?.is(fc.chains[i]), `find_seqno(tail, ${s})`).toBe(true);
      expect(FenceChain.findSeqno(fc.chains[i], s)?.is(fc.chains[i]), `find-self ${s}`).toBe(true);
      expect(codeOf(() => FenceChain.findSeqno(fc.chains[i], s + 1n)), `future point ${s + 1n}`).toBe("EINVAL");
      if (i > 0) {
        expect(FenceChain.findSeqno(fc.chains[i], s - 1n)?.is(fc.chains[i - 1]), `find_seqno(chains[${i}], ${s - 1n})`).toBe(true);
      } else {
        expect(FenceChain.findSeqno(fc.chains[i], 0n)?.is(fc.chains[i])).toBe(true);
      }
    }
    // A plain fence is not a chain: EINVAL.
    expect(codeOf(() => FenceChain.findSeqno(fc.fences[0], 1n))).toBe("EINVAL");
  })));

  test("find_signaled", balanced(() => withFenceChains(2, seqnoInc, (fc) => {
    fc.fences[0].signal();
    const f = FenceChain.findSeqno(fc.tail, 1n);
    expect(f === null || f.is(fc.chains[0]), "NULL or chains[0]").toBe(true);
    // The kernel's answer: NULL (node 0 is signalled and collected).
    expect(desc(f)).toBeNull();
  })));

  test("find_out_of_order", balanced(() => withFenceChains(3, seqnoInc, (fc) => {
    fc.fences[1].signal();
    const f = FenceChain.findSeqno(fc.tail, 2n);
    expect(f?.is(fc.chains[0]), "point 2 waits on node 0, the first pending one before it").toBe(true);
  })));

  test("find_gap", balanced(() => withFenceChains(64, seqnoInc2, (fc) => {
    for (let i = 0; i < 64; i++) {
      expect(FenceChain.findSeqno(fc.tail, BigInt(2 * i + 1))?.is(fc.chains[i]), `point ${2 * i + 1}`).toBe(true);
      expect(FenceChain.findSeqno(fc.chains[i], BigInt(2 * i + 2))?.is(fc.chains[i]), `point ${2 * i + 2}`).toBe(true);
    }
  })));

  test("find_race", balanced(async () => {
    const fc = fenceChainsInit(CHAIN_SZ, seqnoInc);
    const stop = new Int32Array(new SharedArrayBuffer(4));
    try {
      await withSeed(async (rng) => {
        const start = new Int32Array(new SharedArrayBuffer(4));
        const boxes = [0, 1].map((index) => {
          const data: ChainRaceData = {
            handle: lab.share(), index, seed: rng.int(0, 0xffffffff), tail: fc.tail.offset,
            fences: fc.fences.map((f) => f.offset), start, stop, timeoutMs: WAIT_MS,
          };
          return workers.start("chain-race", `chain-race-${index}`, data);
        });
        await releaseAll(boxes, start, WAIT_MS);
        await sleep(RACE_MS);
        Atomics.store(stop, 0, 1);
        const done = await reports<ChainRaceReport>(boxes, WAIT_MS);

        for (const r of done) {
          expect(r.problems, `worker ${r.index}`).toEqual([]);
          expect(r.iterations, `worker ${r.index} iterations`).toBeGreaterThan(0);
        }
        // One-shot signalling across threads: each signalled fence had exactly one winner.
        const signalled = fc.fences.filter((f) => f.isSignaled()).length;
        expect(done.reduce((n, r) => n + r.signalled, 0)).toBe(signalled);
        // The last fence is never signalled by the threads, so the tail is pending.
        expect(fc.fences[CHAIN_SZ - 1].isSignaled()).toBe(false);
        expect(fc.tail.isSignaled()).toBe(false);
        // Every node signals exactly when all fences up to it are.
        const firstPending = fc.fences.findIndex((f) => !f.isSignaled());
        for (let i = 0; i < CHAIN_SZ; i += 97) expect(fc.chains[i].isSignaled(), `chains[${i}]`).toBe(i < firstPending);
      });
    } finally {
      // Whatever happened, no worker touches the chain once it is freed.
      Atomics.store(stop, 0, 1);
      await workers.terminateAll();
      fenceChainsFini(fc);
    }
  }));

  test("signal_forward", balanced(() => withFenceChains(64, seqnoInc, (fc) => {
    for (let i = 0; i < 64; i++) {
      fc.fences[i].signal();
      expect(fc.chains[i].isSignaled(), `chains[${i}]`).toBe(true);
      if (i + 1 < 64) expect(fc.chains[i + 1].isSignaled(), `chains[${i + 1}]`).toBe(false);
    }
  })));

  test("signal_backward", balanced(() => withFenceChains(64, seqnoInc, (fc) => {
    for (let i = 63; i >= 0; i--) {
      fc.fences[i].signal();
      if (i > 0) expect(fc.chains[i].isSignaled(), `chains[${i}]`).toBe(false);
    }
    for (let i = 0; i < 64; i++) expect(fc.chains[i].isSignaled(), `chains[${i}]`).toBe(true);
  })));

  /** wait_forward / wait_backward / wait_random: a worker waits on the tail while this thread signals. */
  async function waitTest(order: (fences: Fence[]) => Fence[]): Promise<void> {
    const fc = fenceChainsInit(CHAIN_SZ, seqnoInc);
    try {
      const data: ChainWaitData = { handle: lab.share(), fence: fc.tail.offset, timeoutMs: WAIT_MS };
      const box = workers.start("chain-wait", "chain-wait", data);
      await box.next("ready", WAIT_MS);
      for (const f of order(fc.fences)) f.signal();
      const report = await box.next<ChainWaitReport>("done", WAIT_MS + 5_000);
      expect(report.left, "the waiter's time left (0: it timed out)").toBeGreaterThan(0);
      expect(report.status).toBe(1);
      expect(fc.tail.isSignaled()).toBe(true);
    } finally {
      await workers.terminateAll();
      fenceChainsFini(fc);
    }
  }

  test("wait_forward", balanced(() => waitTest((fences) => fences)));

  test("wait_backward", balanced(() => waitTest((fences) => [...fences].reverse())));

  // The kernel's randomise_fences: Fisher-Yates over the fences array.
  test("wait_random", balanced(() => withSeed((rng) => waitTest((fences) => shuffle(rng, fences)))));
});

describe("chain init", () => {
  test("a later seqno after a chain node shares its context and records prev_seqno", balanced(() => withFenceChains(64, seqnoInc, (fc) => {
    const ctx = fc.chains[0].context;
    expect(desc(fc.chains[0].prev)).toBeNull();
    expect(fc.chains[0].prevSeqno).toBe(0n);
    for (let i = 0; i < 64; i++) {
      expect(fc.chains[i].context).toBe(ctx);
      expect(fc.chains[i].seqno).toBe(BigInt(i + 1));
      expect(fc.chains[i].prevSeqno).toBe(BigInt(i));
      expect(fc.chains[i].fence.is(fc.fences[i])).toBe(true);
      if (i > 0) expect(fc.chains[i].prev?.is(fc.chains[i - 1])).toBe(true);
    }
    // The contained fence's context plays no part.
    expect(ctx).not.toBe(fc.timeline.context);
  })));

  test("a seqno not later than the previous node's: a new context, the seqno never goes below prev", balanced(() => {
    const t = mockTimeline();
    const f = t.createFence(0n);
    const c5 = lab.sync.chain(null, f, 5n);
    const same = lab.sync.chain(c5, f, 5n);
    const lower = lab.sync.chain(c5, f, 2n);
    const later = lab.sync.chain(c5, f, 6n);
    const contexts = new Set([c5.context, same.context, lower.context]);
    expect(contexts.size, "same and lower take new contexts").toBe(3);
    expect([same.seqno, same.prevSeqno]).toEqual([5n, 0n]);
    expect([lower.seqno, lower.prevSeqno]).toEqual([5n, 0n]);
    expect([later.context, later.seqno, later.prevSeqno]).toEqual([c5.context, 6n, 5n]);
    for (const c of [same, lower, later]) expect(c.prev?.is(c5)).toBe(true);
    // After a plain fence (or nothing): a new context, the seqno as given.
    const g = t.createFence(9n);
    const afterPlain = lab.sync.chain(g, f, 3n);
    expect([afterPlain.seqno, afterPlain.prevSeqno]).toEqual([3n, 0n]);
    expect(afterPlain.context).not.toBe(g.context);
    expect(contexts.has(afterPlain.context)).toBe(false);
    expect(afterPlain.prev?.is(g)).toBe(true);
    f.signal();
    g.signal();
    for (const x of [afterPlain, later, lower, same, c5, g, f]) x.put();
    t.unref();
  }));

  test("chain seqnos compare as 64-bit numbers", balanced(() => {
    const t = mockTimeline();
    const f = t.createFence(0n);
    const big = lab.sync.chain(null, f, 0xffffffffn);
    const next = lab.sync.chain(big, f, 0x100000000n);
    expect([next.context, next.prevSeqno]).toEqual([big.context, 0xffffffffn]);
    const high = lab.sync.chain(null, f, 0x100000001n);
    // 2 is later than 0x1_0000_0001 in 32 bits, not in 64.
    const low = lab.sync.chain(high, f, 2n);
    expect(low.context).not.toBe(high.context);
    expect([low.seqno, low.prevSeqno]).toEqual([0x100000001n, 0n]);
    f.signal();
    for (const x of [next, big, low, high, f]) x.put();
    t.unref();
  }));

  test("a chain as the contained fence is refused, nothing taken", balanced(() => {
    const t = mockTimeline();
    const f = t.createFence(0n);
    const c = lab.sync.chain(null, f, 1n);
    const before = [f.refcount, c.refcount];
    const free = heapFree();
    expect(codeOf(() => lab.sync.chain(c, c, 2n))).toBe("EINVAL");
    expect(codeOf(() => lab.sync.chain(null, c, 2n))).toBe("EINVAL");
    expect([f.refcount, c.refcount]).toEqual(before);
    expect(heapFree()).toBe(free);
    // An array may be contained.
    const a = lab.sync.array([f]);
    const ca = lab.sync.chain(c, a, 2n);
    expect(ca.isSignaled()).toBe(false);
    f.signal();
    expect(ca.isSignaled()).toBe(true);
    for (const x of [ca, a, c, f]) x.put();
    t.unref();
  }));

  test("a node holds its previous node and fence until it is put; a long chain is released without recursion", balanced(() => {
    const fc = fenceChainsInit(CHAIN_SZ, seqnoInc);
    expect(fc.fences[0].refcount).toBe(2);
    expect(fc.chains[0].refcount).toBe(2);
    expect(fc.tail.refcount).toBe(1);
    fenceChainsFini(fc);
  }));
});

describe("chain state", () => {
  test("timestamps: 0 while pending, then the latest of the node's fences and every earlier one's",
    balanced(() => withFenceChains(3, seqnoInc, async (fc) => {
      const [f0, f1, f2] = fc.fences;
      f2.signal();
      expect(fc.chains.map((c) => c.timestampNs)).toEqual([0, 0, 0]);
      await clockPast(lab, f2.timestampNs);
      f0.signal();
      expect(fc.chains[0].timestampNs).toBe(f0.timestampNs);
      expect(fc.chains[2].timestampNs).toBe(0);
      await clockPast(lab, f0.timestampNs);
      f1.signal();
      expect(fc.chains[0].timestampNs).toBe(f0.timestampNs);
      expect(fc.chains[1].timestampNs).toBe(f1.timestampNs);
      expect(fc.chains[2].timestampNs).toBe(f1.timestampNs);
      expect(f1.timestampNs).toBeGreaterThan(f2.timestampNs);
    })));

  test("a chain carries no error of its own: status 1 once all its fences are signalled", balanced(() => withFenceChains(2, seqnoInc, (fc) => {
    fc.fences[0].signal(-5);
    expect(fc.fences[0].status).toBe(-5);
    expect(fc.chains[0].status).toBe(1);
    expect(fc.chains[1].status).toBe(0);
    fc.fences[1].signal();
    expect(fc.chains[1].status).toBe(1);
    expect(codeOf(() => fc.chains[1].signal())).toBe("EINVAL");
  })));

  test("names are dma_fence_chain / unbound", balanced(() => {
    const fc = fenceChainsInit(1, seqnoInc);
    expect(fc.tail.names).toEqual({ driver: "dma_fence_chain", timeline: "unbound" });
    expect(fc.fences[0].names).toEqual({ driver: "mock", timeline: "mock" });
    fenceChainsFini(fc);
  }));

  test("walk skips signalled nodes; a chain after a plain fence ends at it", balanced(() => {
    const fc = fenceChainsInit(4, seqnoInc);
    const t = mockTimeline();
    const plain = t.createFence(0n);
    const f = t.createFence(0n);
    const afterPlain = lab.sync.chain(plain, f, 1n);
    try {
      expect(fc.tail.walk()?.is(fc.chains[2])).toBe(true);
      fc.fences[2].signal();
      fc.fences[1].signal();
      expect(fc.tail.walk()?.is(fc.chains[0])).toBe(true);
      fc.fences[0].signal();
      expect(desc(fc.tail.walk())).toBeNull();
      expect(afterPlain.walk()?.is(plain)).toBe(true);
      plain.signal();
      expect(desc(afterPlain.walk())).toBeNull();
      expect(afterPlain.isSignaled()).toBe(false);
      f.signal();
      expect(afterPlain.isSignaled()).toBe(true);
    } finally {
      for (const x of [afterPlain, plain, f]) x.put();
      t.unref();
      fenceChainsFini(fc);
    }
  }));

  test("wait and waitAsync on a node: time out while pending, return once every fence up to it is signalled",
    balanced(() => withFenceChains(3, seqnoInc, async (fc) => {
      expect(fc.tail.wait(0)).toBe(0);
      expect(fc.tail.wait(5)).toBe(0);
      expect(await fc.tail.waitAsync(5)).toBe(0);
      fc.fences[2].signal();
      fc.fences[0].signal();
      expect(fc.chains[0].wait(0)).toBe(1);
      expect(await fc.tail.waitAsync(0)).toBe(0);
      const waiting = fc.tail.waitAsync(WAIT_MS);
      setTimeout(() => fc.fences[1].signal(), 1);
      expect(await waiting).toBeGreaterThan(0);
      expect(fc.tail.wait(0)).toBe(1);
    })));
});

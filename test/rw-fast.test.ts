/*
 * The read/write path's fast path (src/dmabuf/rw_fast.ts, assembly/rw.ts)
 * against the full path: the same random operations (a FIXED seed by
 * default, printed; DMABUF_SEED chooses another) run by three real workers
 * in turns on shared buffers, once with the fast path on and once with it
 * off, in two fresh labs. Every outcome (bytes moved, what a read saw, the
 * errno of a refused call), the buffers' bytes, and each reservation
 * object's fences (context, seqno, usage, status, names), cursor, capacity
 * and lock acquisitions must be the same; the fast run must have taken the
 * fast path and also have been sent back from it (pending fences).
 */
import { describe, expect, test } from "vitest";
import type { DmaBufRecord, Lab } from "../src/index.js";
import { rwFastPath } from "../src/dmabuf/rw_fast.js";
import { pwritev } from "../src/dmabuf/rw.js";
import { RESV_CAPACITY, RESV_COUNT, RESV_CURSOR, RESV_SLOTS, SLOT_FENCE, SLOT_SIZE, SLOT_USAGE } from "../src/sync/resv.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { T_RW } from "../src/trace/events.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { testSeed, withSeed, type Prng } from "./helpers/prng.js";
import { WorkerSet, releaseAll, reports } from "./helpers/workers.js";
import type { RwFastAgentData, RwFastOp, RwFastReport } from "./workers/rw-fast-agent.js";
import type { RwHammerData, RwHammerReport } from "./workers/rw-fast-hammer.js";

const MiB = 1024 * 1024;
// Not sanitized under test:sanitize: a sanitizing lab's calls skip the fast path these tests measure.
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB, sanitize: false });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

const AGENTS = 3;
const OPS = 600;
const TIMEOUT_MS = 60_000;

/** The buffers of one run: scattered and contiguous system pages, cma, and a write-combined one (never fast). */
function makeBuffers(lab: Lab): DmaBufRecord[] {
  const spacers = Array.from({ length: 6 }, () => [lab.allocPages(0), lab.allocPages(0)]);
  spacers.forEach(([a]) => lab.freePages(a, 0));
  const scattered = lab.exporter("system").alloc(6 * PAGE_SIZE);
  spacers.forEach(([, b]) => lab.freePages(b, 0));
  return [scattered, lab.exporter("system").alloc(2 * PAGE_SIZE), lab.exporter("cma").alloc(3 * PAGE_SIZE),
    lab.exporter("system-uncached").alloc(PAGE_SIZE)];
}

function makeOps(rng: Prng, sizes: number[]): RwFastOp[] {
  const ops: RwFastOp[] = [];
  for (let i = 0; i < OPS; i++) {
    const w = rng.int(0, AGENTS - 1);
    const buf = rng.int(0, sizes.length - 1);
    const r = rng.next();
    if (r < 0.03) ops.push({ w, kind: "fence", buf, usage: rng.next() < 0.5 ? 1 : 2 });
    else if (r < 0.15) ops.push({ w, kind: "signal" });
    else {
      const len = rng.next() < 0.8 ? rng.int(0, 256) : rng.int(0, 2 * PAGE_SIZE);
      const pos = rng.next() < 0.9 ? rng.int(0, sizes[buf] - 1) : rng.int(sizes[buf] - 64, sizes[buf] + 64);
      ops.push({
        w, kind: rng.next() < 0.5 ? "pwrite" : "pread", buf, pos, len, split: rng.next() < 0.15 ? rng.int(0, len) : 0,
        foreign: rng.next() < 0.1, async: rng.next() < 0.25, nonblock: rng.next() < 0.5, seed: rng.int(0, 0xffffffff),
      });
    }
  }
  return ops;
}

function fnv(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return `${bytes.length} bytes, FNV-1a ${h.toString(16)}`;
}

/** What a run leaves: each buffer's bytes and its reservation object, contexts numbered by first appearance. */
function snapshot(lab: Lab, bufs: DmaBufRecord[]) {
  const contexts = new Map<bigint, number>();
  const u32 = lab.arena.u32;
  return bufs.map((buf) => {
    const bytes = new Uint8Array(buf.size);
    let at = 0;
    for (const s of buf.segments()) {
      bytes.set(lab.arena.u8.subarray(s.addr, s.addr + s.len), at);
      at += s.len;
    }
    const r = buf.resv.offset;
    const slots = u32[(r + RESV_SLOTS) >>> 2];
    const fences = Array.from({ length: u32[(r + RESV_COUNT) >>> 2] }, (_, i) => {
      const f = lab.sync.view(u32[(slots + i * SLOT_SIZE + SLOT_FENCE) >>> 2], false);
      if (!contexts.has(f.context)) contexts.set(f.context, contexts.size);
      return { context: contexts.get(f.context), seqno: f.seqno, usage: u32[(slots + i * SLOT_SIZE + SLOT_USAGE) >>> 2],
        status: f.status, names: f.names };
    });
    return { bytes: fnv(bytes), fences, cursor: u32[(r + RESV_CURSOR) >>> 2],
      capacity: u32[(r + RESV_CAPACITY) >>> 2], acquisitions: buf.resv.lockStats().acquisitions };
  });
}

async function runOnce(fast: boolean, rng: Prng) {
  const lab = await labs.create();
  const bufs = makeBuffers(lab);
  try {
    const ops = makeOps(rng, bufs.map((b) => b.size));
    const turn = new SharedArrayBuffer(4);
    const boxes = Array.from({ length: AGENTS }, (_, me) => {
      const data: RwFastAgentData = { handle: lab.share(), buffers: bufs.map((b) => b.offset), ops, me, fast, turn, timeoutMs: TIMEOUT_MS };
      return workers.start("rw-fast-agent", `rw-fast agent ${me} (${fast ? "fast" : "full"})`, data);
    });
    const got = await reports<RwFastReport>(boxes, TIMEOUT_MS);
    await workers.terminateAll();
    const outcomes = got.flatMap((r) => r.outcomes).sort((a, b) => a.op - b.op);
    expect(outcomes.length).toBe(OPS);
    return {
      outcomes, state: snapshot(lab, bufs),
      taken: got.reduce((n, r) => n + r.taken, 0), fallbacks: got.reduce((n, r) => n + r.fallbacks, 0),
    };
  } finally {
    bufs.forEach((b) => b.put());
  }
}

describe("the read/write fast path", () => {
  test("random operations from three workers: the fast path and the full path leave the same bytes, fences and resv", async () => {
    const seed = testSeed();
    console.log(`rw fast path differential: seed ${seed} (DMABUF_SEED=<n> chooses another)`);
    // The same seed for both runs: the same operations.
    const full = await withSeed((rng) => runOnce(false, rng), seed);
    const fast = await withSeed((rng) => runOnce(true, rng), seed);
    console.log(`rw fast path differential: ${fast.taken} calls took the fast path, ${fast.fallbacks} were sent back`);
    expect(full.taken).toBe(0);
    expect(fast.taken, "calls done by the fast path").toBeGreaterThan(OPS / 10);
    expect(fast.fallbacks, "calls the engine sent back (pending fences)").toBeGreaterThan(0);
    expect(fast.outcomes).toEqual(full.outcomes);
    expect(fast.state).toEqual(full.state);
  }, 180_000);

  test("three workers writing and reading the same 64 bytes at once: no read sees a write half done; every call takes the lock once", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const CALLS = 2000;
    try {
      const start = new Int32Array(new SharedArrayBuffer(4));
      const boxes = Array.from({ length: AGENTS }, (_, me) => {
        const data: RwHammerData = { handle: lab.share(), buffer: buf.offset, me, calls: CALLS, start, timeoutMs: TIMEOUT_MS };
        return workers.start("rw-fast-hammer", `rw-fast hammer ${me}`, data);
      });
      const acquisitions = buf.resv.lockStats().acquisitions;
      await releaseAll(boxes, start, TIMEOUT_MS);
      const got = await reports<RwHammerReport>(boxes, TIMEOUT_MS);
      await workers.terminateAll();
      expect(got.map((r) => r.torn)).toEqual([0, 0, 0]);
      expect(got.reduce((n, r) => n + r.taken, 0), "calls done by the fast path").toBeGreaterThan(0);
      // A call sent back counts no acquisition of its own: one per call, whichever path did it.
      expect(buf.resv.lockStats().acquisitions - acquisitions).toBe(AGENTS * CALLS * 2);
    } finally {
      buf.put();
    }
  }, 180_000);

  test("off while a trace records rw events, so that every call is traced", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const user = lab.alloc(64);
    try {
      // The first call reserves the resv's slot array: the full path.
      pwritev(buf, [user], 0);
      const before = rwFastPath.taken;
      pwritev(buf, [user], 0);
      expect(rwFastPath.taken).toBe(before + 1);
      lab.trace.start({ categories: ["rw"] });
      pwritev(buf, [user], 0);
      const events = lab.trace.stop().threads.flatMap((t) => t.events).filter((e) => e.type === T_RW);
      expect(rwFastPath.taken).toBe(before + 1);
      expect(events.length).toBe(1);
    } finally {
      lab.free(user);
      buf.put();
    }
  });
});

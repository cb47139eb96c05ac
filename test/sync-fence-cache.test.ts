/*
 * The fence-record cache as the kernel's per-CPU object caches (magazines):
 * a thread's read/write calls with no dependency reuse the records of its
 * own magazine and write no word of the control block and nothing of the
 * sync heap's allocator; Lab.create({ fenceCache: "shared" }) goes to the
 * shared depot on every call (what the magazines save); a full magazine
 * spills half of its records into the depot; drain() gives back every
 * record; flush() (Lab.close) leaves none in the thread.
 */
import { describe, expect, test } from "vitest";
import { Lab } from "../src/api/lab.js";
import { MAGAZINE_ROUNDS } from "../src/sync/fence_cache.js";
import { CONTROL_BYTES, CTL_FENCE_CACHE, CTL_FENCE_CACHE_SLOTS } from "../src/memory/layout.js";
import { FENCE_SIZE } from "../src/engine/abi.js";
import { expectErrnoAsync } from "./helpers/errors.js";

const control = (lab: Lab) => lab.arena.u8.slice(lab.arena.control(0), lab.arena.control(0) + CONTROL_BYTES);
const depot = (lab: Lab) => Array.from(lab.arena.u32.subarray(lab.arena.control(CTL_FENCE_CACHE) >>> 2,
  (lab.arena.control(CTL_FENCE_CACHE) >>> 2) + CTL_FENCE_CACHE_SLOTS));

/** 200 pwrite + pread pairs of 64 bytes on one buffer, nothing pending. */
async function calls(lab: Lab): Promise<void> {
  const buf = lab.heap("system").alloc(4096);
  const user = lab.alloc(64);
  try {
    for (let i = 0; i < 200; i++) {
      user[0] = i;
      expect(buf.write(user, 0)).toBe(64);
      user[0] = 255;
      expect(buf.read(user, 0)).toBe(64);
      expect(user[0]).toBe(i);
    }
  } finally {
    lab.free(user);
    buf.close();
  }
}

describe("kmem_cache magazines for fence records", () => {
  test("read/write calls with no dependency write no control word and nothing of the sync heap's allocator", async () => {
    const lab = await Lab.create();
    try {
      await calls(lab); // warm: the thread's timeline, the buffer's slot array, the magazine
      const buf = lab.heap("system").alloc(4096);
      const user = lab.alloc(64);
      buf.write(user, 0);
      const before = control(lab);
      const heap = lab.arena.syncHeap.stats();
      for (let i = 0; i < 500; i++) {
        buf.write(user, 0);
        buf.read(user, 0);
      }
      expect(Buffer.compare(Buffer.from(control(lab)), Buffer.from(before)), "the control block changed").toBe(0);
      const after = lab.arena.syncHeap.stats();
      expect([after.allocs, after.frees]).toEqual([heap.allocs, heap.frees]);
      lab.free(user);
      buf.close();
    } finally {
      lab.close();
    }
  });

  test("fenceCache \"shared\": every call takes and parks its record in the depot (the design the magazines replace)", async () => {
    const lab = await Lab.create({ fenceCache: "shared" });
    try {
      await calls(lab);
      const fence = lab.sync.timeline({ name: "t" }).createFence();
      const offset = fence.offset;
      fence.signal();
      fence.put();
      expect(depot(lab)).toContain(offset);
    } finally {
      lab.close();
    }
  });

  test("a full magazine spills half into the depot; drain() returns every parked record; flush() empties the magazine", async () => {
    const lab = await Lab.create();
    try {
      const t = lab.sync.timeline({ name: "t" });
      const fences = Array.from({ length: MAGAZINE_ROUNDS + 4 }, () => t.createFence());
      for (const f of fences) { f.signal(); f.put(); }
      // The magazine filled, spilled half, and holds the rest: all counted as free.
      const parked = depot(lab).filter((x) => x !== 0).length;
      expect(parked).toBe(MAGAZINE_ROUNDS / 2);
      expect(lab.stats().sync.cachedBytes).toBe((MAGAZINE_ROUNDS + 4) * FENCE_SIZE);
      lab.sync.fenceCache.flush();
      expect(depot(lab).filter((x) => x !== 0).length).toBe(CTL_FENCE_CACHE_SLOTS);
      lab.sync.fenceCache.drain();
      expect(depot(lab).every((x) => x === 0)).toBe(true);
      expect(lab.stats().sync.cachedBytes).toBe(0);
      t.unref();
    } finally {
      lab.close();
    }
  });

  test("a fenceCache that is not per-thread or shared is EINVAL", async () => {
    await expectErrnoAsync(() => Lab.create({ fenceCache: "global" as "shared" }), "EINVAL");
  });
});

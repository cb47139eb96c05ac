/*
 * The fence-record cache: the lab's kmem_cache for fence records.
 *
 * Every fence record is FENCE_SIZE (64) bytes of the sync heap, and a busy
 * path (one read/write call, one device job) makes and frees one per call.
 * The buddy allocator costs two mutex sections and a split/merge for that;
 * this cache keeps up to FENCE_CACHE_SLOTS freed records in slots of the
 * control block (kCtlFenceCache, one u32 record offset each, 0 = empty)
 * and hands them out again, lock-free:
 *
 *   take()   scans the slots from a per-thread starting point; a slot is
 *            taken by compareExchange(slot, offset, 0), so exactly one
 *            thread gets each cached record. The record is zeroed by its
 *            new owner before use. Returns 0 when the cache is empty.
 *   give(f)  parks a freed record in an empty slot by compareExchange(slot,
 *            0, f); false when every slot is full (the caller frees it to
 *            the heap). The caller has retired the record first
 *            (src/memory/record.ts): parking is a free, and a parked
 *            record's generation has changed, so no token names it.
 *   drain()  returns every parked record to the heap (before an allocation
 *            that would otherwise fail with ENOMEM, and on demand).
 *   bytes()  the bytes parked now: Lab.stats() counts them as free.
 *
 * Ordering: the compareExchange that parks a record is a seq-cst publish
 * after the freeing thread's last access to it; the one that takes it
 * orders the taker's initialisation after that. A record is never in two
 * slots, and a parked record belongs to no fence, so nothing reads it.
 */
import { FENCE_SIZE } from "../engine/abi.js";
import type { Arena } from "../memory/arena.js";
import { kCtlFenceCache, kCtlFenceCacheSlots } from "../memory/layout.js";

export const FENCE_CACHE_SLOTS = kCtlFenceCacheSlots;

export class FenceCache {
  private readonly first: number;
  /** Where this thread starts scanning: spreads threads over the slots. */
  private readonly start: number;

  constructor(private readonly arena: Arena) {
    this.first = arena.control(kCtlFenceCache) >>> 2;
    this.start = Math.floor(Math.random() * FENCE_CACHE_SLOTS);
  }

  take(): number {
    const { i32 } = this.arena;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) {
      const slot = this.first + ((this.start + k) % FENCE_CACHE_SLOTS);
      const f = Atomics.load(i32, slot);
      if (f !== 0 && Atomics.compareExchange(i32, slot, f, 0) === f) return f;
    }
    return 0;
  }

  give(f: number): boolean {
    const { i32 } = this.arena;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) {
      const slot = this.first + ((this.start + k) % FENCE_CACHE_SLOTS);
      if (Atomics.load(i32, slot) === 0 && Atomics.compareExchange(i32, slot, 0, f) === 0) return true;
    }
    return false;
  }

  drain(): void {
    const { i32 } = this.arena;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) {
      const f = Atomics.exchange(i32, this.first + k, 0);
      if (f !== 0) this.arena.syncHeap.free(f, undefined, "kmem_cache_shrink");
    }
  }

  bytes(): number {
    let n = 0;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) if (Atomics.load(this.arena.i32, this.first + k) !== 0) n++;
    return n * FENCE_SIZE;
  }
}

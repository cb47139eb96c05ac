/*
 * The fence-record cache: the lab's kmem_cache for fence records, with
 * per-thread magazines in front of a shared depot, as the kernel's per-CPU
 * object caches do.
 *
 * Every fence record is FENCE_SIZE (64) bytes of the sync heap (one cache
 * line: records of different threads never share a line), and a busy path
 * (one read/write call, one device job) makes and frees one per call. The
 * buddy allocator costs two mutex sections and a split/merge for that.
 *
 *   magazine  this thread's parked records (up to MAGAZINE_ROUNDS), a plain
 *             JavaScript array of offsets: take() and give() in the steady
 *             state write no shared word at all.
 *   depot     FENCE_CACHE_SLOTS u32 slots of the control block
 *             (CTL_FENCE_CACHE, 0 = empty), shared by every thread: an empty
 *             magazine is refilled from it with up to half a magazine of
 *             records (a slot is taken by compareExchange(slot, offset, 0),
 *             so exactly one thread gets each), and a full one spills half
 *             of its records into it (compareExchange(slot, 0, f)); what
 *             does not fit goes back to the sync heap.
 *
 *   take()   a parked record, or 0 (the caller allocates from the heap).
 *            The new owner zeroes it before use.
 *   give(f)  parks a freed record. The caller has retired it first
 *            (src/memory/record.ts): parking is a free, and a parked
 *            record's generation has changed, so no token names it.
 *   flush()  this thread's magazine into the depot (the rest to the heap):
 *            a timer does it REAP_MS after a record was parked (the
 *            kernel's cache_reap, which drains per-CPU caches
 *            periodically), and Lab.close() at once, so that records a
 *            thread freed reach the others when it stops freeing.
 *   drain()  this thread's magazine and the whole depot back to the heap
 *            (before an allocation that would otherwise fail with ENOMEM).
 *   bytes()  the bytes parked in this thread's magazine and the depot
 *            (Lab.stats() counts them as free). Other threads' magazines
 *            are theirs: at most MAGAZINE_ROUNDS records each, until their
 *            reap timer or Lab.close() flushes them; a worker terminated
 *            (or blocked) before either loses them for that long, at most
 *            1 KiB of the sync heap.
 *
 * `Lab.create({ fenceCache: "shared" })` (CTL_FENCE_CACHE_MODE) turns the
 * magazines off in every thread: every take and give then goes to the depot
 * with a compareExchange, the design before magazines, kept so that a
 * benchmark can show what they buy.
 *
 * Ordering: the compareExchange that parks a record in the depot is a
 * seq-cst publish after the freeing thread's last access to it; the one
 * that takes it orders the taker's initialisation after that. A record in a
 * magazine is reachable from one thread only. A record is never parked
 * twice, and a parked record belongs to no fence, so nothing reads it.
 */
import { FENCE_SIZE } from "../engine/abi.js";
import { DmaBufError } from "../errno.js";
import type { Arena } from "../memory/arena.js";
import { CTL_FENCE_CACHE, CTL_FENCE_CACHE_MODE, CTL_FENCE_CACHE_SLOTS } from "../memory/layout.js";

export const FENCE_CACHE_SLOTS = CTL_FENCE_CACHE_SLOTS;
/** Records one thread's magazine holds before it spills half of them. */
export const MAGAZINE_ROUNDS = 16;
/** How long after a thread parks a record its magazine is flushed to the depot. */
export const REAP_MS = 20;
/** CTL_FENCE_CACHE_MODE values. */
export const FENCE_CACHE_PER_THREAD = 0;
export const FENCE_CACHE_SHARED = 1;
export type FenceCacheMode = "per-thread" | "shared";

/** Lab.create's choice, before any thread makes a FenceCache; EINVAL for anything else. */
export function setFenceCacheMode(arena: Arena, mode: FenceCacheMode): void {
  if (mode !== "per-thread" && mode !== "shared") {
    throw new DmaBufError("EINVAL", "lab_create", `fenceCache '${String(mode)}' is not per-thread or shared`);
  }
  arena.u32[arena.control(CTL_FENCE_CACHE_MODE) >>> 2] = mode === "shared" ? FENCE_CACHE_SHARED : FENCE_CACHE_PER_THREAD;
}

export class FenceCache {
  private readonly first: number;
  /** Where this thread starts scanning the depot: spreads threads over the slots. */
  private readonly start: number;
  private readonly magazine: number[] = [];
  private readonly perThread: boolean;
  /** A reap timer is pending. */
  private reaping = false;

  constructor(private readonly arena: Arena) {
    this.first = arena.control(CTL_FENCE_CACHE) >>> 2;
    this.start = Math.floor(Math.random() * FENCE_CACHE_SLOTS);
    this.perThread = arena.u32[arena.control(CTL_FENCE_CACHE_MODE) >>> 2] === FENCE_CACHE_PER_THREAD;
  }

  take(): number {
    if (!this.perThread) return this.takeShared();
    if (this.magazine.length === 0) {
      for (let k = 0; k < MAGAZINE_ROUNDS / 2; k++) {
        const f = this.takeShared();
        if (f === 0) break;
        this.magazine.push(f);
      }
    }
    return this.magazine.pop() ?? 0;
  }

  give(f: number): void {
    if (!this.perThread) {
      if (!this.giveShared(f)) this.arena.syncHeap.free(f, undefined, "kmem_cache_free");
      return;
    }
    if (this.magazine.length >= MAGAZINE_ROUNDS) this.spill(MAGAZINE_ROUNDS / 2);
    this.magazine.push(f);
    if (!this.reaping) {
      // Like the kernel's cache_reap: a timer flushes the magazine REAP_MS
      // later, so that records freed here reach other threads (and the
      // heap's statistics) once this thread stops freeing. It keeps the
      // thread alive that long, so that a worker ending right after its
      // last free still flushes. A thread busy past REAP_MS refills from
      // the depot afterwards: one flush per REAP_MS, not per call.
      this.reaping = true;
      setTimeout(() => {
        this.reaping = false;
        this.flush();
      }, REAP_MS);
    }
  }

  flush(): void {
    this.spill(this.magazine.length);
  }

  drain(): void {
    for (const f of this.magazine.splice(0)) this.arena.syncHeap.free(f, undefined, "kmem_cache_shrink");
    const { i32 } = this.arena;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) {
      const f = Atomics.exchange(i32, this.first + k, 0);
      if (f !== 0) this.arena.syncHeap.free(f, undefined, "kmem_cache_shrink");
    }
  }

  bytes(): number {
    let n = this.magazine.length;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) if (Atomics.load(this.arena.i32, this.first + k) !== 0) n++;
    return n * FENCE_SIZE;
  }

  /** The oldest n records of the magazine to the depot; what does not fit, to the heap. */
  private spill(n: number): void {
    for (const f of this.magazine.splice(0, n)) {
      if (!this.giveShared(f)) this.arena.syncHeap.free(f, undefined, "kmem_cache_free");
    }
  }

  private takeShared(): number {
    const { i32 } = this.arena;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) {
      const slot = this.first + ((this.start + k) % FENCE_CACHE_SLOTS);
      const f = Atomics.load(i32, slot);
      if (f !== 0 && Atomics.compareExchange(i32, slot, f, 0) === f) return f;
    }
    return 0;
  }

  private giveShared(f: number): boolean {
    const { i32 } = this.arena;
    for (let k = 0; k < FENCE_CACHE_SLOTS; k++) {
      const slot = this.first + ((this.start + k) % FENCE_CACHE_SLOTS);
      if (Atomics.load(i32, slot) === 0 && Atomics.compareExchange(i32, slot, 0, f) === 0) return true;
    }
    return false;
  }
}

/*
 * dma_resv: the reservation object of a buffer, a list of fences each
 * tagged with a usage, under a lock in shared memory that any thread takes.
 *
 * Usage order KERNEL < WRITE < READ < BOOKKEEP: a query at usage U sees every
 * fence whose usage is <= U. A new reader waits at WRITE (kernel and write
 * fences), a new writer at READ (usageRw(write)); BOOKKEEP fences are
 * invisible to implicit sync.
 *
 * Under the lock (lock()/unlock() or withLock(); lockAsync()/withLockAsync()
 * are their Promise forms, for threads that may not block):
 *   reserveFences(n)  room for n more fences (the first slot array holds at
 *                     least 16): n 0 EINVAL; when full, drops
 *                     the signalled fences, in place or while growing the
 *                     slot array to 4x its size; the sync heap
 *                     exhausted: ENOMEM, nothing changed
 *   addFence(f, u)    cannot fail after a reservation: the first entry of
 *                     the same context with a usage not stronger than u (old
 *                     usage >= u) and a seqno not later is replaced in
 *                     place; else the entry at the cursor (RESV_CURSOR, one
 *                     step along the list per such add) when it is
 *                     signalled (a failed writer only by a new writer:
 *                     retained() below); else f is appended into a reserved
 *                     slot.
 *                     No slot reserved: ENOSPC, nothing changed (the kernel
 *                     BUG()s). Containers are refused (EINVAL). The kernel
 *                     replaces the first signalled entry of the whole list,
 *                     a scan per add; the cursor finds signalled entries in
 *                     constant time per add, and reserveFences drops the
 *                     rest when the array is full. So n adds cost O(n).
 *   iter(u)           every entry with usage <= u, signalled ones included
 * Without the lock (each takes it briefly, or runs under it when this thread
 * holds it, as the kernel's RCU readers may):
 *   iterUnlocked(u)   pending fences with usage <= u, each owned; restarts
 *                     (restarted = true) when the list changed meanwhile
 *   getFences(u), getSingleton(u), testSignaled(u), wait(u), waitAsync(u)
 *
 * Record (RESV_*, 64 bytes in the sync heap): the lock (a Mutex, whose
 * statistics count acquisitions, contention and wait time), the slot array
 * {fence u32, usage u32}[capacity] in the sync heap followed by its context
 * index (2 x capacity u32 buckets, open addressing: the slot index + 1 of
 * every entry, hashed by its fence's context), count, capacity, a
 * generation bumped whenever the slot array is replaced, and a refcount.
 */
import { RecordType, RecordView, getRecord } from "../memory/record.js";
import { DmaBufError, hex } from "../errno.js";
import {
  BUCKET_SIZE, BUCKETS_PER_SLOT, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, ENOSPC,
  FENCE_KIND, FENCE_KIND_ARRAY, FENCE_KIND_CHAIN, FENCE_KIND_MASK, RESV_CAPACITY, RESV_COUNT, RESV_CURSOR, RESV_GENERATION, RESV_LOCK,
  RESV_REFCOUNT, RESV_SIZE, RESV_SLOTS, SLOT_FENCE, SLOT_SIZE, SLOT_USAGE,
} from "../engine/abi.js";
import type { EngineExports } from "../engine/abi.js";
import { nowMs } from "../memory/futex.js";
import { Mutex, type MutexStats } from "../memory/mutex.js";
import { Fence, checkTimeout, statusAt, timeLeft } from "./fence.js";
import { FenceArray } from "./fence_array.js";
import { receiveFlight, sendFlight, type ShareToken } from "./flight.js";
import type { SyncRecords, HasSync } from "./records.js";
import { CAT_RESV, T_RESV_WAIT } from "../trace/events.js";

// The record's words and the usages are the engine's ABI (assembly/resv.ts
// adds fences and keeps the context index); this module owns the rest.
export {
  RESV_LOCK, RESV_SLOTS, RESV_COUNT, RESV_CAPACITY, RESV_GENERATION, RESV_REFCOUNT, RESV_CURSOR, RESV_SIZE,
  SLOT_FENCE, SLOT_USAGE, SLOT_SIZE, BUCKET_SIZE, BUCKETS_PER_SLOT,
  DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_WRITE, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_BOOKKEEP,
} from "../engine/abi.js";
const BLOCK_BYTES_PER_SLOT = SLOT_SIZE + BUCKETS_PER_SLOT * BUCKET_SIZE;
/** A full slot array grows to GROWTH x its capacity: few reallocations on the way to a long list. */
const GROWTH = 4;
/**
 * The first slot array's capacity (at least): 16 slots hold what a buffer
 * usually carries (a writer, a few readers, a CPU fence per thread) without
 * growing, at 256 bytes of the sync heap.
 */
const FIRST_CAPACITY = 16;

export const usageNames = ["KERNEL", "WRITE", "READ", "BOOKKEEP"] as const;
export type ResvUsage = 0 | 1 | 2 | 3;

/** dma_resv_usage_rw: what a new writer (READ) or reader (WRITE) waits for. */
export const usageRw = (write: boolean): ResvUsage => (write ? DMA_RESV_USAGE_READ : DMA_RESV_USAGE_WRITE);

export interface ResvEntry {
  fence: Fence;
  usage: ResvUsage;
  /** True for the first entry of an iteration and after every restart. */
  restarted: boolean;
}

/**
 * A failed writer stays: a signalled fence with an error at usage KERNEL or
 * WRITE (the buffer's contents are bad) is kept in the object until a later
 * writer replaces it, so that a device job submitted after it signalled
 * still inherits its error (publishAccess(..., failed)), as the kernel keeps
 * the error visible through the fence status in the reservation.
 */
function retained(sync: SyncRecords, fence: number, usage: number): boolean {
  return usage <= DMA_RESV_USAGE_WRITE && statusAt(sync, fence) < 0;
}

function checkUsage(usage: number, syscall: string): asserts usage is ResvUsage {
  if (!Number.isInteger(usage) || usage < 0 || usage > 3) {
    throw new DmaBufError("EINVAL", syscall, `usage ${usage} is not one of KERNEL(0) WRITE(1) READ(2) BOOKKEEP(3)`);
  }
}

/** An engine call on the object failed: its records are not in the sync heap (EFAULT). */
function engineCall(rc: number, syscall: string, offset: number): void {
  if (rc < 0) throw new DmaBufError(DmaBufError.codeOf(rc), syscall, `reservation object ${hex(offset)}: its records are not in the sync heap`);
}

export class Resv {
  readonly mutex: Mutex;
  private owned: boolean;

  private readonly rec: RecordView;
  /** This thread's engine (addFence calls it for every add). */
  private readonly wasm: EngineExports;

  constructor(readonly sync: SyncRecords, readonly offset: number, owned: boolean) {
    this.rec = new RecordView(sync, offset);
    this.wasm = sync.engine.wasm;
    this.mutex = new Mutex(sync.arena.buffer, offset + RESV_LOCK);
    this.owned = owned;
  }

  /** dma_resv_init: a new, empty object (owned). */
  static create(sync: SyncRecords): Resv {
    const offset = sync.allocRecord(RecordType.resv, RESV_SIZE, "dma_resv_init");
    if (sync.san.on) sync.san.resetResv(offset);
    sync.i32[(offset + RESV_REFCOUNT) >>> 2] = 1;
    return new Resv(sync, offset, true);
  }

  /**
   * Another thread's view of the object at `offset`, taking a reference.
   * EINVAL, nothing touched, unless a live reservation object (of
   * `generation`, when given) starts there.
   */
  static attach(sync: SyncRecords, offset: number, generation?: number): Resv {
    getRecord(sync.arena, offset, RecordType.resv, RESV_REFCOUNT, "dma_resv_get", "EINVAL", generation,
      () => new Resv(sync, offset, true).put());
    return new Resv(sync, offset, true);
  }

  /** A token for another thread: Resv.import (or lab.import) there; holds a reference until then. */
  share(): ShareToken<"resv"> {
    return sendFlight(this.sync, "resv", this.offset, () => { Atomics.add(this.sync.i32, (this.offset + RESV_REFCOUNT) >>> 2, 1); });
  }

  /** This thread's owned view of a shared reservation object (EINVAL/EBADF for a bad or spent token). */
  static import(lab: HasSync, token: ShareToken<"resv">): Resv {
    return receiveFlight(lab.sync, token, "resv", "dma_resv_import", (t) => new Resv(lab.sync, t.offset, true));
  }

  private slot(i: number): { fence: number; usage: ResvUsage } {
    const s = this.rec.word(RESV_SLOTS) + i * SLOT_SIZE;
    return { fence: this.sync.u32[(s + SLOT_FENCE) >>> 2], usage: this.sync.u32[(s + SLOT_USAGE) >>> 2] as ResvUsage };
  }

  // ---- locking -------------------------------------------------------------

  lock(timeoutMs?: number): void {
    const trace = this.sync.trace;
    if (!trace.on(CAT_RESV)) this.mutex.lock(timeoutMs);
    else if (!this.mutex.tryLock()) {
      const t0 = trace.now();
      this.mutex.lock(timeoutMs);
      this.traceWait(t0);
    }
  }

  unlock(): void {
    this.mutex.unlock();
  }

  withLock<T>(fn: () => T, timeoutMs?: number): T {
    this.lock(timeoutMs);
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }

  /**
   * fn under the lock, taken unless this thread holds it already: for the
   * readers the kernel runs under RCU, which work with or without the lock.
   */
  underLock<T>(fn: () => T): T {
    return this.mutex.heldByMe() ? fn() : this.withLock(fn);
  }

  /** lock() as a Promise (Atomics.waitAsync): any thread, a browser's main thread included. */
  async lockAsync(timeoutMs?: number): Promise<void> {
    const trace = this.sync.trace;
    if (!trace.on(CAT_RESV)) await this.mutex.lockAsync(timeoutMs);
    else if (!this.mutex.tryLock()) {
      const t0 = trace.now();
      await this.mutex.lockAsync(timeoutMs);
      this.traceWait(t0, 1);
    }
  }

  /** withLock() as a Promise: fn may await while it holds the lock. */
  async withLockAsync<T>(fn: () => T | Promise<T>, timeoutMs?: number): Promise<T> {
    await this.lockAsync(timeoutMs);
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }

  /** A traced lock that found the lock held: its wait (src/trace; code 1: lockAsync). */
  private traceWait(t0: number, async = 0): void {
    this.sync.trace.record(T_RESV_WAIT, async, t0, this.sync.trace.now(), this.offset, this.mutex.stats().contended);
  }

  lockStats(): MutexStats {
    return this.mutex.stats();
  }

  get count(): number {
    return this.rec.word(RESV_COUNT);
  }

  /** RESV_GENERATION: changes whenever the slot array is replaced (unlocked iteration restarts on it). */
  get generation(): number {
    return this.rec.word(RESV_GENERATION);
  }

  // ---- under the lock ------------------------------------------------------

  /**
   * dma_resv_reserve_fences: room for n more. With room already, nothing
   * happens. Otherwise signalled entries are dropped (and put): in place
   * when the pending ones and n then fill at most half the array, else
   * while copying into a new one of at least GROWTH times the capacity, so that
   * a long run of adds costs amortised constant time per add.
   */
  reserveFences(n: number): void {
    if (!Number.isInteger(n) || n <= 0) {
      throw new DmaBufError("EINVAL", "dma_resv_reserve_fences", `count ${n} must be a positive integer`);
    }
    const { sync } = this;
    // Room already: the common case of every add, three plain reads.
    const base = this.offset >>> 2;
    const count = sync.u32[base + (RESV_COUNT >>> 2)];
    const capacity = sync.u32[base + (RESV_CAPACITY >>> 2)];
    const old = sync.u32[base + (RESV_SLOTS >>> 2)];
    if (old !== 0 && count + n <= capacity) return;
    let pending = 0;
    for (let i = 0; i < count; i++) {
      const { fence, usage } = this.slot(i);
      if (statusAt(sync, fence) === 0 || retained(sync, fence, usage)) pending++;
    }
    let block = old;
    let newCapacity = capacity;
    if (old === 0 || 2 * (pending + n) > capacity) {
      const wanted = old !== 0 ? Math.max(pending + n, GROWTH * capacity) : Math.max(FIRST_CAPACITY, 2 ** Math.ceil(Math.log2(n)));
      const heap = sync.arena.syncHeap;
      const order = heap.orderFor(wanted * BLOCK_BYTES_PER_SLOT);
      // Not zeroed: the slots below the count are written here, the index is cleared by resv_reindex.
      block = sync.allocRecord(RecordType.resvSlots, wanted * BLOCK_BYTES_PER_SLOT, "dma_resv_reserve_fences", false);
      newCapacity = (heap.granuleBytes * 2 ** order) / BLOCK_BYTES_PER_SLOT;
    }
    // Keep the pending entries and the retained failed writers in order (a fence signalled meanwhile is dropped too).
    let kept = 0;
    const dropped: number[] = [];
    for (let i = 0; i < count; i++) {
      const { fence, usage } = this.slot(i);
      if (statusAt(sync, fence) !== 0 && !retained(sync, fence, usage)) {
        // Seen signalled and dropped: its order stays with the object (src/sanitize).
        if (sync.san.on) sync.san.retire(this.offset, fence);
        dropped.push(fence);
        continue;
      }
      sync.u32[(block + kept * SLOT_SIZE + SLOT_FENCE) >>> 2] = fence;
      sync.u32[(block + kept * SLOT_SIZE + SLOT_USAGE) >>> 2] = usage;
      kept++;
    }
    this.rec.setWord(RESV_SLOTS, block);
    this.rec.setWord(RESV_CAPACITY, newCapacity);
    this.rec.setWord(RESV_COUNT, kept);
    this.rec.setWord(RESV_CURSOR, 0);
    this.rec.setWord(RESV_GENERATION, this.rec.word(RESV_GENERATION) + 1);
    engineCall(sync.engine.wasm.resv_reindex(this.offset), "dma_resv_reserve_fences", this.offset);
    if (old !== 0 && old !== block) sync.freeRecord(old, RecordType.resvSlots);
    for (const f of dropped) sync.unref(f);
  }

  /**
   * dma_resv_add_fence: takes a new reference on the fence. The first entry
   * of the same context whose usage is not stronger and whose seqno is not
   * later is replaced in place; else the entry at the cursor when it is
   * signalled; else the fence is appended. The engine does it
   * (assembly/resv.ts): entries of its context are found through the
   * context index (constant time), not by a scan of the list.
   */
  addFence(fence: Fence, usage: ResvUsage): void {
    checkUsage(usage, "dma_resv_add_fence");
    const kind = this.sync.u32[(fence.offset + FENCE_KIND) >>> 2] & FENCE_KIND_MASK;
    if (kind === FENCE_KIND_ARRAY || kind === FENCE_KIND_CHAIN) {
      throw new DmaBufError("EINVAL", "dma_resv_add_fence", `fence ${fence.describe()} is a container; add its fences`);
    }
    const old = this.wasm.resv_add_fence(this.offset, fence.offset, usage);
    if (old === -ENOSPC) {
      throw new DmaBufError("ENOSPC", "dma_resv_add_fence", `no reserved slot for fence ${fence.describe()}; call reserveFences() first`);
    }
    if (old !== 0) {
      engineCall(old, "dma_resv_add_fence", this.offset);
      // A signalled fence replaced: its order stays with the object (src/sanitize).
      if (this.sync.san.on && statusAt(this.sync, old) !== 0) this.sync.san.retire(this.offset, old);
      this.sync.unref(old);
    }
  }

  /** dma_resv_for_each_fence: entries with usage <= u, signalled ones included (borrowed). */
  *iter(usage: ResvUsage): Generator<ResvEntry> {
    checkUsage(usage, "dma_resv_iter");
    let first = true;
    for (let i = 0; i < this.rec.word(RESV_COUNT); i++) {
      const s = this.slot(i);
      if (s.usage > usage) continue;
      yield { fence: Fence.view(this.sync, s.fence, false), usage: s.usage, restarted: first };
      first = false;
    }
  }

  // ---- without the lock ----------------------------------------------------

  /**
   * dma_resv_for_each_fence_unlocked: pending fences with usage <= u, each an
   * owned view (put it, or keep it). When the slot array changes between two
   * steps the iteration starts again with restarted = true; callers discard
   * what they gathered, as in the kernel.
   */
  *iterUnlocked(usage: ResvUsage): Generator<ResvEntry> {
    checkUsage(usage, "dma_resv_iter_unlocked");
    let generation = -1;
    let index = 0;
    let restarted = true;
    for (;;) {
      const next = this.underLock(() => {
        const g = this.rec.word(RESV_GENERATION);
        if (g !== generation) {
          if (generation !== -1) restarted = true;
          generation = g;
          index = 0;
        }
        for (; index < this.rec.word(RESV_COUNT); index++) {
          const s = this.slot(index);
          if (s.usage > usage || statusAt(this.sync, s.fence) !== 0) continue;
          index++;
          return { fence: Fence.view(this.sync, s.fence, false).get(), usage: s.usage };
        }
        return undefined;
      });
      if (next === undefined) return;
      yield { ...next, restarted };
      restarted = false;
    }
  }

  /** dma_resv_get_fences: owned views of the pending fences with usage <= u. */
  getFences(usage: ResvUsage): Fence[] {
    checkUsage(usage, "dma_resv_get_fences");
    return this.underLock(() => this.pending(usage));
  }

  /**
   * The pending fences with usage <= u (owned views); with `failed`, also the
   * retained failed writers (see retained()), whose error a device job
   * inherits as from a pending dependency.
   */
  private pending(usage: ResvUsage, failed = false): Fence[] {
    const { sync } = this;
    const out: Fence[] = [];
    const slots = this.rec.word(RESV_SLOTS);
    const count = this.rec.word(RESV_COUNT);
    // The fences that left the object signalled order this scan too (src/sanitize).
    if (sync.san.on) sync.san.scanResv(this.offset);
    for (let i = 0; i < count; i++) {
      const s = slots + i * SLOT_SIZE;
      if (sync.u32[(s + SLOT_USAGE) >>> 2] > usage) continue;
      const f = sync.u32[(s + SLOT_FENCE) >>> 2];
      const status = statusAt(sync, f);
      // Implicit sync's edge (src/sanitize): a fence found signalled is not waited for, but it orders.
      if (status !== 0 && sync.san.on) sync.san.acquire(f);
      if (status !== 0 && !(failed && status < 0 && sync.u32[(s + SLOT_USAGE) >>> 2] <= DMA_RESV_USAGE_WRITE)) continue;
      sync.ref(f);
      out.push(Fence.view(sync, f, true));
    }
    return out;
  }

  /**
   * The implicit-sync step of one access to the buffer (a CPU read or write,
   * a device job's use of it), in one critical section: the pending fences
   * the access must wait for (usageRw(write); owned views), then `own`
   * published at usage WRITE for a write, READ for a read, so that later
   * accesses wait for it. With `nonblock` and anything pending: EAGAIN and
   * nothing published; any failure leaves the object as it was.
   */
  publishAccess(own: Fence, write: boolean, nonblock: boolean, syscall: string, failed = false): Fence[] {
    this.lock();
    let deps: Fence[] = [];
    try {
      deps = this.pending(usageRw(write), failed);
      if (nonblock && deps.length > 0) {
        throw new DmaBufError("EAGAIN", syscall, `${deps.length} fence(s) of the dma-buf are pending and the file is O_NONBLOCK`);
      }
      this.reserveFences(1);
      this.addFence(own, write ? DMA_RESV_USAGE_WRITE : DMA_RESV_USAGE_READ);
      return deps;
    } catch (e) {
      for (const d of deps) d.put();
      throw e;
    } finally {
      this.unlock();
    }
  }

  /** dma_resv_get_singleton: null, the one fence, or a new array of them (owned). */
  getSingleton(usage: ResvUsage): Fence | null {
    const fences = this.getFences(usage);
    if (fences.length <= 1) return fences[0] ?? null;
    try {
      return FenceArray.create(this.sync, fences, this.sync.allocContext(), 1n, false);
    } finally {
      fences.forEach((f) => f.put());
    }
  }

  /** dma_resv_test_signaled: no pending fence with usage <= u. */
  testSignaled(usage: ResvUsage): boolean {
    checkUsage(usage, "dma_resv_test_signaled");
    return this.underLock(() => {
      let signalled = true;
      if (this.sync.san.on) this.sync.san.scanResv(this.offset);
      for (let i = 0; i < this.rec.word(RESV_COUNT); i++) {
        const s = this.slot(i);
        if (s.usage > usage) continue;
        if (statusAt(this.sync, s.fence) === 0) signalled = false;
        // poll's edge (src/sanitize): each fence seen signalled orders what follows.
        else if (this.sync.san.on) this.sync.san.acquire(s.fence);
      }
      return signalled;
    });
  }

  /** dma_resv_wait_timeout: waits for every fence with usage <= u; time left (> 0) or 0. */
  wait(usage: ResvUsage, timeoutMs = Infinity): number {
    checkTimeout(timeoutMs, "dma_resv_wait_timeout");
    const start = nowMs();
    const fences = this.getFences(usage);
    try {
      for (const f of fences) if (f.wait(Math.max(0, timeoutMs - (nowMs() - start))) === 0) return 0;
    } finally {
      fences.forEach((f) => f.put());
    }
    return timeLeft(start, timeoutMs);
  }

  async waitAsync(usage: ResvUsage, timeoutMs = Infinity): Promise<number> {
    checkTimeout(timeoutMs, "dma_resv_wait_timeout");
    const start = nowMs();
    const fences = this.getFences(usage);
    try {
      for (const f of fences) if ((await f.waitAsync(Math.max(0, timeoutMs - (nowMs() - start)))) === 0) return 0;
    } finally {
      fences.forEach((f) => f.put());
    }
    return timeLeft(start, timeoutMs);
  }

  /** dma_resv_fini (for the last reference): puts every fence, frees the record. */
  put(): void {
    if (!this.owned) throw new DmaBufError("EINVAL", "dma_resv_fini", "this view holds no reference");
    this.owned = false;
    if (Atomics.sub(this.sync.i32, (this.offset + RESV_REFCOUNT) >>> 2, 1) !== 1) return;
    const slots = this.rec.word(RESV_SLOTS);
    for (let i = 0; i < this.rec.word(RESV_COUNT); i++) this.sync.unref(this.slot(i).fence);
    if (slots !== 0) this.sync.freeRecord(slots, RecordType.resvSlots);
    this.sync.freeRecord(this.offset, RecordType.resv);
  }

  [Symbol.dispose](): void {
    if (this.owned) this.put();
  }
}

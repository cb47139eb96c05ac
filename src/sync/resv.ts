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
 *   reserveFences(n)  room for n more fences: n 0 EINVAL; grows the slot
 *                     array (dropping signalled fences while copying); the
 *                     sync heap exhausted: ENOMEM, nothing changed
 *   addFence(f, u)    cannot fail after a reservation: the first entry that
 *                     is signalled, or of the same context with a usage not
 *                     stronger than u (old usage >= u) and a seqno not later,
 *                     is replaced; else f is appended into a reserved slot.
 *                     No slot reserved: ENOSPC, nothing changed (the kernel
 *                     BUG()s). Containers are refused (EINVAL).
 *   iter(u)           every entry with usage <= u, signalled ones included
 * Without the lock (each takes it briefly):
 *   iterUnlocked(u)   pending fences with usage <= u, each owned; restarts
 *                     (restarted = true) when the list changed meanwhile
 *   getFences(u), getSingleton(u), testSignaled(u), wait(u), waitAsync(u)
 *
 * Record (RESV_*, 64 bytes in the sync heap): the lock (a Mutex, whose
 * statistics count acquisitions, contention and wait time), the slot array
 * {fence u32, usage u32}[capacity] in the sync heap, count, capacity, a
 * generation bumped whenever the slot array is replaced, and a refcount.
 */
import { RecordType, RecordView, getRecord } from "../memory/record.js";
import { DmaBufError } from "../errno.js";
import { FENCE_KIND_ARRAY, FENCE_KIND_CHAIN } from "../engine/abi.js";
import { nowMs } from "../memory/futex.js";
import { Mutex, type MutexStats } from "../memory/mutex.js";
import { checkTimeout, isLaterAt, sameContextAt, statusAt, timeLeft, type Fence } from "./fence.js";
import { FenceArray } from "./fence_array.js";
import { receiveFlight, sendFlight, type ShareToken } from "./flight.js";
import type { Sync } from "./sync.js";
import { CAT_RESV, T_RESV_WAIT } from "../trace/events.js";

export const RESV_LOCK = 0;
export const RESV_SLOTS = 32;
export const RESV_COUNT = 36;
export const RESV_CAPACITY = 40;
export const RESV_GENERATION = 44;
export const RESV_REFCOUNT = 48;
export const RESV_SIZE = 64;
export const SLOT_FENCE = 0;
export const SLOT_USAGE = 4;
export const SLOT_SIZE = 8;

export const DMA_RESV_USAGE_KERNEL = 0;
export const DMA_RESV_USAGE_WRITE = 1;
export const DMA_RESV_USAGE_READ = 2;
export const DMA_RESV_USAGE_BOOKKEEP = 3;
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

function checkUsage(usage: number, syscall: string): asserts usage is ResvUsage {
  if (!Number.isInteger(usage) || usage < 0 || usage > 3) {
    throw new DmaBufError("EINVAL", syscall, `usage ${usage} is not one of KERNEL(0) WRITE(1) READ(2) BOOKKEEP(3)`);
  }
}

export class Resv {
  readonly mutex: Mutex;
  private owned: boolean;

  private readonly rec: RecordView;

  constructor(readonly sync: Sync, readonly offset: number, owned: boolean) {
    this.rec = new RecordView(sync, offset);
    this.mutex = new Mutex(sync.arena.buffer, offset + RESV_LOCK);
    this.owned = owned;
  }

  /** dma_resv_init: a new, empty object (owned). */
  static create(sync: Sync): Resv {
    const offset = sync.allocRecord(RecordType.resv, RESV_SIZE, "dma_resv_init");
    sync.i32[(offset + RESV_REFCOUNT) >>> 2] = 1;
    return new Resv(sync, offset, true);
  }

  /**
   * Another thread's view of the object at `offset`, taking a reference.
   * EINVAL, nothing touched, unless a live reservation object (of
   * `generation`, when given) starts there.
   */
  static attach(sync: Sync, offset: number, generation?: number): Resv {
    getRecord(sync.arena, offset, RecordType.resv, RESV_REFCOUNT, "dma_resv_get", "EINVAL", generation,
      () => new Resv(sync, offset, true).put());
    return new Resv(sync, offset, true);
  }

  /** A token for another thread: Resv.import (or lab.import) there; holds a reference until then. */
  share(): ShareToken<"resv"> {
    return sendFlight(this.sync, "resv", this.offset, () => { Atomics.add(this.sync.i32, (this.offset + RESV_REFCOUNT) >>> 2, 1); });
  }

  /** This thread's owned view of a shared reservation object (EINVAL/EBADF for a bad or spent token). */
  static import(lab: { sync: Sync }, token: ShareToken<"resv">): Resv {
    return receiveFlight(lab.sync, token, "resv", "dma_resv_import", (t) => new Resv(lab.sync, t.offset, true));
  }

  private slot(i: number): { fence: number; usage: ResvUsage } {
    const s = this.rec.word(RESV_SLOTS) + i * SLOT_SIZE;
    return { fence: this.sync.u32[(s + SLOT_FENCE) >>> 2], usage: this.sync.u32[(s + SLOT_USAGE) >>> 2] as ResvUsage };
  }

  private setSlot(i: number, fence: number, usage: number): void {
    const s = this.rec.word(RESV_SLOTS) + i * SLOT_SIZE;
    this.sync.u32[(s + SLOT_FENCE) >>> 2] = fence;
    this.sync.u32[(s + SLOT_USAGE) >>> 2] = usage;
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

  // ---- under the lock ------------------------------------------------------

  /** dma_resv_reserve_fences: room for n more. */
  reserveFences(n: number): void {
    if (!Number.isInteger(n) || n <= 0) {
      throw new DmaBufError("EINVAL", "dma_resv_reserve_fences", `count ${n} must be a positive integer`);
    }
    const count = this.rec.word(RESV_COUNT);
    const capacity = this.rec.word(RESV_CAPACITY);
    if (this.rec.word(RESV_SLOTS) !== 0 && count + n <= capacity) return;
    const wanted = this.rec.word(RESV_SLOTS) !== 0 ? Math.max(count + n, 2 * capacity) : Math.max(4, 2 ** Math.ceil(Math.log2(n)));
    const heap = this.sync.arena.syncHeap;
    const order = heap.orderFor(wanted * SLOT_SIZE);
    const block = this.sync.allocRecord(RecordType.resvSlots, wanted * SLOT_SIZE, "dma_resv_reserve_fences");
    const newCapacity = (heap.granuleBytes * 2 ** order) / SLOT_SIZE;
    // Copy the pending entries; signalled ones are dropped (and put).
    const old = this.rec.word(RESV_SLOTS);
    let kept = 0;
    const dropped: number[] = [];
    for (let i = 0; i < count; i++) {
      const { fence, usage } = this.slot(i);
      if (statusAt(this.sync, fence) !== 0) {
        dropped.push(fence);
        continue;
      }
      this.sync.u32[(block + kept * SLOT_SIZE + SLOT_FENCE) >>> 2] = fence;
      this.sync.u32[(block + kept * SLOT_SIZE + SLOT_USAGE) >>> 2] = usage;
      kept++;
    }
    this.rec.setWord(RESV_SLOTS, block);
    this.rec.setWord(RESV_CAPACITY, newCapacity);
    this.rec.setWord(RESV_COUNT, kept);
    this.rec.setWord(RESV_GENERATION, this.rec.word(RESV_GENERATION) + 1);
    if (old !== 0) this.sync.freeRecord(old, RecordType.resvSlots);
    for (const f of dropped) this.sync.unref(f);
  }

  /** dma_resv_add_fence: takes a new reference on the fence. */
  addFence(fence: Fence, usage: ResvUsage): void {
    checkUsage(usage, "dma_resv_add_fence");
    if (fence.kind === FENCE_KIND_ARRAY || fence.kind === FENCE_KIND_CHAIN) {
      throw new DmaBufError("EINVAL", "dma_resv_add_fence", `fence ${fence.describe()} is a container; add its fences`);
    }
    const { sync } = this;
    const f = fence.offset;
    const count = this.rec.word(RESV_COUNT);
    for (let i = 0; i < count; i++) {
      const old = this.slot(i);
      const replace = (sameContextAt(sync, old.fence, f) && old.usage >= usage && (old.fence === f || isLaterAt(sync, f, old.fence))) ||
        statusAt(sync, old.fence) !== 0;
      if (replace) {
        this.sync.ref(fence.offset);
        this.setSlot(i, fence.offset, usage);
        this.sync.unref(old.fence);
        return;
      }
    }
    if (this.rec.word(RESV_SLOTS) === 0 || count >= this.rec.word(RESV_CAPACITY)) {
      throw new DmaBufError("ENOSPC", "dma_resv_add_fence", `no reserved slot for fence ${fence.describe()}; call reserveFences() first`);
    }
    this.sync.ref(fence.offset);
    this.setSlot(count, fence.offset, usage);
    this.rec.setWord(RESV_COUNT, count + 1);
  }

  /** dma_resv_for_each_fence: entries with usage <= u, signalled ones included (borrowed). */
  *iter(usage: ResvUsage): Generator<ResvEntry> {
    checkUsage(usage, "dma_resv_iter");
    let first = true;
    for (let i = 0; i < this.rec.word(RESV_COUNT); i++) {
      const s = this.slot(i);
      if (s.usage > usage) continue;
      yield { fence: this.sync.view(s.fence, false), usage: s.usage, restarted: first };
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
      const next = this.withLock(() => {
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
          return { fence: this.sync.view(s.fence, false).get(), usage: s.usage };
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
    return this.withLock(() => this.pending(usage));
  }

  /** Under the lock: owned views of the pending fences with usage <= u. */
  private pending(usage: ResvUsage): Fence[] {
    const { sync } = this;
    const out: Fence[] = [];
    const slots = this.rec.word(RESV_SLOTS);
    const count = this.rec.word(RESV_COUNT);
    for (let i = 0; i < count; i++) {
      const s = slots + i * SLOT_SIZE;
      if (sync.u32[(s + SLOT_USAGE) >>> 2] > usage) continue;
      const f = sync.u32[(s + SLOT_FENCE) >>> 2];
      if (statusAt(sync, f) !== 0) continue;
      sync.ref(f);
      out.push(sync.view(f, true));
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
  publishAccess(own: Fence, write: boolean, nonblock: boolean, syscall: string): Fence[] {
    this.lock();
    let deps: Fence[] = [];
    try {
      deps = this.pending(usageRw(write));
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
    return this.withLock(() => {
      for (let i = 0; i < this.rec.word(RESV_COUNT); i++) {
        const s = this.slot(i);
        if (s.usage <= usage && statusAt(this.sync, s.fence) === 0) return false;
      }
      return true;
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

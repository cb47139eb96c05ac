/*
 * A buffer queue in the arena: a fixed set of dma-bufs cycling between a
 * producer and a consumer, as V4L2's QBUF/DQBUF, Android's BufferQueue and
 * a Vulkan swapchain's acquire/present do. This module is the shared state
 * and its protocol, by buffer index; src/api/queue.ts is the object API.
 *
 *   producer: dequeue() a free buffer (with the consumer's release fence),
 *             fill it, queue(i, fence) it (the fence: when its content is
 *             ready, e.g. a device job's out-fence; 0 if it is ready now)
 *   consumer: acquire() the oldest queued buffer (with that fence), read
 *             it, release(i, fence) it (the fence: when the read is done)
 *
 * Contract: one producer side and one consumer side at a time (each may be
 * any thread, and move between threads). Buffers come back in the order
 * they were queued (FIFO). A call on a buffer in the wrong state (queue()
 * of a buffer not dequeued, release() of one not acquired) is EINVAL with
 * nothing changed; each buffer's state word is changed by one
 * compareExchange, so two threads playing the same side cannot both take
 * one buffer. dequeue() and acquire() wait at most timeoutMs (ETIMEDOUT;
 * 0: EAGAIN at once when nothing is there).
 * Fences: a slot holds one reference on the fence that travels with its
 * buffer (QSLOT_FENCE); dequeue() and acquire() hand that reference to the
 * caller. Implicit sync stays correct because the object API also adds a
 * queued fence to the buffer's reservation object as a writer and a
 * release fence as a reader (DMA_BUF_IOCTL_IMPORT_SYNC_FILE), so a thread
 * that reads or writes through the read/write path or SYNC waits for them.
 *
 * Record (QUEUE_*, type bufferQueue in the sync heap, 64-byte aligned):
 * line 0 is written once at creation (and the refcount); line 1 holds the words only the
 * producer writes, line 2 those only the consumer writes, so the two sides
 * do not bounce one line on every call; then one slot per buffer and the
 * two rings of buffer indices. Counters are free-running u32s; a ring's
 * capacity is a power of two >= buffers, so neither ring can overflow
 * (at most `buffers` indices are ever in both).
 */
import { DmaBufError } from "../errno.js";
import { canBlock, nowMs, waitUntil, waitUntilAsync } from "../memory/futex.js";
import { RecordType } from "../memory/record.js";
import type { Sync } from "../sync/sync.js";
import { DmaBufRecord } from "./dma_buf.js";

// Line 0: written at creation (the record's type and generation are record.ts's, outside it).
export const QUEUE_REFCOUNT = 4;
export const QUEUE_COUNT = 8;
export const QUEUE_BYTES = 12;
export const QUEUE_MASK = 16;
// Line 1: the producer's words.
/** Buffers queued so far: the producer's publish point. */
export const QUEUE_FILLED_HEAD = 64;
/** Buffers dequeued so far. */
export const QUEUE_FREE_TAIL = 68;
/** Producers asleep on QUEUE_FREE_HEAD. */
export const QUEUE_PRODUCER_WAITERS = 72;
// Line 2: the consumer's words.
/** Buffers released so far: the consumer's publish point. */
export const QUEUE_FREE_HEAD = 128;
/** Buffers acquired so far. */
export const QUEUE_FILLED_TAIL = 132;
/** Consumers asleep on QUEUE_FILLED_HEAD. */
export const QUEUE_CONSUMER_WAITERS = 136;
// Line 3 on: slots, then the filled ring and the free ring.
export const QUEUE_SLOTS = 192;
export const QSLOT_BUFFER = 0;
export const QSLOT_STATE = 4;
export const QSLOT_FENCE = 8;
export const QSLOT_SIZE = 16;

/** V4L2's VIDEO_MAX_FRAME. */
export const QUEUE_MAX_BUFFERS = 64;

export const BUF_FREE = 0;
export const BUF_DEQUEUED = 1;
export const BUF_QUEUED = 2;
export const BUF_ACQUIRED = 3;
const stateNames = ["free", "dequeued", "queued", "acquired"];

const ringCapacity = (n: number): number => 2 ** Math.ceil(Math.log2(n));

/** The record's size for `buffers` buffers. */
export function queueRecordBytes(buffers: number): number {
  return QUEUE_SLOTS + buffers * QSLOT_SIZE + 2 * 4 * ringCapacity(buffers);
}

/** A taken buffer: its index and the fence that came with it (an owned reference, 0 for none). */
export interface Taken {
  index: number;
  fence: number;
}

export class BufferQueueRecord {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  readonly count: number;
  readonly bytes: number;
  private readonly mask: number;
  private readonly filledRing: number;
  private readonly freeRing: number;
  /** Where dequeue() and acquire() put what they took (one per view: each thread has its own view). */
  readonly taken: Taken = { index: 0, fence: 0 };
  /** The waits' tests, made once, so that a wait allocates nothing. */
  private readonly dequeueOne = (): boolean => this.tryDequeue(this.taken);
  private readonly acquireOne = (): boolean => this.tryAcquire(this.taken);
  private readonly hasFilled = (): boolean => Atomics.load(this.i32, this.w(QUEUE_FILLED_HEAD)) !== this.i32[this.w(QUEUE_FILLED_TAIL)];
  private readonly hasFree = (): boolean => Atomics.load(this.i32, this.w(QUEUE_FREE_HEAD)) !== this.i32[this.w(QUEUE_FREE_TAIL)];

  private constructor(readonly sync: Sync, readonly offset: number) {
    this.i32 = sync.i32;
    this.u32 = sync.u32;
    this.count = this.u32[this.w(QUEUE_COUNT)];
    this.bytes = this.u32[this.w(QUEUE_BYTES)];
    this.mask = this.u32[this.w(QUEUE_MASK)];
    this.filledRing = offset + QUEUE_SLOTS + this.count * QSLOT_SIZE;
    this.freeRing = this.filledRing + 4 * (this.mask + 1);
  }

  private w(word: number): number {
    return (this.offset + word) >>> 2;
  }

  private slot(i: number, word: number): number {
    return (this.offset + QUEUE_SLOTS + i * QSLOT_SIZE + word) >>> 2;
  }

  /** A new queue over `buffers` (it takes a reference on each), every one free. */
  static create(sync: Sync, buffers: DmaBufRecord[]): BufferQueueRecord {
    const n = buffers.length;
    if (!Number.isInteger(n) || n < 1 || n > QUEUE_MAX_BUFFERS) {
      throw new DmaBufError("EINVAL", "buffer_queue_create", `buffers ${n} is not in 1..${QUEUE_MAX_BUFFERS}`);
    }
    const offset = sync.allocRecord(RecordType.bufferQueue, queueRecordBytes(n), "buffer_queue_create");
    const u32 = sync.u32;
    u32.fill(0, offset >>> 2, (offset + queueRecordBytes(n)) >>> 2);
    u32[(offset + QUEUE_COUNT) >>> 2] = n;
    u32[(offset + QUEUE_BYTES) >>> 2] = buffers[0].size;
    u32[(offset + QUEUE_MASK) >>> 2] = ringCapacity(n) - 1;
    const q = new BufferQueueRecord(sync, offset);
    buffers.forEach((b, i) => {
      u32[q.slot(i, QSLOT_BUFFER)] = b.get().offset; // the queue's reference, dropped in put()
      u32[(q.freeRing >>> 2) + i] = i;
    });
    u32[q.w(QUEUE_FREE_HEAD)] = n;
    // Publish: the record reaches other threads only through share(), after this store.
    Atomics.store(u32, q.w(QUEUE_REFCOUNT), 1);
    return q;
  }

  /** A view for a reference already held (a share() token's): put() drops it. */
  static adopt(sync: Sync, offset: number): BufferQueueRecord {
    sync.arena.records.check(offset, RecordType.bufferQueue, "buffer_queue");
    return new BufferQueueRecord(sync, offset);
  }

  /** Takes another reference (for a share() token). */
  ref(): void {
    Atomics.add(this.i32, this.w(QUEUE_REFCOUNT), 1);
  }

  /** The record offset of buffer i. */
  buffer(i: number): number {
    return this.u32[this.slot(i, QSLOT_BUFFER)];
  }

  state(i: number): string {
    return stateNames[Atomics.load(this.u32, this.slot(i, QSLOT_STATE))];
  }

  /** Buffers queued and not yet acquired (a snapshot). */
  get queued(): number {
    return (Atomics.load(this.u32, this.w(QUEUE_FILLED_HEAD)) - Atomics.load(this.u32, this.w(QUEUE_FILLED_TAIL))) >>> 0;
  }

  /** Buffers released and not yet dequeued (a snapshot). */
  get free(): number {
    return (Atomics.load(this.u32, this.w(QUEUE_FREE_HEAD)) - Atomics.load(this.u32, this.w(QUEUE_FREE_TAIL))) >>> 0;
  }

  // ---- the rings ----------------------------------------------------------------

  /** Takes the oldest entry of a ring whose tail is ours; -1 when it is empty. */
  private pop(ring: number, headWord: number, tailWord: number, from: number, to: number, syscall: string, into: Taken): boolean {
    const tail = this.u32[this.w(tailWord)];
    // Acquire: the entry (and the slot's fence) were written before the head
    // that covers them was published with a seq-cst store.
    if (Atomics.load(this.u32, this.w(headWord)) === tail) return false;
    const i = this.u32[(ring >>> 2) + (tail & this.mask)];
    if (Atomics.compareExchange(this.u32, this.slot(i, QSLOT_STATE), from, to) !== from) {
      throw new DmaBufError("EBUSY", syscall, `buffer ${i} is ${this.state(i)}, not ${stateNames[from]}: another thread is on this side of the queue`);
    }
    into.index = i;
    into.fence = this.u32[this.slot(i, QSLOT_FENCE)];
    this.u32[this.slot(i, QSLOT_FENCE)] = 0; // its reference goes to the caller
    // Publish the tail (seq-cst): only this side reads it, for its snapshots.
    Atomics.store(this.u32, this.w(tailWord), tail + 1);
    return true;
  }

  /** Appends buffer i (in state `from`) with `fence` (a reference the slot takes over) and wakes the other side. */
  private push(ring: number, headWord: number, waitersWord: number, i: number, fence: number, from: number, to: number, syscall: string): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw new DmaBufError("EINVAL", syscall, `buffer index ${i} is not in 0..${this.count - 1}`);
    }
    if (Atomics.compareExchange(this.u32, this.slot(i, QSLOT_STATE), from, to) !== from) {
      throw new DmaBufError("EINVAL", syscall, `buffer ${i} is ${this.state(i)}, not ${stateNames[from]}`);
    }
    const head = this.u32[this.w(headWord)];
    this.u32[this.slot(i, QSLOT_FENCE)] = fence;
    this.u32[(ring >>> 2) + (head & this.mask)] = i;
    // Release: the seq-cst store of the head publishes the entry and the
    // fence above to the side that loads the head. The waiter count is read
    // after it: a waiter counts itself before its last look at the head, so
    // either it sees the new head or this sees it and wakes it.
    Atomics.store(this.u32, this.w(headWord), head + 1);
    if (Atomics.load(this.i32, this.w(waitersWord)) !== 0) Atomics.notify(this.i32, this.w(headWord));
  }

  // ---- producer -------------------------------------------------------------------

  /** VIDIOC_DQBUF for output: a free buffer and its release fence into `into`; false when none (nonblocking). */
  tryDequeue(into: Taken): boolean {
    return this.pop(this.freeRing, QUEUE_FREE_HEAD, QUEUE_FREE_TAIL, BUF_FREE, BUF_DEQUEUED, "buffer_queue_dequeue", into);
  }

  /** A free buffer into `taken`, waiting up to timeoutMs. */
  dequeue(timeoutMs: number): void {
    this.take(this.dequeueOne, QUEUE_FREE_HEAD, QUEUE_PRODUCER_WAITERS, this.hasFree, timeoutMs, "buffer_queue_dequeue");
  }

  /** dequeue() as a Promise of what it took (a copy: `taken` may be reused before the caller resumes). */
  dequeueAsync(timeoutMs: number): Promise<Taken> {
    return this.takeAsync(this.dequeueOne, QUEUE_FREE_HEAD, QUEUE_PRODUCER_WAITERS, this.hasFree, timeoutMs, "buffer_queue_dequeue");
  }

  /** VIDIOC_QBUF: hands dequeued buffer i to the consumer, with `fence` (a reference it takes over; 0 for none). */
  queue(i: number, fence: number): void {
    this.push(this.filledRing, QUEUE_FILLED_HEAD, QUEUE_CONSUMER_WAITERS, i, fence, BUF_DEQUEUED, BUF_QUEUED, "buffer_queue_queue");
  }

  // ---- consumer -------------------------------------------------------------------

  /** The oldest queued buffer and its fence into `into`; false when none (nonblocking). */
  tryAcquire(into: Taken): boolean {
    return this.pop(this.filledRing, QUEUE_FILLED_HEAD, QUEUE_FILLED_TAIL, BUF_QUEUED, BUF_ACQUIRED, "buffer_queue_acquire", into);
  }

  /** The oldest queued buffer into `taken`, waiting up to timeoutMs. */
  acquire(timeoutMs: number): void {
    this.take(this.acquireOne, QUEUE_FILLED_HEAD, QUEUE_CONSUMER_WAITERS, this.hasFilled, timeoutMs, "buffer_queue_acquire");
  }

  acquireAsync(timeoutMs: number): Promise<Taken> {
    return this.takeAsync(this.acquireOne, QUEUE_FILLED_HEAD, QUEUE_CONSUMER_WAITERS, this.hasFilled, timeoutMs, "buffer_queue_acquire");
  }

  /** Returns acquired buffer i to the producer, with `fence` (a reference it takes over; 0 for none). */
  release(i: number, fence: number): void {
    this.push(this.freeRing, QUEUE_FREE_HEAD, QUEUE_PRODUCER_WAITERS, i, fence, BUF_ACQUIRED, BUF_FREE, "buffer_queue_release");
  }

  // ---- waiting --------------------------------------------------------------------

  private take(tryTake: () => boolean, head: number, waiters: number, ready: () => boolean, timeoutMs: number, syscall: string): void {
    const deadline = deadlineOf(timeoutMs, syscall);
    if (tryTake()) return; // the common case: nothing allocated
    do {
      if (timeoutMs === 0) throw empty(syscall);
      if (!canBlock()) throw new DmaBufError("EPERM", syscall, "this thread may not block (a browser's main thread); use the Async form");
      if (!waitUntil(this.i32, this.w(head), this.w(waiters), ready, deadline, syscall)) throw timedOut(syscall, timeoutMs);
    } while (!tryTake()); // ready, unless another thread on this side took it first
  }

  private async takeAsync(tryTake: () => boolean, head: number, waiters: number, ready: () => boolean, timeoutMs: number, syscall: string): Promise<Taken> {
    const deadline = deadlineOf(timeoutMs, syscall);
    for (;;) {
      if (tryTake()) return { ...this.taken };
      if (timeoutMs === 0) throw empty(syscall);
      if (!(await waitUntilAsync(this.i32, this.w(head), this.w(waiters), ready, deadline))) throw timedOut(syscall, timeoutMs);
    }
  }

  // ---- references -----------------------------------------------------------------

  /** Drops a reference; the last one drops every fence and buffer the queue holds and frees the record. */
  put(): void {
    if (Atomics.sub(this.i32, this.w(QUEUE_REFCOUNT), 1) !== 1) return;
    for (let i = 0; i < this.count; i++) {
      const fence = this.u32[this.slot(i, QSLOT_FENCE)];
      if (fence !== 0) this.sync.unref(fence);
      DmaBufRecord.adopt(this.sync, this.buffer(i)).put();
    }
    this.sync.freeRecord(this.offset, RecordType.bufferQueue);
  }
}

function deadlineOf(timeoutMs: number, syscall: string): number {
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new DmaBufError("EINVAL", syscall, `timeoutMs ${String(timeoutMs)} must be a number >= 0`);
  }
  return nowMs() + timeoutMs;
}

const empty = (syscall: string): DmaBufError =>
  new DmaBufError("EAGAIN", syscall, syscall.endsWith("dequeue") ? "no free buffer (timeoutMs 0)" : "no queued buffer (timeoutMs 0)");

const timedOut = (syscall: string, timeoutMs: number): DmaBufError =>
  new DmaBufError("ETIMEDOUT", syscall, `${syscall.endsWith("dequeue") ? "no buffer was released" : "no buffer was queued"} within ${timeoutMs} ms`);

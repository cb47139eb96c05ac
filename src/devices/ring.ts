/*
 * A device's job ring: a bounded queue of job-record offsets in the sync
 * heap, many producers (any thread that submits) and one consumer (the
 * device's worker). Like a hardware ring buffer, the consumer never takes a
 * lock: it reads HEAD, takes the entry at TAIL and advances TAIL.
 *
 * Record (RING_*, in the sync heap):
 *   RING_HEAD      u32: entries ever pushed (free-running; slot = index & mask);
 *                  written by the producer holding RING_LOCK, read by the
 *                  consumer, which futex-waits on it when the ring is empty
 *   RING_TAIL      u32: entries ever consumed; written by the consumer only,
 *                  producers futex-wait on it when the ring is full
 *   RING_CAPACITY  u32: a power of two
 *   RING_PUSHED    u32: statistics: pushes (under the lock)
 *   RING_FULL_WAITS u32: pushes that found the ring full and waited
 *   RING_CONSUMER_WAITERS i32: 1 while the consumer sleeps on HEAD
 *   RING_PRODUCER_WAITERS i32: producers sleeping on TAIL (a full ring)
 *   RING_LOCK      a Mutex (32 bytes): serializes producers
 *   RING_SLOTS     u32[capacity]: job-record offsets
 *
 * Ordering: a producer stores the slot, then publishes it with
 * Atomics.store(HEAD) (seq-cst: the slot store happens-before any load of
 * the new HEAD) and notifies HEAD if the consumer counts itself waiting.
 * The consumer loads HEAD with Atomics.load before reading the slot, and
 * frees the slot by Atomics.store(TAIL) after reading it, then notifies
 * TAIL if producers wait. Waiters count themselves before their last check
 * (futex.ts waitUntil), so with seq-cst atomics on both sides no wake-up is
 * lost. Indices are free-running u32s compared by difference, so
 * wrap-around at 2^32 is fine.
 */
import { RecordType } from "../memory/record.js";
import { DmaBufError } from "../errno.js";
import { futexWake, nowMs, waitUntil, waitUntilAsync } from "../memory/futex.js";
import { MUTEX_BYTES, Mutex } from "../memory/mutex.js";
import type { Sync } from "../sync/sync.js";

export const RING_HEAD = 0;
export const RING_TAIL = 4;
export const RING_CAPACITY = 8;
export const RING_PUSHED = 12;
export const RING_FULL_WAITS = 16;
export const RING_CONSUMER_WAITERS = 20;
export const RING_PRODUCER_WAITERS = 24;
export const RING_LOCK = 32;
export const RING_SLOTS = RING_LOCK + MUTEX_BYTES;

export const DEFAULT_RING_ENTRIES = 256;

export class JobRing {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly lock: Mutex;
  readonly capacity: number;

  /** A view of the ring at `offset`: EINVAL, nothing touched, unless a live ring record starts there. */
  constructor(readonly sync: Sync, readonly offset: number) {
    sync.arena.records.check(offset, RecordType.ring, "ring_get");
    this.i32 = sync.i32;
    this.u32 = sync.u32;
    this.lock = new Mutex(sync.arena.buffer, offset + RING_LOCK);
    this.capacity = this.u32[(offset + RING_CAPACITY) >>> 2];
  }

  /** A new empty ring of `entries` slots (a power of two, 2..65536). */
  static create(sync: Sync, entries = DEFAULT_RING_ENTRIES): JobRing {
    if (!Number.isInteger(entries) || entries < 2 || entries > 65536 || (entries & (entries - 1)) !== 0) {
      throw new DmaBufError("EINVAL", "ring_create", `ring size ${entries} must be a power of two in 2..65536`);
    }
    const offset = sync.allocRecord(RecordType.ring, RING_SLOTS + 4 * entries, "ring_create");
    sync.u32[(offset + RING_CAPACITY) >>> 2] = entries;
    new Mutex(sync.arena.buffer, offset + RING_LOCK).init();
    return new JobRing(sync, offset);
  }

  destroy(): void {
    this.sync.freeRecord(this.offset, RecordType.ring);
  }

  private index(word: number): number {
    return (this.offset + word) >>> 2;
  }

  /** Entries pushed and not yet consumed. */
  get pending(): number {
    return (Atomics.load(this.u32, this.index(RING_HEAD)) - Atomics.load(this.u32, this.index(RING_TAIL))) >>> 0;
  }

  /**
   * Pushes a job-record offset. A full ring is waited on for up to
   * `timeoutMs` (0: not at all), then EAGAIN with nothing pushed; ENODEV
   * with nothing pushed as soon as `stopped()` (checked before each wait and
   * at each wake-up; wakeProducers() wakes the waiters to check it).
   */
  push(job: number, timeoutMs: number, stopped: () => boolean = () => false): void {
    const deadline = nowMs() + timeoutMs;
    let waited = false;
    for (;;) {
      this.lock.lock();
      const head = this.u32[this.index(RING_HEAD)];
      if (((head - Atomics.load(this.u32, this.index(RING_TAIL))) >>> 0) < this.capacity) {
        this.u32[this.index(RING_SLOTS) + (head & (this.capacity - 1))] = job;
        // Publish: the slot store above is ordered before the new HEAD.
        Atomics.store(this.u32, this.index(RING_HEAD), (head + 1) >>> 0);
        this.u32[this.index(RING_PUSHED)]++;
        if (waited) this.u32[this.index(RING_FULL_WAITS)]++;
        this.lock.unlock();
        if (Atomics.load(this.i32, this.index(RING_CONSUMER_WAITERS)) !== 0) futexWake(this.i32, this.index(RING_HEAD));
        return;
      }
      this.lock.unlock();
      // A consumer that stopped for good never frees a slot: ENODEV at once, not after the timeout.
      if (stopped()) throw new DmaBufError("ENODEV", "ring_push", "the device consuming this ring is dead");
      if (nowMs() >= deadline) {
        throw new DmaBufError("EAGAIN", "ring_push", `the job ring (${this.capacity} entries) stayed full for ${timeoutMs} ms`);
      }
      waited = true;
      waitUntil(this.i32, this.index(RING_TAIL), this.index(RING_PRODUCER_WAITERS),
        () => this.pending < this.capacity || stopped(), deadline, "ring_push");
    }
  }

  /** Wakes every producer waiting for room (the consumer stopped for good: they re-check and give up). */
  wakeProducers(): void {
    Atomics.notify(this.i32, this.index(RING_TAIL));
  }

  /** Consumer: the next entry without taking it, or 0 when the ring is empty. */
  peek(): number {
    const tail = this.u32[this.index(RING_TAIL)];
    if (Atomics.load(this.u32, this.index(RING_HEAD)) === tail) return 0;
    return this.u32[this.index(RING_SLOTS) + (tail & (this.capacity - 1))];
  }

  /** Consumer: frees the entry peek() returned. */
  advance(): void {
    const tail = this.u32[this.index(RING_TAIL)];
    // Publish: the slot has been read; producers may now reuse it.
    Atomics.store(this.u32, this.index(RING_TAIL), (tail + 1) >>> 0);
    if (Atomics.load(this.i32, this.index(RING_PRODUCER_WAITERS)) !== 0) futexWake(this.i32, this.index(RING_TAIL));
  }

  /** Consumer: blocks until the ring is not empty or timeoutMs passes. */
  waitForWork(timeoutMs: number): boolean {
    return waitUntil(this.i32, this.index(RING_HEAD), this.index(RING_CONSUMER_WAITERS),
      () => this.pending > 0, nowMs() + timeoutMs, "ring_wait");
  }

  /** waitForWork() without blocking the thread: its event loop keeps running. */
  waitForWorkAsync(timeoutMs: number): Promise<boolean> {
    return waitUntilAsync(this.i32, this.index(RING_HEAD), this.index(RING_CONSUMER_WAITERS),
      () => this.pending > 0, nowMs() + timeoutMs);
  }

  stats(): { capacity: number; pending: number; pushed: number; fullWaits: number } {
    return {
      capacity: this.capacity,
      pending: this.pending,
      pushed: this.u32[this.index(RING_PUSHED)],
      fullWaits: this.u32[this.index(RING_FULL_WAITS)],
    };
  }
}

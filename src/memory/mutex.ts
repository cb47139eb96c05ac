/*
 * A mutex in shared memory that any thread can take (Drepper's three-state
 * futex mutex), with statistics. Storage-first: MUTEX_BYTES of the arena at
 * a byte offset; any thread rebuilds the view with new Mutex(memory, offset).
 *
 *   MUTEX_STATE         0 unlocked, 1 locked, 2 locked with waiters
 *   MUTEX_ACQUISITIONS  u32, updated by the holder
 *   MUTEX_CONTENDED     u32, acquisitions that had to wait, by the holder
 *   MUTEX_WAIT_MS        f64, total time spent waiting, by the holder
 *   MUTEX_OWNER         i32, the holder's threadToken(), 0 when free
 *
 * lock() gives up after `timeoutMs` (default 10 s) with EDEADLK, so that a
 * holder that died cannot hang every other thread; a thread taking a lock it
 * already holds (the mutex is not recursive) gets EDEADLK at once. Where a
 * thread may not block (a browser's main thread) lock() spins instead of
 * sleeping (holders are short); lockAsync()/withAsync() are the Promise
 * forms, which sleep in Atomics.waitAsync. The statistics are written
 * under the lock and read without it: a reader may see them a moment stale.
 */
import { DmaBufError, hex } from "../errno.js";
import { futexWait, futexWake, keepingAlive, nowMs, threadToken } from "./futex.js";

export const MUTEX_BYTES = 32;
export const MUTEX_STATE = 0;
export const MUTEX_ACQUISITIONS = 4;
export const MUTEX_CONTENDED = 8;
export const MUTEX_WAIT_MS = 16;
export const MUTEX_OWNER = 24;

const UNLOCKED = 0;
const LOCKED = 1;
const CONTENDED = 2;
const SPINS = 64;
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

const viewsOf = new WeakMap<ArrayBufferLike, { i32: Int32Array; u32: Uint32Array; f64: Float64Array }>();

export interface MutexStats {
  acquisitions: number;
  contended: number;
  waitMs: number;
}

export class Mutex {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;
  private readonly state: number;

  constructor(buffer: ArrayBufferLike, readonly offset: number) {
    if (offset % 8 !== 0) throw new RangeError(`mutex offset ${hex(offset)} is not 8-byte aligned`);
    // Mutex views are made per call by the objects that embed one (resv,
    // timelines): the typed arrays over a buffer are made once per thread.
    let v = viewsOf.get(buffer);
    if (v === undefined) {
      v = { i32: new Int32Array(buffer), u32: new Uint32Array(buffer), f64: new Float64Array(buffer) };
      viewsOf.set(buffer, v);
    }
    this.i32 = v.i32;
    this.u32 = v.u32;
    this.f64 = v.f64;
    this.state = (offset + MUTEX_STATE) >>> 2;
  }

  /** Initialises the storage. Only before the mutex is shared. */
  init(): void {
    this.i32.fill(0, this.offset >>> 2, (this.offset + MUTEX_BYTES) >>> 2);
  }

  /** Takes the lock if it is free, without waiting; whether it did. */
  tryLock(): boolean {
    // Acquire, as in lock().
    if (Atomics.compareExchange(this.i32, this.state, UNLOCKED, LOCKED) !== UNLOCKED) return false;
    this.acquired();
    return true;
  }

  lock(timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): void {
    // Acquire: a successful compareExchange is sequentially consistent, so
    // everything the previous holder wrote before its release is visible.
    if (Atomics.compareExchange(this.i32, this.state, UNLOCKED, LOCKED) === UNLOCKED) {
      this.acquired();
      return;
    }
    if (this.heldByMe()) {
      throw new DmaBufError("EDEADLK", "mutex_lock", `mutex at ${hex(this.offset)} is already held by this thread`);
    }
    for (const left of this.contended(timeoutMs)) futexWait(this.i32, this.state, CONTENDED, left);
  }

  /**
   * lock() as a Promise: sleeps in Atomics.waitAsync, so it works on every
   * thread (a browser's main thread included) and lets the event loop run.
   * A lock held by another task of this thread is waited for, not EDEADLK:
   * ownership is per thread, and async holders may await while holding.
   */
  async lockAsync(timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): Promise<void> {
    if (Atomics.compareExchange(this.i32, this.state, UNLOCKED, LOCKED) === UNLOCKED) {
      this.acquired();
      return;
    }
    for (const left of this.contended(timeoutMs)) {
      const r = Atomics.waitAsync(this.i32, this.state, CONTENDED, left);
      if (r.async) await keepingAlive(r.value);
    }
  }

  /**
   * The contended path of both forms: spins a little, then marks the lock
   * contended (so that the holder's unlock wakes a sleeper) and yields the
   * time left whenever it must sleep on the state word; EDEADLK at the
   * deadline. Ends holding the lock, with the contention counted.
   */
  private *contended(timeoutMs: number): Generator<number, void> {
    const start = nowMs();
    let c = LOCKED;
    for (let i = 0; i < SPINS && c !== UNLOCKED; i++) {
      c = Atomics.compareExchange(this.i32, this.state, UNLOCKED, LOCKED);
    }
    if (c !== UNLOCKED) {
      const deadline = start + timeoutMs;
      while (Atomics.exchange(this.i32, this.state, CONTENDED) !== UNLOCKED) {
        const left = deadline - nowMs();
        // !(left > 0) rather than left <= 0: a NaN timeout must not become
        // an unbounded wait (which reads NaN as +Infinity).
        if (!(left > 0)) {
          throw new DmaBufError("EDEADLK", "mutex_lock",
            `mutex at ${hex(this.offset)} still held after ${timeoutMs} ms`);
        }
        yield left;
      }
    }
    this.acquired();
    this.u32[(this.offset + MUTEX_CONTENDED) >>> 2]++;
    this.f64[(this.offset + MUTEX_WAIT_MS) >>> 3] += nowMs() - start;
  }

  private acquired(): void {
    this.i32[(this.offset + MUTEX_OWNER) >>> 2] = threadToken();
    this.u32[(this.offset + MUTEX_ACQUISITIONS) >>> 2]++;
  }

  /** Whether this thread holds the lock. */
  heldByMe(): boolean {
    return Atomics.load(this.i32, this.state) !== UNLOCKED &&
      this.i32[(this.offset + MUTEX_OWNER) >>> 2] === threadToken();
  }

  unlock(): void {
    this.i32[(this.offset + MUTEX_OWNER) >>> 2] = 0;
    // Release: Atomics.sub is sequentially consistent, so every write made
    // under the lock is visible to the next holder.
    if (Atomics.sub(this.i32, this.state, 1) !== LOCKED) {
      Atomics.store(this.i32, this.state, UNLOCKED);
      futexWake(this.i32, this.state, 1);
    }
  }

  /** Runs fn under the lock. */
  with<T>(fn: () => T, timeoutMs?: number): T {
    this.lock(timeoutMs);
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }

  /** Runs fn (which may await) under the lock, taken with lockAsync(). */
  async withAsync<T>(fn: () => T | Promise<T>, timeoutMs?: number): Promise<T> {
    await this.lockAsync(timeoutMs);
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }

  stats(): MutexStats {
    return {
      acquisitions: this.u32[(this.offset + MUTEX_ACQUISITIONS) >>> 2],
      contended: this.u32[(this.offset + MUTEX_CONTENDED) >>> 2],
      waitMs: this.f64[(this.offset + MUTEX_WAIT_MS) >>> 3],
    };
  }
}

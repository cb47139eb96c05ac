/*
 * IoRing: a view of one io_uring's shared block (layout and memory ordering
 * in io_uring.ts), rebuilt in any thread from (arena, offset). Both sides use
 * it: the application (liburing.ts) fills SQEs and reads CQEs, the kernel
 * side (kernel.ts, in the submitting thread or the SQ thread) consumes SQEs
 * and posts CQEs.
 *
 * Only one thread at a time plays the kernel side of a ring (it holds
 * CTX_LOCK, uring_lock), and only one plays the application side (liburing's
 * rule: a ring is not shared between threads without the caller's locking).
 */
import { DmaBufError, hex } from "../errno.js";
import type { Arena } from "../memory/arena.js";
import { Mutex } from "../memory/mutex.js";
import {
  CQ_FLAGS, CQ_HEAD, CQ_OVERFLOW, CQ_RING_ENTRIES, CQ_RING_MASK, CQ_TAIL, CQE_FLAGS, CQE_RES, CQE_USER_DATA, CTX_LIVE, CTX_LOCK, CTX_SETUP_FLAGS,
  CTX_SQ_IDLE_MS, CTX_STATE, IOCQE_SIZE, IOSQE_SIZE, ringLayout, SQ_ARRAY, SQ_DROPPED, SQ_FLAGS, SQ_HEAD, SQ_RING_ENTRIES, SQ_RING_MASK, SQ_TAIL,
} from "./io_uring.js";

export class IoRing {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly sqEntries: number;
  readonly cqEntries: number;
  /** Arena offsets of the SQE and CQE arrays. */
  readonly sqes: number;
  readonly cqes: number;
  readonly lock: Mutex;

  constructor(readonly arena: Arena, readonly offset: number) {
    if (!Number.isSafeInteger(offset) || offset <= 0 || offset % 64 !== 0 || !arena.user.contains(offset)) {
      throw new DmaBufError("EINVAL", "io_uring", `no io_uring at ${hex(offset)}`);
    }
    this.u8 = arena.u8;
    this.u32 = arena.u32;
    this.i32 = arena.i32;
    this.sqEntries = this.word(SQ_RING_ENTRIES);
    this.cqEntries = this.word(CQ_RING_ENTRIES);
    if (Atomics.load(this.u32, (offset + CTX_STATE) >>> 2) === 0 || this.sqEntries === 0 || this.cqEntries === 0) {
      throw new DmaBufError("EINVAL", "io_uring", `no io_uring at ${hex(offset)}`);
    }
    const l = ringLayout(this.sqEntries, this.cqEntries);
    this.sqes = offset + l.sqes;
    this.cqes = offset + l.cqes;
    this.lock = new Mutex(arena.buffer, offset + CTX_LOCK);
  }

  /** Lays out a new ring in the block at `offset` (zeroed, ringLayout().bytes long); the state word is its publish point. */
  static init(arena: Arena, offset: number, sq: number, cq: number, setupFlags: number, idleMs: number): IoRing {
    const u32 = arena.u32;
    const w = (off: number, v: number) => { u32[(offset + off) >>> 2] = v; };
    w(SQ_RING_MASK, sq - 1);
    w(SQ_RING_ENTRIES, sq);
    w(CQ_RING_MASK, cq - 1);
    w(CQ_RING_ENTRIES, cq);
    w(CTX_SETUP_FLAGS, setupFlags);
    w(CTX_SQ_IDLE_MS, idleMs);
    new Mutex(arena.buffer, offset + CTX_LOCK).init();
    // Publish: a thread that sees CTX_LIVE sees the words above.
    Atomics.store(u32, (offset + CTX_STATE) >>> 2, CTX_LIVE);
    return new IoRing(arena, offset);
  }

  word(off: number): number {
    return this.u32[(this.offset + off) >>> 2];
  }

  /** The u32 index of a ring word, for Atomics. */
  index(off: number): number {
    return (this.offset + off) >>> 2;
  }

  load(off: number): number {
    return Atomics.load(this.u32, this.index(off));
  }

  store(off: number, v: number): void {
    Atomics.store(this.u32, this.index(off), v >>> 0);
  }

  // ---- the kernel side -------------------------------------------------------

  /** SQEs published and not consumed. The acquire load of SQ_TAIL orders the SQE reads after it. */
  sqPending(): number {
    return (this.load(SQ_TAIL) - this.word(SQ_HEAD)) >>> 0;
  }

  /**
   * The arena offset of the SQE at the ring's head, or -1 when its array slot
   * names an index past the SQE array (counted in SQ_DROPPED). The caller
   * copies what it needs, then calls consumed().
   */
  sqeAtHead(k: number): number {
    const head = (this.word(SQ_HEAD) + k) >>> 0;
    const idx = this.u32[((this.offset + SQ_ARRAY) >>> 2) + (head & (this.sqEntries - 1))];
    if (idx >= this.sqEntries) {
      this.store(SQ_DROPPED, this.word(SQ_DROPPED) + 1);
      return -1;
    }
    return this.sqes + idx * IOSQE_SIZE;
  }

  /** Frees n SQ slots: the release store of SQ_HEAD comes after the SQEs were copied. */
  consumed(n: number): void {
    this.store(SQ_HEAD, this.word(SQ_HEAD) + n);
  }

  /** CQEs posted and not yet seen. */
  cqReady(): number {
    return (this.word(CQ_TAIL) - this.load(CQ_HEAD)) >>> 0;
  }

  /** Posts one CQE; false when the CQ is full (the caller keeps it in its overflow list). */
  postCqe(udLo: number, udHi: number, res: number, flags: number): boolean {
    const tail = this.word(CQ_TAIL);
    if (((tail - this.load(CQ_HEAD)) >>> 0) >= this.cqEntries) return false;
    const at = (this.cqes + (tail & (this.cqEntries - 1)) * IOCQE_SIZE) >>> 2;
    this.u32[at + CQE_USER_DATA / 4] = udLo;
    this.u32[at + CQE_USER_DATA / 4 + 1] = udHi;
    this.i32[at + CQE_RES / 4] = res;
    this.u32[at + CQE_FLAGS / 4] = flags;
    // Publish: the CQE's words before the release store of CQ_TAIL; sleepers in GETEVENTS are woken.
    Atomics.store(this.u32, this.index(CQ_TAIL), (tail + 1) >>> 0);
    Atomics.notify(this.i32, this.index(CQ_TAIL));
    return true;
  }

  setSqFlag(flag: number, on: boolean): void {
    const i = this.index(SQ_FLAGS);
    if (on) Atomics.or(this.u32, i, flag);
    else Atomics.and(this.u32, i, ~flag);
  }

  countOverflow(): void {
    this.store(CQ_OVERFLOW, this.word(CQ_OVERFLOW) + 1);
  }

  get cqFlags(): number {
    return this.word(CQ_FLAGS);
  }
}

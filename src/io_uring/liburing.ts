/*
 * A liburing-shaped helper layer over a Process's io_uring fd: the names and
 * the habits of liburing (functions return -errno instead of throwing where
 * liburing does; the SQ tail is published in io_uring_submit; a CQE is
 * released with io_uring_cqe_seen).
 *
 *   io_uring_queue_init(proc, entries, flags | params)  a ring (throws like io_uring_setup)
 *   io_uring_get_sqe(ring)       the next free SQE (cleared), or null when the SQ is full
 *   io_uring_prep_nop/read/write/readv/writev/read_fixed/write_fixed(sqe, ...)
 *   io_uring_sqe_set_data(sqe, n), io_uring_sqe_set_flags(sqe, flags)
 *   io_uring_submit(ring), io_uring_submit_and_wait(ring, n)   submitted, or -errno
 *   io_uring_peek_cqe(ring), io_uring_wait_cqe(ring), io_uring_wait_cqe_timeout(ring, ms)
 *       { err: 0, cqe } or { err: -errno } (-EAGAIN: none ready; -ETIME: timed out)
 *   io_uring_cqe_seen(ring, cqe), io_uring_register_files/buffers, io_uring_queue_exit
 * Buffers are views of the lab's user memory (their arena offset is the
 * address) or arena offsets; a registered dma-buf is addressed by its
 * iov_uaddr plus the offset into the buffer.
 *
 * Memory ordering: SQEs are written with plain stores and published by the
 * Atomics.store of SQ_TAIL in io_uring_submit; SQPOLL's NEED_WAKEUP is read
 * after that store (see workers/io-sq.ts). CQEs are read after an
 * Atomics.load of CQ_TAIL and released by the Atomics.store of CQ_HEAD.
 */
import { DmaBufError } from "../errno.js";
import type { Process } from "../uapi/process.js";
import {
  CQ_HEAD, CQ_TAIL, CQE_FLAGS, CQE_RES, CQE_USER_DATA, IOCQE_SIZE, IORING_ENTER_GETEVENTS, IORING_ENTER_SQ_WAKEUP, IORING_OP_NOP, IORING_OP_READ,
  IORING_OP_READ_FIXED, IORING_OP_READV, IORING_OP_READV_FIXED, IORING_OP_WRITE, IORING_OP_WRITE_FIXED, IORING_OP_WRITEV, IORING_OP_WRITEV_FIXED, IORING_REGISTER_BUFFERS, IORING_REGISTER_FILES,
  IORING_SETUP_SQPOLL, IORING_SQ_NEED_WAKEUP, IOSQE_SIZE, SQ_ARRAY, SQ_FLAGS, SQ_HEAD, SQ_TAIL, SQE_ADDR, SQE_BUF_INDEX, SQE_FD, SQE_FLAGS, SQE_LEN,
  SQE_OFF, SQE_OPCODE, SQE_USER_DATA, type IoUringParams,
} from "./io_uring.js";
import { IoRing } from "./ring.js";

const U32 = 2 ** 32;
const ETIME = -62;
const EAGAIN = -11;

export class Sqe {
  constructor(readonly ring: IoUring, readonly offset: number) {}
}

export interface Cqe {
  /** The SQE's user_data, as io_uring_sqe_set_data set it. */
  user_data: number;
  /** The result: bytes moved, or a negative errno (the kernel's -EFAULT, -EINVAL, ...). */
  res: number;
  /** IORING_CQE_F_* flags. */
  flags: number;
}

export class IoUring {
  readonly ring: IoRing;
  /** The SQEs handed out by get_sqe and not yet published (liburing's sqe_tail). */
  private sqeTail: number;
  private readonly sqes: Sqe[] = [];

  constructor(readonly proc: Process, readonly fd: number, readonly params: IoUringParams) {
    this.ring = new IoRing(proc.lab.arena, params.ring!);
    this.sqeTail = this.ring.load(SQ_TAIL);
    for (let i = 0; i < this.ring.sqEntries; i++) this.sqes.push(new Sqe(this, this.ring.sqes + i * IOSQE_SIZE));
  }

  get sqpoll(): boolean {
    return ((this.params.flags ?? 0) & IORING_SETUP_SQPOLL) !== 0;
  }

  /** @internal */
  nextSqe(): Sqe | null {
    const { ring } = this;
    // The kernel's release store of SQ_HEAD frees the slots before it.
    if (((this.sqeTail - ring.load(SQ_HEAD)) >>> 0) >= ring.sqEntries) return null;
    const idx = this.sqeTail & (ring.sqEntries - 1);
    this.sqeTail = (this.sqeTail + 1) >>> 0;
    const sqe = this.sqes[idx];
    ring.u8.fill(0, sqe.offset, sqe.offset + IOSQE_SIZE);
    ring.u32[((ring.offset + SQ_ARRAY) >>> 2) + idx] = idx;
    return sqe;
  }

  /** Publishes the SQEs handed out so far; how many are new. */
  flushSq(): number {
    const { ring } = this;
    const tail = ring.word(SQ_TAIL);
    // Publish: the SQEs and their array slots before the release store of SQ_TAIL.
    ring.store(SQ_TAIL, this.sqeTail);
    return (this.sqeTail - tail) >>> 0;
  }
}

export function io_uring_queue_init(proc: Process, entries: number, flagsOrParams: number | IoUringParams = 0): IoUring {
  const params: IoUringParams = typeof flagsOrParams === "number" ? { flags: flagsOrParams } : flagsOrParams;
  const fd = proc.io_uring_setup(entries, params);
  return new IoUring(proc, fd, params);
}

export function io_uring_queue_exit(ring: IoUring): void {
  ring.proc.close(ring.fd);
}

export function io_uring_get_sqe(ring: IoUring): Sqe | null {
  return ring.nextSqe();
}

function setU64(u32: Uint32Array, at: number, v: number): void {
  // Negative values (offset -1: the file position) as two's complement.
  u32[at >>> 2] = ((v % U32) + U32) % U32;
  u32[(at >>> 2) + 1] = v < 0 ? 0xffffffff : Math.floor(v / U32);
}

function addrOf(buf: Uint8Array | number, sqe: Sqe): number {
  if (typeof buf === "number") return buf;
  if (buf.buffer !== sqe.ring.ring.arena.buffer) throw new DmaBufError("EFAULT", "io_uring_prep", "the buffer is not a view of the lab's memory");
  return buf.byteOffset;
}

/** io_uring_prep_rw: the common fields of every request. */
export function io_uring_prep_rw(op: number, sqe: Sqe, fd: number, addr: number, len: number, offset: number): void {
  const { u8, u32, i32 } = sqe.ring.ring;
  const at = sqe.offset;
  u8[at + SQE_OPCODE] = op;
  i32[(at + SQE_FD) >>> 2] = fd;
  setU64(u32, at + SQE_OFF, offset);
  setU64(u32, at + SQE_ADDR, addr);
  u32[(at + SQE_LEN) >>> 2] = len;
}

export function io_uring_prep_nop(sqe: Sqe): void {
  io_uring_prep_rw(IORING_OP_NOP, sqe, -1, 0, 0, 0);
}

export function io_uring_prep_read(sqe: Sqe, fd: number, buf: Uint8Array | number, nbytes: number, offset: number): void {
  io_uring_prep_rw(IORING_OP_READ, sqe, fd, addrOf(buf, sqe), nbytes, offset);
}

export function io_uring_prep_write(sqe: Sqe, fd: number, buf: Uint8Array | number, nbytes: number, offset: number): void {
  io_uring_prep_rw(IORING_OP_WRITE, sqe, fd, addrOf(buf, sqe), nbytes, offset);
}

/** iovecs: the arena offset of `nr` struct iovecs (16 bytes each: iov_base u64, iov_len u64). */
export function io_uring_prep_readv(sqe: Sqe, fd: number, iovecs: Uint8Array | number, nr: number, offset: number): void {
  io_uring_prep_rw(IORING_OP_READV, sqe, fd, addrOf(iovecs, sqe), nr, offset);
}

export function io_uring_prep_writev(sqe: Sqe, fd: number, iovecs: Uint8Array | number, nr: number, offset: number): void {
  io_uring_prep_rw(IORING_OP_WRITEV, sqe, fd, addrOf(iovecs, sqe), nr, offset);
}

export function io_uring_prep_read_fixed(sqe: Sqe, fd: number, buf: Uint8Array | number, nbytes: number, offset: number, bufIndex: number): void {
  io_uring_prep_rw(IORING_OP_READ_FIXED, sqe, fd, addrOf(buf, sqe), nbytes, offset);
  setBufIndex(sqe, bufIndex);
}

export function io_uring_prep_write_fixed(sqe: Sqe, fd: number, buf: Uint8Array | number, nbytes: number, offset: number, bufIndex: number): void {
  io_uring_prep_rw(IORING_OP_WRITE_FIXED, sqe, fd, addrOf(buf, sqe), nbytes, offset);
  setBufIndex(sqe, bufIndex);
}

/** iovecs: the arena offset of `nr` struct iovecs, each inside registered buffer bufIndex. */
export function io_uring_prep_readv_fixed(sqe: Sqe, fd: number, iovecs: Uint8Array | number, nr: number, offset: number, bufIndex: number): void {
  io_uring_prep_rw(IORING_OP_READV_FIXED, sqe, fd, addrOf(iovecs, sqe), nr, offset);
  setBufIndex(sqe, bufIndex);
}

export function io_uring_prep_writev_fixed(sqe: Sqe, fd: number, iovecs: Uint8Array | number, nr: number, offset: number, bufIndex: number): void {
  io_uring_prep_rw(IORING_OP_WRITEV_FIXED, sqe, fd, addrOf(iovecs, sqe), nr, offset);
  setBufIndex(sqe, bufIndex);
}

function setBufIndex(sqe: Sqe, i: number): void {
  const { u8 } = sqe.ring.ring;
  u8[sqe.offset + SQE_BUF_INDEX] = i & 0xff;
  u8[sqe.offset + SQE_BUF_INDEX + 1] = (i >>> 8) & 0xff;
}

/** user_data: a non-negative integer up to 2^53. */
export function io_uring_sqe_set_data(sqe: Sqe, data: number): void {
  setU64(sqe.ring.ring.u32, sqe.offset + SQE_USER_DATA, data);
}

export function io_uring_sqe_set_flags(sqe: Sqe, flags: number): void {
  sqe.ring.ring.u8[sqe.offset + SQE_FLAGS] = flags;
}

function syscallErrno(fn: () => number): number {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DmaBufError) return -e.errno;
    throw e;
  }
}

export function io_uring_submit(ring: IoUring): number {
  return io_uring_submit_and_wait(ring, 0);
}

export function io_uring_submit_and_wait(ring: IoUring, waitNr: number): number {
  const n = ring.flushSq();
  let flags = waitNr > 0 ? IORING_ENTER_GETEVENTS : 0;
  if (ring.sqpoll) {
    // After the release store of SQ_TAIL (flushSq): see the lost-wakeup argument in workers/io-sq.ts.
    if ((ring.ring.load(SQ_FLAGS) & IORING_SQ_NEED_WAKEUP) !== 0) flags |= IORING_ENTER_SQ_WAKEUP;
    if (flags === 0) return n;
  }
  return syscallErrno(() => ring.proc.io_uring_enter(ring.fd, n, waitNr, flags));
}

function cqeAtHead(ring: IoUring): Cqe | null {
  const r = ring.ring;
  const head = r.word(CQ_HEAD);
  // Acquire: the CQE's words were written before the kernel's store of CQ_TAIL.
  if (r.load(CQ_TAIL) === head) return null;
  const at = (r.cqes + (head & (r.cqEntries - 1)) * IOCQE_SIZE) >>> 2;
  return { user_data: r.u32[at + CQE_USER_DATA / 4 + 1] * U32 + r.u32[at + CQE_USER_DATA / 4], res: r.i32[at + CQE_RES / 4], flags: r.u32[at + CQE_FLAGS / 4] };
}

export function io_uring_peek_cqe(ring: IoUring): { err: number; cqe?: Cqe } {
  const cqe = cqeAtHead(ring);
  if (cqe !== null) return { err: 0, cqe };
  // Plain mode: completions on devices are reaped by entering the kernel.
  if (!ring.sqpoll) {
    const err = syscallErrno(() => ring.proc.io_uring_enter(ring.fd, 0, 0, IORING_ENTER_GETEVENTS));
    if (err < 0) return { err };
    const again = cqeAtHead(ring);
    if (again !== null) return { err: 0, cqe: again };
  }
  return { err: EAGAIN };
}

export function io_uring_wait_cqe(ring: IoUring): { err: number; cqe?: Cqe } {
  return io_uring_wait_cqe_timeout(ring, Infinity);
}

/** Waits up to timeoutMs; -ETIME when none came, -EAGAIN when nothing is in flight. */
export function io_uring_wait_cqe_timeout(ring: IoUring, timeoutMs: number): { err: number; cqe?: Cqe } {
  const cqe = cqeAtHead(ring);
  if (cqe !== null) return { err: 0, cqe };
  const err = syscallErrno(() => ring.proc.io_uring_enter(ring.fd, 0, 1, IORING_ENTER_GETEVENTS, timeoutMs));
  if (err < 0) return { err };
  const got = cqeAtHead(ring);
  if (got !== null) return { err: 0, cqe: got };
  return { err: Number.isFinite(timeoutMs) ? ETIME : EAGAIN };
}

export function io_uring_cqe_seen(ring: IoUring, _cqe: Cqe): void {
  io_uring_cq_advance(ring, 1);
}

export function io_uring_cq_advance(ring: IoUring, n: number): void {
  const r = ring.ring;
  // Release: the CQE was read before the slot goes back to the kernel.
  r.store(CQ_HEAD, r.word(CQ_HEAD) + n);
}

export function io_uring_register_files(ring: IoUring, fds: number[]): number {
  return syscallErrno(() => ring.proc.io_uring_register(ring.fd, IORING_REGISTER_FILES, fds, fds.length));
}

export function io_uring_register_buffers(ring: IoUring, iovecs: (Uint8Array | { iov_base: number; iov_len: number })[]): number {
  return syscallErrno(() => ring.proc.io_uring_register(ring.fd, IORING_REGISTER_BUFFERS, iovecs, iovecs.length));
}

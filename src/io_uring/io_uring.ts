/*
 * The io_uring uapi: opcodes, flags and the shared ring's layout, with the
 * names and numbers of include/uapi/linux/io_uring.h (as liburing ships it:
 * axboe/liburing src/include/liburing/io_uring.h).
 *
 * The ring is one block of user memory in the arena (what a process mmaps
 * at IORING_OFF_SQ_RING / IORING_OFF_CQ_RING / IORING_OFF_SQES in one piece,
 * IORING_FEAT_SINGLE_MMAP). io_uring_setup() answers its arena offset in
 * params.ring and the word offsets, relative to it, in params.sq_off and
 * params.cq_off, as the kernel does. Words written by the application and by
 * the kernel sit on separate 64-byte lines.
 *
 *   SQ_HEAD        u32, kernel: SQEs consumed (free-running)
 *   SQ_TAIL        u32, application: SQEs published (free-running)
 *   SQ_RING_MASK, SQ_RING_ENTRIES  u32, constant
 *   SQ_FLAGS       u32, kernel: IORING_SQ_NEED_WAKEUP, IORING_SQ_CQ_OVERFLOW
 *   SQ_DROPPED     u32, kernel: SQEs with an index past the SQE array
 *   CQ_HEAD        u32, application: CQEs consumed
 *   CQ_TAIL        u32, kernel: CQEs posted
 *   CQ_RING_MASK, CQ_RING_ENTRIES  u32, constant
 *   CQ_OVERFLOW    u32, kernel: CQEs that waited in the overflow list
 *   CQ_FLAGS       u32
 *   CTX_*          the kernel's private words (not in sq_off/cq_off): state,
 *                  the SQ thread's wake-up word, the registered tables, a
 *                  Mutex serializing the kernel side (uring_lock)
 *   SQ array       u32[sq_entries]: indices into the SQE array
 *   SQEs           64 bytes each (IOSQE_* field offsets below)
 *   CQEs           16 bytes each
 *
 * Memory ordering (the publish points, as liburing's barrier.h documents):
 *   - the application writes an SQE and its SQ array slot, then stores
 *     SQ_TAIL with Atomics.store (a release: seq-cst in JavaScript); the
 *     kernel loads SQ_TAIL with Atomics.load (an acquire) before it reads
 *     the entries, copies each SQE, then stores SQ_HEAD (release), after which
 *     the application may reuse the slots;
 *   - the kernel writes a CQE, then stores CQ_TAIL (release) and notifies it;
 *     the application loads CQ_TAIL (acquire), reads the CQE, then stores
 *     CQ_HEAD (release), after which the kernel may overwrite the slot.
 */

// ---- io_uring_setup flags (IORING_SETUP_*) ---------------------------------
export const IORING_SETUP_IOPOLL = 1 << 0;
export const IORING_SETUP_SQPOLL = 1 << 1;
export const IORING_SETUP_SQ_AFF = 1 << 2;
export const IORING_SETUP_CQSIZE = 1 << 3;
export const IORING_SETUP_CLAMP = 1 << 4;
/** The flags this lab implements (others: EINVAL). */
export const IORING_SETUP_SUPPORTED = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;

export const IORING_MAX_ENTRIES = 4096;
export const IORING_MAX_CQ_ENTRIES = 2 * IORING_MAX_ENTRIES;
/** sq_thread_idle default (ms), as the kernel's HZ. */
export const IORING_SQ_THREAD_IDLE_MS = 1000;

// ---- features (params.features) --------------------------------------------
export const IORING_FEAT_SINGLE_MMAP = 1 << 0;
export const IORING_FEAT_NODROP = 1 << 1;
export const IORING_FEAT_RW_CUR_POS = 1 << 3;

// ---- opcodes (enum io_uring_op) ----------------------------------------------
export const IORING_OP_NOP = 0;
export const IORING_OP_READV = 1;
export const IORING_OP_WRITEV = 2;
export const IORING_OP_READ_FIXED = 4;
export const IORING_OP_WRITE_FIXED = 5;
export const IORING_OP_READ = 22;
export const IORING_OP_WRITE = 23;
/** Vectored I/O through a registered buffer (Linux 6.15): every iovec inside buffer buf_index. */
export const IORING_OP_READV_FIXED = 60;
export const IORING_OP_WRITEV_FIXED = 61;

// ---- sqe->flags (IOSQE_*) ------------------------------------------------------
export const IOSQE_FIXED_FILE = 1 << 0;
export const IOSQE_IO_DRAIN = 1 << 1;
export const IOSQE_IO_LINK = 1 << 2;
export const IOSQE_IO_HARDLINK = 1 << 3;
export const IOSQE_ASYNC = 1 << 4;
/** The flags this lab implements: others fail the SQE with EINVAL. */
export const IOSQE_SUPPORTED = IOSQE_FIXED_FILE | IOSQE_IO_DRAIN | IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_ASYNC;

// ---- sq_ring->flags ---------------------------------------------------------
export const IORING_SQ_NEED_WAKEUP = 1 << 0;
export const IORING_SQ_CQ_OVERFLOW = 1 << 1;

// ---- io_uring_enter flags ---------------------------------------------------
export const IORING_ENTER_GETEVENTS = 1 << 0;
export const IORING_ENTER_SQ_WAKEUP = 1 << 1;
export const IORING_ENTER_SQ_WAIT = 1 << 2;
export const IORING_ENTER_SUPPORTED = IORING_ENTER_GETEVENTS | IORING_ENTER_SQ_WAKEUP | IORING_ENTER_SQ_WAIT;

// ---- io_uring_register opcodes -----------------------------------------------
export const IORING_REGISTER_BUFFERS = 0;
export const IORING_UNREGISTER_BUFFERS = 1;
export const IORING_REGISTER_FILES = 2;
export const IORING_UNREGISTER_FILES = 3;
export const IORING_REGISTER_BUFFERS_UPDATE = 16;
/**
 * io_uring_rsrc_update2.flags: the entries of `data` are struct
 * io_uring_reg_buffer (a dma-buf with its target file), not iovecs (the
 * dma-buf read/write series; its value is this lab's choice).
 */
export const IORING_RSRC_F_EXTENDED_UPDATE = 1 << 1;

/** struct io_uring_rsrc_update2, for IORING_REGISTER_BUFFERS_UPDATE. */
export interface IoUringRsrcUpdate2 {
  offset: number;
  flags?: number;
  /** iovecs ({iov_base, iov_len}; {0, 0} empties a slot) or, with IORING_RSRC_F_EXTENDED_UPDATE, IoUringRegBuffer entries. */
  data: unknown[];
  nr: number;
}

/** struct io_uring_reg_buffer: a dma-buf registered for fixed I/O against target_fd; fixed I/O names iov_uaddr + offset. */
export interface IoUringRegBuffer { iov_uaddr: number; target_fd: number; dmabuf_fd: number }

/** UIO_MAXIOV: the most iovecs of one READV/WRITEV, and of one buffer registration. */
export const UIO_MAXIOV = 1024;
/** IORING_MAX_FIXED_FILES (the kernel allows more today; this lab keeps the original limit). */
export const IORING_MAX_FIXED_FILES = 1024;
/** A registered buffer may be at most 1 GiB (io_buffer_validate). */
export const IORING_MAX_BUF_SIZE = 1 << 30;

// ---- struct io_uring_sqe (64 bytes) -------------------------------------------
export const IOSQE_SIZE = 64;
export const SQE_OPCODE = 0; // u8
export const SQE_FLAGS = 1; // u8
export const SQE_IOPRIO = 2; // u16
export const SQE_FD = 4; // s32
export const SQE_OFF = 8; // u64 (lo, hi)
export const SQE_ADDR = 16; // u64 (lo, hi)
export const SQE_LEN = 24; // u32
export const SQE_RW_FLAGS = 28; // u32
export const SQE_USER_DATA = 32; // u64 (lo, hi)
export const SQE_BUF_INDEX = 40; // u16
export const SQE_PERSONALITY = 42; // u16

// ---- struct io_uring_cqe (16 bytes) --------------------------------------------
export const IOCQE_SIZE = 16;
export const CQE_USER_DATA = 0; // u64 (lo, hi)
export const CQE_RES = 8; // s32
export const CQE_FLAGS = 12; // u32

// ---- struct iovec in user memory (16 bytes: iov_base u64, iov_len u64) ---------
export const IOVEC_SIZE = 16;

// ---- the ring block ------------------------------------------------------------
export const SQ_HEAD = 0;
export const SQ_TAIL = 64;
export const SQ_RING_MASK = 128;
export const SQ_RING_ENTRIES = 132;
export const SQ_FLAGS = 136;
export const SQ_DROPPED = 140;
export const CQ_HEAD = 192;
export const CQ_TAIL = 256;
export const CQ_RING_MASK = 320;
export const CQ_RING_ENTRIES = 324;
export const CQ_OVERFLOW = 328;
export const CQ_FLAGS = 332;
/** CTX_STATE: CTX_LIVE, or CTX_DYING once the ring's file is released (the SQ thread ends). */
export const CTX_STATE = 384;
/** The SQ thread sleeps on this word; io_uring_enter(SQ_WAKEUP) bumps and notifies it. */
export const CTX_SQ_WAKE = 388;
export const CTX_SETUP_FLAGS = 392;
export const CTX_SQ_IDLE_MS = 396;
/** Registered files: the table's arena offset (0: none) and count (table.ts). */
export const CTX_FILES = 400;
export const CTX_NR_FILES = 404;
/** Registered buffers: the table's arena offset (0: none) and count. */
export const CTX_BUFS = 408;
export const CTX_NR_BUFS = 412;
/** Requests submitted and not yet completed (written by the kernel side only). */
export const CTX_INFLIGHT = 416;
/** uring_lock: a Mutex (32 bytes) held while SQEs are consumed or tables change. */
export const CTX_LOCK = 448;
export const SQ_ARRAY = 512;

export const CTX_LIVE = 1;
export const CTX_DYING = 2;

/** struct io_sqring_offsets and io_cqring_offsets: the words above, for params. */
export const sqRingOffsets = { head: SQ_HEAD, tail: SQ_TAIL, ring_mask: SQ_RING_MASK, ring_entries: SQ_RING_ENTRIES, flags: SQ_FLAGS, dropped: SQ_DROPPED, array: SQ_ARRAY } as const;

export interface IoSqringOffsets { head: number; tail: number; ring_mask: number; ring_entries: number; flags: number; dropped: number; array: number }
export interface IoCqringOffsets { head: number; tail: number; ring_mask: number; ring_entries: number; overflow: number; cqes: number; flags: number }

/** struct io_uring_params: what the caller passes in (flags, sq_thread_idle, cq_entries with CQSIZE), and what setup fills in. */
export interface IoUringParams {
  /**
   * IORING_SETUP_* flags: SQPOLL (a kernel-side worker polls the SQ), SQ_AFF (accepted, no effect),
   * CQSIZE (cq_entries is given), CLAMP (too many entries are clamped, not EINVAL); others EINVAL.
   */
  flags?: number;
  /** SQPOLL: how long the SQ thread polls an empty ring before it sleeps, ms (default IORING_SQ_THREAD_IDLE_MS, 1000). */
  sq_thread_idle?: number;
  /** In: with IORING_SETUP_CQSIZE, the CQ's entries (rounded up to a power of two, at least the SQ's). Out: the CQ's entries (default twice the SQ's). */
  cq_entries?: number;
  /** Filled in by io_uring_setup: the SQ's entries (the asked count rounded up to a power of two). */
  sq_entries?: number;
  /** Filled in: the IORING_FEAT_* the lab implements (SINGLE_MMAP, NODROP, RW_CUR_POS). */
  features?: number;
  /** The ring block's arena offset (this lab's stand-in for the mmap offsets). */
  ring?: number;
  /** Filled in: the SQ ring's word offsets in the ring block (struct io_sqring_offsets). */
  sq_off?: IoSqringOffsets;
  /** Filled in: the CQ ring's word offsets (struct io_cqring_offsets). */
  cq_off?: IoCqringOffsets;
}

/** Where the SQEs and CQEs start in a ring of `sq` and `cq` entries, and its size. */
export function ringLayout(sq: number, cq: number): { sqes: number; cqes: number; bytes: number } {
  const sqes = align(SQ_ARRAY + 4 * sq, IOSQE_SIZE);
  const cqes = sqes + IOSQE_SIZE * sq;
  return { sqes, cqes, bytes: cqes + IOCQE_SIZE * cq };
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export const opcodeNames: Record<number, string> = {
  [IORING_OP_NOP]: "NOP", [IORING_OP_READV]: "READV", [IORING_OP_WRITEV]: "WRITEV", [IORING_OP_READ_FIXED]: "READ_FIXED",
  [IORING_OP_WRITE_FIXED]: "WRITE_FIXED", [IORING_OP_READ]: "READ", [IORING_OP_WRITE]: "WRITE",
  [IORING_OP_READV_FIXED]: "READV_FIXED", [IORING_OP_WRITEV_FIXED]: "WRITEV_FIXED",
};

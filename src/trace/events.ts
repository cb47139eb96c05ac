/*
 * The trace's vocabulary: event types, their categories and the layout of
 * one recorded event. Every layer that reports imports these numbers from
 * here (src/trace sits beside src/memory, below every layer that reports),
 * and src/trace/chrome.ts turns them into Chrome Trace Event JSON.
 *
 * One event is EVENT_BYTES in a thread's trace chunk:
 *   EV_T0    f64  start (ns on the lab clock)
 *   EV_T1    f64  end (= start for an instant)
 *   EV_TYPE  u32  type | code << 8 (code: a syscall, a job kind, an action)
 *   EV_ARGS  u32[11]  the type's arguments, named below per type
 * Contexts and seqnos are recorded as their low 32 bits (dma_fence_is_later
 * compares 32-bit seqnos too).
 */

/** Categories, as start({ categories }) names them; a bit each in CTL_TRACE_MASK. */
export const CATEGORIES = {
  fence: 1,
  rw: 2,
  job: 4,
  resv: 8,
  ring: 16,
  watchdog: 32,
} as const;
export type TraceCategory = keyof typeof CATEGORIES;
export const CAT_FENCE = CATEGORIES.fence;
export const CAT_RW = CATEGORIES.rw;
export const CAT_JOB = CATEGORIES.job;
export const CAT_RESV = CATEGORIES.resv;
export const CAT_RING = CATEGORIES.ring;
export const CAT_WATCHDOG = CATEGORIES.watchdog;
export const ALL_CATEGORIES = Object.values(CATEGORIES).reduce((m, c) => m | c, 0);

export const EVENT_BYTES = 64;
export const EV_T0 = 0;
export const EV_T1 = 8;
export const EV_TYPE = 16;
export const EV_ARGS = 20;
export const EV_NARGS = 11;

/** A fence was created (instant). a ctx, b seqno, c record offset. */
export const T_FENCE_CREATE = 1;
/** A fence was signalled (slice around the signal). a ctx, b seqno, c offset, d error (i32, 0 for none). */
export const T_FENCE_SIGNAL = 2;
/**
 * A wait on a fence (slice). a ctx, b seqno, c offset, d 1 if it saw the
 * fence signalled (0: timed out), e flags (WAIT_ASYNC, WAIT_SLEPT), f the
 * T_FENCE_LEAF events that follow (a container's leaves).
 */
export const T_FENCE_WAIT = 3;
/** A leaf of the container the preceding T_FENCE_WAIT waited on. a ctx, b seqno, c offset. */
export const T_FENCE_LEAF = 4;
/**
 * A read/write-path call (slice), code: its syscall (RW_SYSCALLS). a buffer
 * record, b position, c bytes moved, d own fence ctx, e own seqno, f flags
 * (WAIT_ASYNC), g/h/i ns from t0 to the end of validation, waiting and the
 * copy (0xffffffff: not reached), j errno (0: it succeeded), k dependencies.
 */
export const T_RW = 5;
/**
 * A wait for a reservation object's lock that found it held (slice), code 1
 * for lockAsync. a resv offset, b its contended count.
 */
export const T_RESV_WAIT = 6;
/** A job pushed on a device's ring (instant). a device ctx, b depth after, c job fence seqno. */
export const T_RING_PUSH = 7;
/** A job taken from a device's ring (instant). a device ctx, b depth after, c job fence seqno. */
export const T_RING_POP = 8;
/** A job submitted (instant on the submitter), code: kind. a device ctx, b seqno, c dependencies. */
export const T_JOB_SUBMIT = 9;
/**
 * A job on its device (slice from taken to done), code: kind. a device ctx,
 * b seqno, c error (i32), d bytes, e ns from t0 until its dependencies were
 * satisfied (0xffffffff: never), f ns from t0 until it ran.
 */
export const T_JOB = 10;
/** The watchdog failed a device (instant), code: WD_OVERRUN or WD_SILENT. a device ctx, b errno. */
export const T_WATCHDOG = 11;

export const WAIT_ASYNC = 1;
export const WAIT_SLEPT = 2;
export const NOT_REACHED = 0xffffffff;
export const WD_OVERRUN = 1;
export const WD_SILENT = 2;

/** The category of each type. */
export const CATEGORY_OF: Record<number, number> = {
  [T_FENCE_CREATE]: CAT_FENCE, [T_FENCE_SIGNAL]: CAT_FENCE, [T_FENCE_WAIT]: CAT_FENCE, [T_FENCE_LEAF]: CAT_FENCE,
  [T_RW]: CAT_RW, [T_RESV_WAIT]: CAT_RESV, [T_RING_PUSH]: CAT_RING, [T_RING_POP]: CAT_RING,
  [T_JOB_SUBMIT]: CAT_JOB, [T_JOB]: CAT_JOB, [T_WATCHDOG]: CAT_WATCHDOG,
};

/** The read/write path's system calls, by code. */
export const RW_SYSCALLS = ["read", "write", "pread", "pwrite", "readv", "writev", "preadv", "pwritev"] as const;
/** Device job kinds, by code (JOB_KIND in src/devices/job.ts). */
export const JOB_KINDS = ["nop", "copy", "fill", "checksum", "kernel"] as const;

/** A recorded event, decoded. */
export interface RawEvent {
  type: number;
  code: number;
  t0: number;
  t1: number;
  args: number[];
}

/** One thread's (or device's) events of a session, in the order it recorded them. */
export interface TraceThread {
  /** The tracer id: unique per thread's lab view in the lab. */
  id: number;
  name: string;
  /** A device thread's fence context (0 for other threads). */
  context: number;
  /** Events lost when the thread's buffers were full. */
  dropped: number;
  events: RawEvent[];
}

/** What stop() returns: every thread's events of one session. */
export interface TraceData {
  /** The recording session's number (each start() opens a new one). */
  session: number;
  /** The categories recorded. */
  categories: TraceCategory[];
  /** Lab-clock ns at start(). */
  startNs: number;
  /** Lab-clock ns at stop(). */
  stopNs: number;
  /** Every thread's and device's events, one entry per track. */
  threads: TraceThread[];
}

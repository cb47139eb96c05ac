/*
 * The read/write path (the 2025 proposal: read_iter/write_iter on dma-buf
 * fds): pread and pwrite of user memory against a buffer, with the kernel's
 * implicit synchronization applied by the path itself.
 *
 * One call:
 *   1. Validates everything (position, every iovec: a Uint8Array, and an
 *      arena view inside the DMA range; the timeout, the strategy) before
 *      anything changes: a failing iovec means no byte moved anywhere.
 *   2. Under the buffer's resv lock, collects the pending fences it must wait
 *      for (a read waits at usage WRITE, a write at usage READ) and publishes
 *      its own fence (usage READ for a read, WRITE for a write), so that a
 *      device job submitted meanwhile waits for this copy. With `nonblock`
 *      and a pending dependency it is EAGAIN with nothing published.
 *   3. Waits for the dependencies (timeoutMs: ETIMEDOUT; the own fence is then
 *      signalled, a signalled fence being invisible to implicit sync, and no
 *      byte has moved).
 *   4. Copies in one engine call: the user iovecs against the buffer's
 *      segments become one descriptor table. Views inside the arena take
 *      this fast path; views of other memory (an ordinary ArrayBuffer) are
 *      copied segment by segment with TypedArray.set, a documented slower path.
 *   5. Signals its fence and returns the byte count.
 * Edges: a read at or past the end returns 0, a read across the end is short;
 * a write that starts inside the buffer is short at the end (a dma-buf never
 * grows), one at or past the end with bytes to write is ENOSPC, one of zero
 * bytes returns 0 wherever it starts. A call that moves no byte touches no
 * memory (no cache maintenance either). Write-combined
 * and uncached buffers are written with the line-granular SIMD strategy
 * (whole 64-byte lines where the range allows) and read with bulk copies.
 * In a non-coherent lab the copy goes through the buffer's CPU cache with
 * the maintenance done here (coherence.ts): the range's lines are refilled
 * from memory first, and after a write its changed lines are cleaned back.
 * Every call has an async twin that waits with waitAsync.
 * Each call carries the name of the system call it serves (read, pwrite,
 * readv, ...): its direction follows from it, and its errors name it.
 */
import { iovArg, positionArg, timeoutArg } from "../args.js";
import { DmaBufError, hex } from "../errno.js";
import type { StrategyName } from "../engine/strategy.js";
import { SgTable } from "../engine/tables.js";
import { nowMs, requireBlocking } from "../memory/futex.js";
import type { Fence } from "../sync/fence.js";
import type { Sync } from "../sync/sync.js";
import type { Timeline } from "../sync/timeline.js";
import { CACHING_CACHED, type DmaBufRecord } from "./dma_buf.js";
import { bufferRuns, iovRuns, zipRuns, type Run } from "./runs.js";
import { CpuCache } from "./coherence.js";
import { fastCopy, fastRun } from "./rw_fast.js";
import { FENCE_CONTEXT, FENCE_SEQNO } from "../engine/abi.js";
import { CAT_RW, NOT_REACHED, RW_SYSCALLS, T_RW, WAIT_ASYNC } from "../trace/events.js";
import type { Tracer } from "../trace/recorder.js";
import { AK_IO, AK_RW } from "../sanitize/log.js";

/** The system calls the path serves; the name says the direction and goes into every error. */
export type RwSyscall = "read" | "write" | "pread" | "pwrite" | "readv" | "writev" | "preadv" | "pwritev";

const WRITES: Readonly<Record<RwSyscall, boolean>> = {
  read: false, pread: false, readv: false, preadv: false, write: true, pwrite: true, writev: true, pwritev: true,
};

/** Whether the system call writes to the buffer. */
export const isWrite = (syscall: RwSyscall): boolean => WRITES[syscall] === true;

export interface RwOptions {
  /** O_NONBLOCK: EAGAIN instead of waiting for a pending fence. */
  nonblock?: boolean;
  /** Give up waiting after this long: ETIMEDOUT, nothing copied (undefined or null: no limit). */
  timeoutMs?: number | null;
  /** Override the copy strategy (default: by the buffer's caching attribute). */
  strategy?: StrategyName;
}

/** How a blocking call waits for one dependency: the time left (> 0), or 0 on timeout. */
export type SyncWaitStep = (fence: Fence, timeoutMs: number) => number;
/** How an async twin waits for one dependency (a Promise, or an answer at once). */
export type WaitStep = (fence: Fence, timeoutMs: number) => number | Promise<number>;

export interface RwSyncOptions extends RwOptions {
  /** How each dependency is waited for (default Fence.wait), e.g. to time the waits or to spin. */
  wait?: SyncWaitStep;
}

export interface RwAsyncOptions extends RwOptions {
  /** How each dependency is waited for (default Fence.waitAsync). */
  wait?: WaitStep;
}

/** One CPU timeline per thread's Sync: the fences of its read/write calls. */
const cpuTimelines = new WeakMap<Sync, { timeline: Timeline; table: SgTable | undefined }>();

function cpu(sync: Sync): { timeline: Timeline; table: SgTable | undefined } {
  let t = cpuTimelines.get(sync);
  if (t === undefined) {
    t = { timeline: sync.timeline({ driver: "dma-buf-rw", name: "cpu" }), table: undefined };
    cpuTimelines.set(sync, t);
  }
  return t;
}

/**
 * Releases this thread's read/write state for `sync` (its CPU timeline and
 * descriptor table): Lab.close() calls it, so that a thread that ends gives
 * back what its read/write calls made. A later call makes them anew.
 */
export function releaseCpuState(sync: Sync): void {
  const t = cpuTimelines.get(sync);
  if (t === undefined) return;
  cpuTimelines.delete(sync);
  t.table?.free();
  t.timeline.unref();
}

interface Plan {
  buf: DmaBufRecord;
  iov: Uint8Array[];
  pos: number;
  bytes: number;
  syscall: RwSyscall;
  write: boolean;
  strategy: StrategyName;
  timeoutMs: number;
}

/** Step 1: every argument checked, every iovec included, before anything moves. */
function plan(buf: DmaBufRecord, iovecs: unknown, at: unknown, syscall: RwSyscall, options: RwOptions): Plan {
  const write = isWrite(syscall);
  const pos = positionArg(at, syscall);
  const iov = iovArg(iovecs, syscall);
  const timeoutMs = timeoutArg(options.timeoutMs, syscall);
  const { arena } = buf.sync;
  let total = 0;
  for (let i = 0; i < iov.length; i++) {
    const v = iov[i];
    // An arena view outside the DMA range would fail in the engine after the
    // other iovecs were copied: refused here, before any byte moves.
    if (v.byteLength > 0 && arena.owns(v) && (v.byteOffset < arena.dmaLo || v.byteOffset + v.byteLength > arena.dmaHi)) {
      throw new DmaBufError("EFAULT", syscall, `iovec ${i} (${v.byteLength} bytes at ${hex(v.byteOffset)}) is outside the DMA range [${hex(arena.dmaLo)}, ${hex(arena.dmaHi)})`);
    }
    total += v.byteLength;
  }
  const size = buf.size;
  if (write && pos >= size && total > 0) {
    throw new DmaBufError("ENOSPC", syscall, `position ${pos} is at or past the end of a ${size}-byte dma-buf (it never grows)`);
  }
  const bytes = Math.max(0, Math.min(total, size - pos));
  const strategy = options.strategy ?? (buf.caching === CACHING_CACHED ? "auto" : write ? "simd" : "bulk");
  return { buf, iov, pos, bytes, syscall, write, strategy, timeoutMs };
}

/** Step 4: one engine call for arena views; the slow path for the others. */
function copy(p: Plan): void {
  const { buf, pos, bytes, write } = p;
  // Nothing to move (at or past the end, or empty iovecs): no memory is
  // touched, the cache's lines included.
  if (bytes === 0) return;
  cpuRuns(buf, pos, bytes, write, (target) => copyRuns(p, target));
}

/**
 * The runs the CPU reaches [pos, pos + bytes) of the buffer through: in a
 * non-coherent lab the CPU cache's copy, whose whole lines are refilled
 * from memory before `move` and, when it wrote them, cleaned back after.
 */
export function cpuRuns<T>(buf: DmaBufRecord, pos: number, bytes: number, write: boolean, move: (runs: Run[]) => T): T {
  const cache = CpuCache.of(buf);
  cache?.invalidate(pos, bytes, false);
  const r = move(cache ? [{ addr: cache.copy + pos, len: bytes }] : bufferRuns(buf, pos, bytes));
  if (write) cache?.cleanRange(pos, bytes, false);
  return r;
}

/** Step 4's copy between the user's iovecs and the runs that stand for the buffer's range. */
function copyRuns(p: Plan, target: Run[]): void {
  const { buf, iov, bytes, write, strategy } = p;
  const { sync } = buf;
  const { arena } = sync;
  if (target.length === 1 && iov.length === 1 && arena.owns(iov[0])) {
    // One run against one arena view (small calls, contiguous buffers):
    // one engine copy, no descriptor table.
    const user = iov[0].byteOffset;
    if (write) sync.engine.copy(target[0].addr, user, bytes, strategy);
    else sync.engine.copy(user, target[0].addr, bytes, strategy);
  } else {
    const state = cpu(sync);
    const table = (state.table ??= new SgTable(arena)).clear();
    zipRuns(target, iovRuns(iov), (b, bOff, u, uOff, n) => {
      const bufAddr = b.addr + bOff;
      const v = u.view!;
      if (arena.owns(v)) {
        if (write) table.push(bufAddr, u.addr + uOff, n);
        else table.push(u.addr + uOff, bufAddr, n);
      } else if (write) {
        arena.u8.set(v.subarray(uOff, uOff + n), bufAddr);
      } else {
        v.set(arena.u8.subarray(bufAddr, bufAddr + n), uOff);
      }
    });
    if (table.count > 0) sync.engine.sgCopy(table, strategy);
  }
}

/**
 * Step 4 as the sanitizer sees it (src/sanitize): in a sanitizing lab the
 * copy is recorded as an access of [pos, pos + bytes), named by the call's
 * own fence, before end() signals that fence.
 */
function copyAccess(call: Call): void {
  const { p } = call;
  const { sync } = p.buf;
  if (!sync.san.on) {
    copy(p);
    return;
  }
  const t0 = sync.san.now();
  copy(p);
  const u32 = sync.u32;
  sync.san.access(p.buf.offset, p.buf.generation, p.pos, p.bytes, p.write, AK_RW | (RW_SYSCALLS.indexOf(p.syscall) << 8),
    u32[(call.own.offset + FENCE_CONTEXT) >>> 2], u32[(call.own.offset + FENCE_SEQNO) >>> 2], t0);
}

/** A call after step 2: its plan, its dependencies, and end() (signal the own fence, put everything). */
interface Call {
  p: Plan;
  deps: Fence[];
  own: Fence;
  end(): void;
}

/**
 * The fast path (rw_fast.ts) for a call in the common case: its byte count,
 * or the fence it made (owned) when the engine sent the call back; undefined
 * for a call that is not the common case.
 */
function tryFast(buf: DmaBufRecord, iov: unknown, pos: unknown, syscall: RwSyscall, options: RwOptions): number | Fence | undefined {
  // A sanitizing lab takes the path whose steps it records (src/sanitize): one load and branch here.
  if (buf.sync.san.on) return undefined;
  const c = fastCopy(buf, iov, pos, options);
  if (c === undefined) return undefined;
  const own = cpu(buf.sync).timeline.createFence(undefined, false);
  return fastRun(buf, own, isWrite(syscall), c) ? c.n : own;
}

/** Step 2: this thread's CPU fence (`made`, or a new one) published on the buffer, and the fences it must wait for. */
function publish(buf: DmaBufRecord, write: boolean, nonblock: boolean, syscall: string, made?: Fence): { own: Fence; deps: Fence[] } {
  // The own fence is put in every path (end()), so it needs no FinalizationRegistry.
  const own = made ?? cpu(buf.sync).timeline.createFence(undefined, false);
  try {
    return { own, deps: buf.resv.publishAccess(own, write, nonblock, syscall) };
  } catch (e) {
    own.put();
    throw e;
  }
}

/** Steps 1 and 2; `made`: the own fence, when the fast path made it already. */
function begin(buf: DmaBufRecord, iov: unknown, pos: unknown, syscall: RwSyscall, options: RwOptions, made?: Fence): Call {
  let p: Plan;
  try {
    p = plan(buf, iov, pos, syscall, options);
  } catch (e) {
    made?.put();
    throw e;
  }
  const { own, deps } = publish(buf, p.write, options.nonblock === true, syscall, made);
  return {
    p,
    deps,
    own,
    end: () => {
      for (const d of deps) d.put();
      own.signal();
      own.put();
    },
  };
}

function timedOut(p: { syscall: string; timeoutMs: number }): DmaBufError {
  return new DmaBufError("ETIMEDOUT", p.syscall, `a fence of the dma-buf did not signal within ${p.timeoutMs} ms`);
}

/** Step 3, blocking: each dependency in turn within `timeoutMs` in all (ETIMEDOUT); EPERM first where the thread may not block. */
function waitDeps(deps: Fence[], timeoutMs: number, wait: SyncWaitStep, syscall: string, twin: string): void {
  if (deps.length === 0) return;
  requireBlocking(syscall, twin);
  const start = nowMs();
  for (const d of deps) {
    if (wait(d, Math.max(0, timeoutMs - (nowMs() - start))) === 0) throw timedOut({ syscall, timeoutMs });
  }
}

/**
 * The path's implicit synchronization around a transfer that another mover
 * does (copy_file_range and DMA_BUF_IOCTL_RW_FILE: the CPU from the page
 * cache, or a device's DMA): step 2 publishes this thread's CPU fence on
 * the buffer (usage WRITE when `write`, the transfer writing the buffer,
 * else READ) and collects the dependencies, step 3 waits for them
 * (options.timeoutMs: ETIMEDOUT; nonblock: EAGAIN), then `move` runs in
 * place of step 4 and step 5 signals the fence, also when move throws.
 * THE I/O HOOK: every transfer between a file and a dma-buf passes here.
 */
export function withImplicitSync<T>(buf: DmaBufRecord, write: boolean, syscall: string, options: RwOptions, move: () => T): T {
  const timeoutMs = timeoutArg(options.timeoutMs, syscall);
  const { own, deps } = publish(buf, write, options.nonblock === true, syscall);
  try {
    waitDeps(deps, timeoutMs, blocking, syscall, "a worker thread");
    const { san } = buf.sync;
    if (!san.on) return move();
    // The sanitizer (src/sanitize) records the transfer as an access of the whole buffer, named by the own fence.
    const t0 = san.now();
    const result = move();
    const u32 = buf.sync.u32;
    san.access(buf.offset, buf.generation, 0, buf.size, write, AK_IO, u32[(own.offset + FENCE_CONTEXT) >>> 2], u32[(own.offset + FENCE_SEQNO) >>> 2], t0);
    return result;
  } finally {
    for (const d of deps) d.put();
    own.signal();
    own.put();
  }
}

const blocking: SyncWaitStep = (f, ms) => f.wait(ms);
const nonBlocking: WaitStep = (f, ms) => f.waitAsync(ms);

/** Steps 1 to 5, the thread blocking on each dependency in turn. */
function runSync(buf: DmaBufRecord, iov: unknown, pos: unknown, syscall: RwSyscall, options: RwSyncOptions): number {
  const fast = tryFast(buf, iov, pos, syscall, options);
  if (typeof fast === "number") return fast;
  const marks = buf.sync.trace.on(CAT_RW) ? new RwMarks(buf.sync.trace, 0) : undefined;
  const call = marks ? marks.begin(buf, iov, pos, syscall, options, fast) : begin(buf, iov, pos, syscall, options, fast);
  const { p, deps } = call;
  try {
    // It would block: where this thread may not, say so with the call's
    // own name before anything waits.
    waitDeps(deps, p.timeoutMs, options.wait ?? blocking, syscall, `${syscall}Async() (readAsync()/writeAsync() on a DmaBuf)`);
    marks?.waited();
    copyAccess(call);
    marks?.copied();
    return p.bytes;
  } catch (e) {
    marks?.failed(e);
    throw e;
  } finally {
    call.end();
    marks?.end(call);
  }
}

/** Steps 1 to 5 with Promises; without dependencies it copies before it returns. */
async function runAsync(buf: DmaBufRecord, iov: unknown, pos: unknown, syscall: RwSyscall, options: RwAsyncOptions): Promise<number> {
  const fast = tryFast(buf, iov, pos, syscall, options);
  if (typeof fast === "number") return fast;
  const marks = buf.sync.trace.on(CAT_RW) ? new RwMarks(buf.sync.trace, WAIT_ASYNC) : undefined;
  const call = marks ? marks.begin(buf, iov, pos, syscall, options, fast) : begin(buf, iov, pos, syscall, options, fast);
  const { p, deps } = call;
  try {
    const wait = options.wait ?? nonBlocking;
    const start = nowMs();
    for (const d of deps) {
      if ((await wait(d, Math.max(0, p.timeoutMs - (nowMs() - start)))) === 0) throw timedOut(p);
    }
    marks?.waited();
    copyAccess(call);
    marks?.copied();
    return p.bytes;
  } catch (e) {
    marks?.failed(e);
    throw e;
  } finally {
    call.end();
    marks?.end(call);
  }
}

/**
 * A traced call's phase times (src/trace: one T_RW event at its end). Made
 * only while the "rw" category records; a call refused in step 1 or 2 is
 * recorded too, with its errno.
 */
class RwMarks {
  private readonly t0: number;
  private validated = NOT_REACHED;
  private waitedAt = NOT_REACHED;
  private copiedAt = NOT_REACHED;
  private errno = 0;
  /** The own fence's context and seqno (low words), read while it is alive. */
  private context = 0;
  private seqno = 0;

  constructor(private readonly trace: Tracer, private readonly flags: number) {
    this.t0 = trace.now();
  }

  private since(): number {
    return Math.min(NOT_REACHED - 1, Math.max(0, this.trace.now() - this.t0));
  }

  begin(buf: DmaBufRecord, iov: unknown, pos: unknown, syscall: RwSyscall, options: RwOptions, made?: Fence): Call {
    try {
      const call = begin(buf, iov, pos, syscall, options, made);
      this.validated = this.since();
      const u32 = buf.sync.u32;
      this.context = u32[(call.own.offset + FENCE_CONTEXT) >>> 2];
      this.seqno = u32[(call.own.offset + FENCE_SEQNO) >>> 2];
      return call;
    } catch (e) {
      this.failed(e);
      this.record(buf.offset, syscall, 0, 0, 0);
      throw e;
    }
  }

  waited(): void {
    this.waitedAt = this.since();
  }

  copied(): void {
    this.copiedAt = this.since();
  }

  failed(e: unknown): void {
    this.errno = e instanceof DmaBufError ? e.errno : 5;
  }

  end(call: Call): void {
    this.record(call.p.buf.offset, call.p.syscall, call.p.pos, this.copiedAt === NOT_REACHED ? 0 : call.p.bytes, call.deps.length);
  }

  private record(buffer: number, syscall: RwSyscall, pos: number, bytes: number, deps: number): void {
    this.trace.record(T_RW, RW_SYSCALLS.indexOf(syscall), this.t0, this.trace.now(), buffer, pos, bytes,
      this.context, this.seqno, this.flags, this.validated, this.waitedAt, this.copiedAt, this.errno, deps);
  }
}

/** preadv: reads from `pos` into the iovecs; returns the bytes read (0 at or past the end). */
export const preadv = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwSyncOptions = {}): number =>
  runSync(buf, iov, pos, "preadv", options);
/** pwritev: writes the iovecs at `pos`; returns the bytes written (short at the end). */
export const pwritev = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwSyncOptions = {}): number =>
  runSync(buf, iov, pos, "pwritev", options);
export const preadvAsync = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwAsyncOptions = {}): Promise<number> =>
  runAsync(buf, iov, pos, "preadv", options);
export const pwritevAsync = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwAsyncOptions = {}): Promise<number> =>
  runAsync(buf, iov, pos, "pwritev", options);

/** The path for a named system call: its direction follows from the name. */
export const rwSync = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, syscall: RwSyscall, options: RwSyncOptions = {}): number =>
  runSync(buf, iov, pos, syscall, options);
export const rwAsync = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, syscall: RwSyscall, options: RwAsyncOptions = {}): Promise<number> =>
  runAsync(buf, iov, pos, syscall, options);

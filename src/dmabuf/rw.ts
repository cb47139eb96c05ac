/*
 * The read/write path (the 2025 proposal: read_iter/write_iter on dma-buf
 * fds): pread and pwrite of user memory against a buffer, with the kernel's
 * implicit synchronization applied by the path itself.
 *
 * One call:
 *   1. Validates everything (position, iovecs, the strategy) before anything
 *      changes.
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
 * grows), one at or past the end with bytes to write is ENOSPC. Write-combined
 * and uncached buffers are written with the line-granular SIMD strategy
 * (whole 64-byte lines where the range allows) and read with bulk copies.
 * In a non-coherent lab the copy goes through the buffer's CPU cache with
 * the maintenance done here (coherence.ts): the range's lines are refilled
 * from memory first, and after a write its changed lines are cleaned back.
 * Every call has an async twin that waits with waitAsync.
 */
import { DmaBufError } from "../errno.js";
import type { StrategyName } from "../engine/strategy.js";
import { SgTable } from "../engine/tables.js";
import { nowMs, requireBlocking } from "../memory/futex.js";
import type { Fence } from "../sync/fence.js";
import type { Sync } from "../sync/sync.js";
import type { Timeline } from "../sync/timeline.js";
import { CACHING_CACHED, type DmaBufRecord } from "./dma_buf.js";
import { bufferRuns, iovRuns, zipRuns } from "./runs.js";
import { CpuCache } from "./coherence.js";

export interface RwOptions {
  /** O_NONBLOCK: EAGAIN instead of waiting for a pending fence. */
  nonblock?: boolean;
  /** Give up waiting after this long: ETIMEDOUT, nothing copied. */
  timeoutMs?: number;
  /** Override the copy strategy (default: by the buffer's caching attribute). */
  strategy?: StrategyName;
  /**
   * How each dependency is waited for (default Fence.wait, waitAsync in the
   * async twins), e.g. to time the waits or to spin; the blocking forms need
   * a step that answers synchronously.
   */
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

interface Plan {
  buf: DmaBufRecord;
  iov: Uint8Array[];
  pos: number;
  bytes: number;
  write: boolean;
  strategy: StrategyName;
}

function plan(buf: DmaBufRecord, iov: Uint8Array[], pos: number, write: boolean, options: RwOptions): Plan {
  const syscall = write ? "pwrite" : "pread";
  if (!Number.isSafeInteger(pos) || pos < 0) throw new DmaBufError("EINVAL", syscall, `position ${pos} must be a non-negative integer`);
  if (!Array.isArray(iov)) throw new DmaBufError("EFAULT", syscall, "the iovecs must be an array of Uint8Array");
  let total = 0;
  for (const v of iov) {
    if (!(v instanceof Uint8Array)) throw new DmaBufError("EFAULT", syscall, "every iovec must be a Uint8Array");
    total += v.byteLength;
  }
  const size = buf.size;
  if (write && pos >= size && total > 0) {
    throw new DmaBufError("ENOSPC", syscall, `position ${pos} is at or past the end of a ${size}-byte dma-buf (it never grows)`);
  }
  const bytes = Math.max(0, Math.min(total, size - pos));
  const strategy = options.strategy ?? (buf.caching === CACHING_CACHED ? "auto" : write ? "simd" : "bulk");
  return { buf, iov, pos, bytes, write, strategy };
}

/** Step 4: one engine call for arena views; the slow path for the others. */
function copy(p: Plan): void {
  const { buf, iov, pos, bytes, write, strategy } = p;
  const { sync } = buf;
  const { arena } = sync;
  // Non-coherent labs: the path goes through the CPU cache and maintains
  // the range's whole lines itself (invalidate before, clean after a write).
  const cache = CpuCache.of(buf);
  cache?.invalidate(pos, bytes, false);
  const target = cache ? [{ addr: cache.copy + pos, len: bytes }] : bufferRuns(buf, pos, bytes);
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
  if (write) cache?.cleanRange(pos, bytes, false);
}

/** How one call waits for a dependency: the time left (> 0) or 0 on timeout. */
export type WaitStep = (fence: Fence, timeoutMs: number) => number | Promise<number>;
const blocking: WaitStep = (f, ms) => f.wait(ms);
const nonBlocking: WaitStep = (f, ms) => f.waitAsync(ms);

/**
 * Steps 1 to 5 for either kind of wait: the dependencies are waited for one
 * after the other, synchronously or through Promises as `wait` answers, and
 * the own fence is signalled (and the dependencies put) however it ends.
 */
function run(buf: DmaBufRecord, iov: Uint8Array[], pos: number, write: boolean, options: RwOptions, wait: WaitStep): number | Promise<number> {
  const p = plan(buf, iov, pos, write, options);
  const syscall = write ? "pwrite" : "pread";
  // Step 2. The own fence is put in every path (run's end), so it needs no
  // FinalizationRegistry.
  const own = cpu(buf.sync).timeline.createFence(undefined, false);
  let deps: Fence[];
  try {
    deps = buf.resv.publishAccess(own, write, options.nonblock === true, syscall);
  } catch (e) {
    own.put();
    throw e;
  }
  const end = () => {
    for (const d of deps) d.put();
    own.signal();
    own.put();
  };
  if (deps.length === 0) {
    // Nothing to wait for (the common case): copy and signal.
    try {
      copy(p);
      return p.bytes;
    } finally {
      end();
    }
  }
  if (wait === blocking) {
    // It would block: where this thread may not, say so with the call's
    // own name before anything waits (the dependencies are put by end()).
    try {
      requireBlocking(syscall, `${syscall}Async() (readAsync()/writeAsync() on a DmaBuf)`);
    } catch (e) {
      end();
      throw e;
    }
  }
  const timeout = options.timeoutMs ?? Infinity;
  const start = nowMs();
  const checked = (left: number) => {
    if (left === 0) throw new DmaBufError("ETIMEDOUT", syscall, `a fence of the dma-buf did not signal within ${timeout} ms`);
  };
  const from = (i: number): number | Promise<number> => {
    for (; i < deps.length; i++) {
      const left = wait(deps[i], Math.max(0, timeout - (nowMs() - start)));
      if (left instanceof Promise) {
        const next = i + 1;
        return left.then((l) => { checked(l); return from(next); });
      }
      checked(left);
    }
    copy(p);
    return p.bytes;
  };
  let async = false;
  try {
    const r = from(0);
    if (r instanceof Promise) {
      async = true;
      return r.finally(end);
    }
    return r;
  } finally {
    if (!async) end();
  }
}

/** preadv: reads from `pos` into the iovecs; returns the bytes read (0 at the end). */
export const preadv = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwOptions = {}): number =>
  run(buf, iov, pos, false, options, options.wait ?? blocking) as number;
/** pwritev: writes the iovecs at `pos`; returns the bytes written (short at the end). */
export const pwritev = (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwOptions = {}): number =>
  run(buf, iov, pos, true, options, options.wait ?? blocking) as number;
export const preadvAsync = async (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwOptions = {}): Promise<number> =>
  run(buf, iov, pos, false, options, options.wait ?? nonBlocking);
export const pwritevAsync = async (buf: DmaBufRecord, iov: Uint8Array[], pos: number, options: RwOptions = {}): Promise<number> =>
  run(buf, iov, pos, true, options, options.wait ?? nonBlocking);

/*
 * The read/write path's fast path: the whole common small call in one engine
 * call (assembly/rw.ts, rw_fast), for the case that matters to a thread
 * doing many small reads and writes on its own buffer.
 *
 * The common case, decided here before anything changes:
 *   - the call's arguments are what the full path (rw.ts) accepts without a
 *     question: one iovec, a Uint8Array inside the arena's DMA range, a
 *     position that is a safe integer inside the buffer, bytes to move, no
 *     strategy override, a valid timeout;
 *   - the buffer is cached and the lab coherent (no CPU cache to maintain);
 *   - the range [pos, pos + n) lies in one segment of the scatter list;
 *   - nothing observes the path from outside: no trace category records
 *     (src/trace: rw, fence and resv events come from the full path only).
 * The engine then decides the rest under the resv lock: the lock free at
 * once, nothing pending that the call must wait for, a reserved slot free.
 * When any of it fails, nothing has changed and the full path runs with the
 * fence made here (fallback()): same semantics, same errors, same events.
 *
 * What the fast path does is the full path's steps 2 to 5 with nothing to
 * wait for: the resv's fence list, the lock's statistics, the fence's
 * context, seqno and error are the same afterwards. Two differences, both
 * invisible to implicit sync: the fence's timestamp is taken just before
 * the call (the copy of at most a segment lies between it and the signal),
 * and this thread's fence callbacks are not dispatched for the call's own
 * fence, which no callback can be attached to (it is created and signalled
 * inside the call; a container this thread watches cannot hold it).
 *
 * rwFastPath is this thread's switch and counters: `enabled` (default
 * true; false sends every call to the full path, which the differential
 * test and bench rw compare against), the calls done in one engine call
 * (`taken`) and those the engine sent back (`fallbacks`).
 */
import { DmaBufError, hex } from "../errno.js";
import { RW_FAST_FALLBACK, SG_SEG_ADDR, SG_SEG_LEN, SG_SEG_SIZE } from "../engine/abi.js";
import { threadToken } from "../memory/futex.js";
import type { Fence } from "../sync/fence.js";
import { CAT_FENCE, CAT_RESV, CAT_RW } from "../trace/events.js";
import { isCoherent } from "./coherence.js";
import { CACHING_CACHED, DMABUF_CACHING, DMABUF_NSEGMENTS, DMABUF_SEGMENTS, DMABUF_SIZE, type DmaBufRecord } from "./dma_buf.js";

/** This thread's switch of the fast path and its counters (see the module comment). */
export const rwFastPath = { enabled: true, taken: 0, fallbacks: 0 };

/** What the full path must not miss: every trace category it records from. */
const OBSERVED = CAT_RW | CAT_FENCE | CAT_RESV;

/** The common case's copy: buffer address, user address, bytes. */
export interface FastCopy {
  bufAddr: number;
  userAddr: number;
  n: number;
}

/**
 * The copy of a call in the common case, or undefined when the call must
 * take the full path. Reads only; throws nothing (an argument the full path
 * would refuse makes the call uncommon, and the full path refuses it).
 */
export function fastCopy(buf: DmaBufRecord, iov: unknown, pos: unknown, options: { strategy?: unknown; timeoutMs?: unknown }): FastCopy | undefined {
  const { sync } = buf;
  if (!rwFastPath.enabled || sync.trace.on(OBSERVED) || options.strategy !== undefined) return undefined;
  const t = options.timeoutMs;
  if (t !== undefined && t !== null && !(typeof t === "number" && t >= 0)) return undefined;
  if (!Array.isArray(iov) || iov.length !== 1) return undefined;
  const v: unknown = iov[0];
  if (!(v instanceof Uint8Array) || v.buffer !== sync.arena.buffer) return undefined;
  if (typeof pos !== "number" || !Number.isSafeInteger(pos) || pos < 0) return undefined;
  const u32 = sync.u32;
  const rec = buf.offset >>> 2;
  const size = u32[rec + (DMABUF_SIZE >>> 2)];
  if (pos >= size || v.byteLength === 0) return undefined;
  const n = Math.min(v.byteLength, size - pos);
  const userAddr = v.byteOffset;
  const { arena } = sync;
  if (userAddr < arena.dmaLo || userAddr + v.byteLength > arena.dmaHi) return undefined;
  if (u32[rec + (DMABUF_CACHING >>> 2)] !== CACHING_CACHED || !isCoherent(arena)) return undefined;
  // The segment holding [pos, pos + n), read from the scatter list's words.
  const list = u32[rec + (DMABUF_SEGMENTS >>> 2)];
  const count = u32[rec + (DMABUF_NSEGMENTS >>> 2)];
  let skip = pos;
  for (let i = 0; i < count; i++) {
    const at = (list + i * SG_SEG_SIZE) >>> 2;
    const len = u32[at + (SG_SEG_LEN >>> 2)];
    if (skip < len) return skip + n <= len ? { bufAddr: u32[at + (SG_SEG_ADDR >>> 2)] + skip, userAddr, n } : undefined;
    skip -= len;
  }
  return undefined;
}

/**
 * The call in one engine call with `own`, a new pending fence of the
 * thread's CPU timeline (owned, untracked): true when done (own put, the
 * bytes moved, n returned by the caller); false when the engine sent it
 * back, nothing changed and `own` still owned, for the full path.
 */
export function fastRun(buf: DmaBufRecord, own: Fence, write: boolean, c: FastCopy): boolean {
  const { sync } = buf;
  const dst = write ? c.bufAddr : c.userAddr;
  const src = write ? c.userAddr : c.bufAddr;
  const rc = sync.engine.wasm.rw_fast(buf.resv.offset, own.offset, write ? 1 : 0, dst, src, c.n, threadToken(), sync.clock.nowNs());
  if (rc === RW_FAST_FALLBACK) {
    rwFastPath.fallbacks++;
    return false;
  }
  if (rc < 0) throw new DmaBufError(DmaBufError.codeOf(rc), "rw_fast", `dma-buf ${hex(buf.offset)}: its reservation object or fence is not in the sync heap`);
  rwFastPath.taken++;
  if (rc !== 0) sync.unref(rc);
  own.put();
  return true;
}

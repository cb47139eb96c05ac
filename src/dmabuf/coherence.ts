/*
 * The cache-coherence model.
 *
 * Coherent (the default, x86-like): CPU and devices see the same memory;
 * there is nothing to maintain and CpuCache.of() is null.
 *
 * Non-coherent (ARM-like, Lab.create({ coherent: false })): the CPU reaches a
 * cached buffer through a simulated write-back cache of 64-byte lines. The
 * cache is a CPU copy of the buffer (DMABUF_CPU_COPY, linear, in user
 * memory) plus a clean snapshot of it (DMABUF_CPU_CLEAN: what the cache last
 * exchanged with memory). Devices see only memory (the buffer's pages).
 *   invalidate(pos, len)  begin_cpu_access: the lines of the range are
 *                         refilled from memory; CPU writes to them that were
 *                         not cleaned are lost, as on hardware
 *   clean(pos, len)       end_cpu_access: the lines of the range where the
 *                         cache differs from its snapshot are written back
 *                         to memory (only those: a device's writes to other
 *                         lines survive); the snapshot takes their value
 * A range that starts or ends inside a line is counted (DMABUF_PARTIAL) and
 * reported: on hardware, maintenance of that line spills onto its
 * neighbours. The read/write path maintains whole lines itself and is not
 * counted. Write-combined and uncached buffers bypass the cache. The cache
 * is made on first use, filled from memory (any thread; the first to claim
 * it makes it, the others wait for its publish).
 */
import { CACHE_LINE, CTL_NON_COHERENT } from "../memory/layout.js";
import { futexWait } from "../memory/futex.js";
import { SgTable } from "../engine/tables.js";
import type { Arena } from "../memory/arena.js";
import { CACHING_CACHED, DMABUF_CPU_CLEAN, DMABUF_CPU_COPY, DMABUF_PARTIAL, type DmaBufRecord } from "./dma_buf.js";
import { bufferRuns, zipRuns } from "./runs.js";

/** DMABUF_CPU_COPY while a thread makes the cache (odd: never a block offset). */
const CLAIMED = 1;

export function isCoherent(arena: Arena): boolean {
  return arena.u32[arena.control(CTL_NON_COHERENT) >>> 2] === 0;
}

export function setCoherent(arena: Arena, coherent: boolean): void {
  arena.u32[arena.control(CTL_NON_COHERENT) >>> 2] = coherent ? 0 : 1;
}

export interface Maintenance {
  /** The range split a cache line at its start or end. */
  partial: boolean;
  /** Lines written back (clean) or refilled (invalidate). */
  lines: number;
}

export class CpuCache {
  private constructor(readonly buf: DmaBufRecord, readonly copy: number, readonly clean: number) {}

  /**
   * The buffer's CPU cache, or null where there is none (coherent lab,
   * uncached buffer). The first user makes it: it claims DMABUF_CPU_COPY
   * (CLAIMED), fills both copies, then publishes the copy's offset; a thread
   * that finds the word claimed waits for that publish.
   */
  static of(buf: DmaBufRecord): CpuCache | null {
    const { arena } = buf.sync;
    if (isCoherent(arena) || buf.caching !== CACHING_CACHED) return null;
    const i32 = arena.i32;
    const copyWord = (buf.offset + DMABUF_CPU_COPY) >>> 2;
    let copy = Atomics.load(i32, copyWord);
    if (copy === 0 && Atomics.compareExchange(i32, copyWord, 0, CLAIMED) === 0) {
      // This thread makes the cache; the others wait for it (below).
      const user = arena.user;
      const order = user.orderFor(buf.size);
      let fresh = 0;
      try {
        fresh = user.alloc(order, "dma_buf_cache");
        const snapshot = user.alloc(order, "dma_buf_cache");
        buf.sync.engine.gather(buf.segmentTable, fresh);
        buf.sync.engine.copy(snapshot, fresh, buf.size);
        arena.u32[(buf.offset + DMABUF_CPU_CLEAN) >>> 2] = snapshot;
      } catch (e) {
        if (fresh !== 0) user.free(fresh, undefined, "dma_buf_cache");
        Atomics.store(i32, copyWord, 0);
        Atomics.notify(i32, copyWord);
        throw e;
      }
      // Publish: the seq-cst store orders the fill and DMABUF_CPU_CLEAN before it.
      Atomics.store(i32, copyWord, fresh);
      Atomics.notify(i32, copyWord);
      copy = fresh;
    }
    while (copy === CLAIMED || copy === 0) {
      // Another thread is making it (a few µs): wait for its publish, bounded.
      if (copy === CLAIMED) futexWait(i32, copyWord, CLAIMED, 1000);
      copy = Atomics.load(i32, copyWord);
      if (copy === 0) return CpuCache.of(buf); // its allocation failed: try again
    }
    return new CpuCache(buf, copy, arena.u32[(buf.offset + DMABUF_CPU_CLEAN) >>> 2]);
  }

  /** The CPU's view of the whole buffer (what an mmap of it shows). */
  cpuView(): Uint8Array {
    return this.buf.sync.arena.view(this.copy, this.buf.size);
  }

  /** The number of maintenance calls so far on ranges that split a line. */
  get partialSyncs(): number {
    return Atomics.load(this.buf.sync.i32, (this.buf.offset + DMABUF_PARTIAL) >>> 2);
  }

  /** begin_cpu_access: refill the range's lines from memory. */
  invalidate(pos = 0, len = this.buf.size, counted = true): Maintenance {
    const { start, end, partial } = this.lines(pos, len, counted);
    const table = this.table();
    zipRuns(bufferRuns(this.buf, start, end - start), [{ addr: this.copy + start, len: end - start }], (m, mOff, c, cOff, n) => {
      table.push(c.addr + cOff, m.addr + mOff, n);
    });
    table.push(this.clean + start, this.copy + start, end - start);
    this.run(table);
    return { partial, lines: (end - start) / CACHE_LINE };
  }

  /** end_cpu_access: write the range's changed lines back to memory. */
  cleanRange(pos = 0, len = this.buf.size, counted = true): Maintenance {
    const { start, end, partial } = this.lines(pos, len, counted);
    const { i32 } = this.buf.sync;
    const dirty: { addr: number; len: number }[] = [];
    for (let line = start; line < end; line += CACHE_LINE) {
      if (sameLine(i32, this.copy + line, this.clean + line)) continue;
      const last = dirty[dirty.length - 1];
      if (last !== undefined && last.addr + last.len === line) last.len += CACHE_LINE;
      else dirty.push({ addr: line, len: CACHE_LINE });
    }
    const table = this.table();
    for (const d of dirty) {
      zipRuns([{ addr: this.copy + d.addr, len: d.len }], bufferRuns(this.buf, d.addr, d.len), (c, cOff, m, mOff, n) => {
        table.push(m.addr + mOff, c.addr + cOff, n);
      });
      table.push(this.clean + d.addr, this.copy + d.addr, d.len);
    }
    this.run(table);
    return { partial, lines: dirty.reduce((n, d) => n + d.len / CACHE_LINE, 0) };
  }

  /**
   * The whole lines covering [pos, pos + len) clipped to the buffer; a range
   * at or past the end is empty (start === end), never a negative length.
   */
  private lines(pos: number, len: number, counted: boolean): { start: number; end: number; partial: boolean } {
    const size = this.buf.size;
    pos = Math.min(Math.max(0, pos), size);
    const end = Math.min(size, pos + Math.max(0, len));
    const partial = pos % CACHE_LINE !== 0 || (end % CACHE_LINE !== 0 && end !== this.buf.size);
    if (partial && counted) Atomics.add(this.buf.sync.i32, (this.buf.offset + DMABUF_PARTIAL) >>> 2, 1);
    return {
      start: pos - (pos % CACHE_LINE),
      end: Math.min(size, Math.ceil(end / CACHE_LINE) * CACHE_LINE),
      partial,
    };
  }

  private table(): SgTable {
    return new SgTable(this.buf.sync.arena);
  }

  private run(table: SgTable): void {
    try {
      if (table.count > 0) this.buf.sync.engine.sgCopy(table, "bulk");
    } finally {
      table.free();
    }
  }
}

/** Whether the 64-byte lines at a and b (both 4-byte aligned) hold the same bytes; no Node Buffer, for browsers. */
function sameLine(i32: Int32Array, a: number, b: number): boolean {
  for (let i = 0; i < CACHE_LINE; i += 4) if (i32[(a + i) >>> 2] !== i32[(b + i) >>> 2]) return false;
  return true;
}

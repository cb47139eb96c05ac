/*
 * A buddy allocator whose whole state lives in the arena, like the kernel's
 * page allocator: blocks of 2^order granules, split on allocation and
 * coalesced with their buddy on free. Two instances serve the lab: the page
 * pool (4 KiB granules, the heaps' pages) and user memory (64-byte granules,
 * lab.alloc()).
 *
 * Contract: any thread may call alloc/free at any time; every change happens
 * under the state block's mutex. alloc gives ENOMEM and changes nothing when
 * no block is large enough; free gives EINVAL and changes nothing for an
 * offset that is not the start of an allocated block (double free, foreign
 * or interior offset). Blocks are aligned to their size relative to the
 * region base, which the layout aligns to 2 MiB.
 *
 * State block (all u32 unless said):
 *   BUDDY_LOCK        the mutex (MUTEX_BYTES)
 *   BUDDY_BASE        byte offset of the region
 *   BUDDY_GRANULES    region size in granules
 *   BUDDY_SHIFT       log2 of the granule size
 *   BUDDY_MAX_ORDER    the largest order
 *   BUDDY_FREE        free granules
 *   BUDDY_ALLOCS      successful allocations
 *   BUDDY_FREES       frees
 *   BUDDY_FAILURES    allocations refused with ENOMEM
 *   BUDDY_FREE_COUNT   free blocks per order, MAX_ORDERS words
 *   BUDDY_FREE_HEAD    head of each order's free list (granule index, NIL = empty)
 *   BUDDY_MAP         one byte per granule: HEAD | FREE? | order at a block's
 *                     first granule, 0 inside a block
 * A free block keeps its list links in its own first 8 bytes (next, prev:
 * granule indices), as the block's contents are garbage while it is free.
 */
import { DmaBufError, hex } from "../errno.js";
import { MUTEX_BYTES, Mutex, type MutexStats } from "./mutex.js";
import { RecordView } from "./record.js";

export const MAX_ORDERS = 32;
/** The order at which stats().fragmentation is read (1 MiB of pages). */
export const FRAGMENTATION_ORDER = 8;
export const BUDDY_LOCK = 0;
export const BUDDY_BASE = MUTEX_BYTES;
export const BUDDY_GRANULES = BUDDY_BASE + 4;
export const BUDDY_SHIFT = BUDDY_BASE + 8;
export const BUDDY_MAX_ORDER = BUDDY_BASE + 12;
export const BUDDY_FREE = BUDDY_BASE + 16;
export const BUDDY_ALLOCS = BUDDY_BASE + 20;
export const BUDDY_FREES = BUDDY_BASE + 24;
export const BUDDY_FAILURES = BUDDY_BASE + 28;
export const BUDDY_FREE_COUNT = 64;
export const BUDDY_FREE_HEAD = BUDDY_FREE_COUNT + 4 * MAX_ORDERS;
export const BUDDY_MAP = BUDDY_FREE_HEAD + 4 * MAX_ORDERS;

const NIL = 0xffffffff;
const MAP_HEAD = 0x80;
const MAP_FREE = 0x40;
const MAP_ORDER = 0x1f;
const LINK_NEXT = 0;
const LINK_PREV = 4;

export interface BuddyStats {
  granuleBytes: number;
  totalBytes: number;
  freeBytes: number;
  /** Free blocks per order (index = order). */
  freeBlocks: number[];
  largestFreeBytes: number;
  /**
   * The kernel's unusable free space index per order (as in
   * /sys/kernel/debug/extfrag/unusable_index): the share of free memory in
   * blocks too small for an allocation of that order. 0 when nothing is free.
   */
  unusable: number[];
  /** unusable[FRAGMENTATION_ORDER]: how much free memory cannot serve a 256-granule block. */
  fragmentation: number;
  allocs: number;
  frees: number;
  failures: number;
  lock: MutexStats;
}

export class BuddyAllocator {
  /** Bytes of state for a region of `granules` granules. */
  static stateBytes(granules: number): number {
    return BUDDY_MAP + granules;
  }

  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly mutex: Mutex;
  /** The state block's named words. */
  private readonly words: RecordView;
  readonly base: number;
  readonly granules: number;
  readonly shift: number;
  readonly maxOrder: number;
  /** Bytes per granule (2^shift), a field: the hot paths read it per call. */
  readonly granuleBytes: number;

  /** A view of an initialised state block at `state`, from any thread. */
  constructor(buffer: ArrayBufferLike, readonly state: number, readonly name: string) {
    this.u8 = new Uint8Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.words = new RecordView({ u32: this.u32, i32: new Int32Array(buffer), f64: new Float64Array(buffer) }, state);
    this.mutex = new Mutex(buffer, state + BUDDY_LOCK);
    this.base = this.words.word(BUDDY_BASE);
    this.granules = this.words.word(BUDDY_GRANULES);
    this.shift = this.words.word(BUDDY_SHIFT);
    this.maxOrder = this.words.word(BUDDY_MAX_ORDER);
    this.granuleBytes = 2 ** this.shift;
  }

  /** Writes a fresh state block: the whole region free in maximal aligned blocks. */
  static init(buffer: ArrayBufferLike, state: number, base: number, bytes: number, shift: number): void {
    const u8 = new Uint8Array(buffer);
    const u32 = new Uint32Array(buffer);
    const granules = Math.floor(bytes / 2 ** shift);
    u8.fill(0, state, state + BuddyAllocator.stateBytes(granules));
    new Mutex(buffer, state + BUDDY_LOCK).init();
    const w = (off: number, v: number) => { u32[(state + off) >>> 2] = v; };
    w(BUDDY_BASE, base);
    w(BUDDY_GRANULES, granules);
    w(BUDDY_SHIFT, shift);
    w(BUDDY_MAX_ORDER, Math.min(MAX_ORDERS - 1, Math.floor(Math.log2(granules))));
    for (let o = 0; o < MAX_ORDERS; o++) w(BUDDY_FREE_HEAD + 4 * o, NIL);
    const a = new BuddyAllocator(buffer, state, "init");
    for (let idx = 0; idx < granules;) {
      let order = a.maxOrder;
      while (idx % 2 ** order !== 0 || idx + 2 ** order > granules) order--;
      a.push(order, idx);
      idx += 2 ** order;
    }
    w(BUDDY_FREE, granules);
  }

  /** The order of the smallest block holding `bytes` with the given alignment. */
  orderFor(bytes: number, align = 1): number {
    const need = Math.max(bytes, align, this.granuleBytes);
    return Math.max(0, Math.ceil(Math.log2(need)) - this.shift);
  }

  /** Allocates a block of 2^order granules; returns its byte offset. */
  alloc(order: number, syscall = "alloc"): number {
    if (!Number.isInteger(order) || order < 0 || order > this.maxOrder) {
      throw new DmaBufError("EINVAL", syscall, `${this.name}: order ${order} is outside 0..${this.maxOrder}`);
    }
    return this.mutex.with(() => {
      const idx = this.takeBlock(order, syscall);
      this.markAllocated(idx, order);
      return this.base + idx * this.granuleBytes;
    });
  }

  /**
   * Allocates exactly `granules` contiguous granules (like CMA): a block of
   * the next power of two is split into aligned pieces, the first ones
   * covering the run and the rest going back to the free lists. Returns the
   * pieces in address order; each is freed on its own with free(offset, order).
   */
  allocRun(granules: number, syscall = "alloc_run"): { offset: number; order: number }[] {
    const order = Math.ceil(Math.log2(granules));
    if (!Number.isInteger(granules) || granules < 1 || order > this.maxOrder) {
      throw new DmaBufError("EINVAL", syscall, `${this.name}: a run of ${granules} granules does not fit this allocator`);
    }
    return this.mutex.with(() => {
      const idx = this.takeBlock(order, syscall);
      const pieces: { offset: number; order: number }[] = [];
      let pos = idx;
      for (let b = order; b >= 0; b--) {
        if ((granules & 2 ** b) === 0) continue;
        this.markAllocated(pos, b);
        pieces.push({ offset: this.base + pos * this.granuleBytes, order: b });
        pos += 2 ** b;
      }
      // The tail of the block goes back in maximal aligned pieces.
      const end = idx + 2 ** order;
      while (pos < end) {
        let b = 0;
        while (pos % 2 ** (b + 1) === 0 && pos + 2 ** (b + 1) <= end) b++;
        this.push(b, pos);
        pos += 2 ** b;
      }
      return pieces;
    });
  }

  /** Under the lock: removes a free block of at least `order`, split down to it. */
  private takeBlock(order: number, syscall: string): number {
    let k = order;
    while (k <= this.maxOrder && this.head(k) === NIL) k++;
    if (k > this.maxOrder) {
      this.bump(BUDDY_FAILURES, 1);
      throw new DmaBufError("ENOMEM", syscall,
        `${this.name}: no free block of order ${order} (${this.granuleBytes * 2 ** order} bytes); ` +
        `${this.words.word(BUDDY_FREE) * this.granuleBytes} bytes free in smaller blocks`);
    }
    const idx = this.head(k);
    this.remove(k, idx);
    while (k > order) {
      k--;
      this.push(k, idx + 2 ** k);
    }
    return idx;
  }

  private markAllocated(idx: number, order: number): void {
    this.u8[this.state + BUDDY_MAP + idx] = MAP_HEAD | order;
    this.bump(BUDDY_FREE, -(2 ** order));
    this.bump(BUDDY_ALLOCS, 1);
  }

  /**
   * Frees the block at `offset`; returns its order. With `order` given, it
   * must match the block's (like the kernel's __free_pages).
   */
  free(offset: number, order?: number, syscall = "free"): number {
    const rel = offset - this.base;
    const idx = rel / this.granuleBytes;
    if (!Number.isInteger(idx) || idx < 0 || idx >= this.granules) {
      throw new DmaBufError("EINVAL", syscall, `${this.name}: offset ${hex(offset)} is not a block of this allocator`);
    }
    return this.mutex.with(() => {
      const m = this.u8[this.state + BUDDY_MAP + idx];
      if ((m & MAP_HEAD) === 0 || (m & MAP_FREE) !== 0) {
        const what = (m & MAP_FREE) !== 0 ? "already free (double free?)" : "not the start of an allocated block";
        throw new DmaBufError("EINVAL", syscall, `${this.name}: offset ${hex(offset)} is ${what}`);
      }
      let k = m & MAP_ORDER;
      if (order !== undefined && order !== k) {
        throw new DmaBufError("EINVAL", syscall, `${this.name}: block at ${hex(offset)} has order ${k}, not ${order}`);
      }
      const freed = k;
      this.bump(BUDDY_FREE, 2 ** k);
      this.bump(BUDDY_FREES, 1);
      let i = idx;
      while (k < this.maxOrder) {
        const buddy = i ^ 2 ** k;
        if (buddy + 2 ** k > this.granules) break;
        if (this.u8[this.state + BUDDY_MAP + buddy] !== (MAP_HEAD | MAP_FREE | k)) break;
        this.remove(k, buddy);
        this.u8[this.state + BUDDY_MAP + Math.max(i, buddy)] = 0;
        i = Math.min(i, buddy);
        k++;
      }
      this.u8[this.state + BUDDY_MAP + idx] = 0;
      this.push(k, i);
      return freed;
    });
  }

  /** The order of the allocated block at `offset`, or -1 if there is none. */
  orderAt(offset: number): number {
    const idx = (offset - this.base) / this.granuleBytes;
    if (!Number.isInteger(idx) || idx < 0 || idx >= this.granules) return -1;
    const m = Atomics.load(this.u8, this.state + BUDDY_MAP + idx);
    return (m & MAP_HEAD) !== 0 && (m & MAP_FREE) === 0 ? m & MAP_ORDER : -1;
  }

  contains(offset: number): boolean {
    return offset >= this.base && offset < this.base + this.granules * this.granuleBytes;
  }

  stats(): BuddyStats {
    return this.mutex.with(() => {
      const g = this.granuleBytes;
      const freeBlocks: number[] = [];
      let largest = 0;
      for (let o = 0; o <= this.maxOrder; o++) {
        const n = this.words.word(BUDDY_FREE_COUNT + 4 * o);
        freeBlocks.push(n);
        if (n > 0) largest = g * 2 ** o;
      }
      const freeGranules = this.words.word(BUDDY_FREE);
      const freeBytes = freeGranules * g;
      const unusable: number[] = [];
      let below = 0;
      for (let o = 0; o <= this.maxOrder; o++) {
        unusable.push(freeGranules === 0 ? 0 : below / freeGranules);
        below += freeBlocks[o] * 2 ** o;
      }
      return {
        granuleBytes: g,
        totalBytes: this.granules * g,
        freeBytes,
        freeBlocks,
        largestFreeBytes: largest,
        unusable,
        fragmentation: unusable[Math.min(FRAGMENTATION_ORDER, this.maxOrder)],
        allocs: this.words.word(BUDDY_ALLOCS),
        frees: this.words.word(BUDDY_FREES),
        failures: this.words.word(BUDDY_FAILURES),
        lock: this.mutex.stats(),
      };
    });
  }

  // Free lists: doubly linked through the free blocks, head per order.
  // Called with the mutex held (or before the state block is shared).

  private bump(off: number, delta: number): void {
    this.words.setWord(off, this.words.word(off) + delta);
  }

  private head(order: number): number {
    return this.words.word(BUDDY_FREE_HEAD + 4 * order);
  }

  private link(idx: number, field: number): number {
    return ((this.base + idx * this.granuleBytes + field) >>> 2);
  }

  private push(order: number, idx: number): void {
    const head = this.head(order);
    this.u32[this.link(idx, LINK_NEXT)] = head;
    this.u32[this.link(idx, LINK_PREV)] = NIL;
    if (head !== NIL) this.u32[this.link(head, LINK_PREV)] = idx;
    this.words.setWord(BUDDY_FREE_HEAD + 4 * order, idx);
    this.u8[this.state + BUDDY_MAP + idx] = MAP_HEAD | MAP_FREE | order;
    this.bump(BUDDY_FREE_COUNT + 4 * order, 1);
  }

  private remove(order: number, idx: number): void {
    const next = this.u32[this.link(idx, LINK_NEXT)];
    const prev = this.u32[this.link(idx, LINK_PREV)];
    if (prev === NIL) this.words.setWord(BUDDY_FREE_HEAD + 4 * order, next);
    else this.u32[this.link(prev, LINK_NEXT)] = next;
    if (next !== NIL) this.u32[this.link(next, LINK_PREV)] = prev;
    this.u8[this.state + BUDDY_MAP + idx] = 0;
    this.bump(BUDDY_FREE_COUNT + 4 * order, -1);
  }
}

/*
 * dma_buf: a buffer of pages from the page pool, shared by every thread of
 * the lab. The record lives in the arena, so a buffer crosses threads as an
 * offset (DmaBufRecord.attach), the way a file descriptor crosses processes.
 *
 * Record (DMABUF_*, 128 bytes in the sync heap):
 *   DMABUF_REFCOUNT  i32: references (files, mappings, attachments, views);
 *                    the pages, lists and reservation object go with the last
 *   DMABUF_FILES     i32: open files (fd table entries, in any thread) that
 *                    refer to the buffer: fdinfo's count; each also holds a
 *                    reference (openFile/closeFile)
 *   DMABUF_SIZE      u32: bytes, a whole number of pages
 *   DMABUF_PIECES    u32: the page allocation, {offset u32, order u32}[] in
 *                    buffer order (what free() gives back to the page pool)
 *   DMABUF_NPIECES   u32
 *   DMABUF_SEGMENTS  u32: the scatter list the engine walks, SG_SEG format
 *                    {addr u32, len u32}[]: the pieces with physically
 *                    adjacent ones merged (sg_alloc_table_from_pages does too);
 *                    in user memory, where the engine reads sg tables
 *   DMABUF_NSEGMENTS u32
 *   DMABUF_RESV      u32: the buffer's reservation object (dma_resv)
 *   DMABUF_CACHING   u32: CACHING_CACHED, CACHING_WRITE_COMBINE, CACHING_UNCACHED
 *   DMABUF_EXPORTER  u32: the exporter (exporterNames): fdinfo's exp_name
 *   DMABUF_NAME_LOCK a Mutex (32 bytes): guards DMABUF_NAME
 *   DMABUF_NAME      32 bytes: DMA_BUF_SET_NAME's name, UTF-8, NUL-padded
 *   DMABUF_BACKING   u32: for a buffer whose pages belong to memfds (udmabuf),
 *                    the list of memfd records it holds a reference on, u32[];
 *                    0 when the buffer owns its pages (heaps)
 *   DMABUF_NBACKING  u32
 *   DMABUF_CPU_COPY  u32: non-coherent labs, cached buffers: the simulated
 *                    CPU cache of the buffer (coherence.ts), in user memory
 *   DMABUF_CPU_CLEAN u32: its clean snapshot
 *   DMABUF_PARTIAL   i32: maintenance calls on ranges that split a cache line
 *   DMABUF_ATTACH    u32: the buffer's attachment list (attachment.ts): its
 *                    first attachment record (64-byte aligned; 0 when none)
 *                    | DMABUF_ATTACH_REVOKED (bit 0), set for good when the
 *                    exporter revoked the buffer (no new attachment or
 *                    mapping). Changed under the resv lock; the bit is read
 *                    with Atomics.load without it. Each attachment holds a
 *                    reference
 *
 * Contract: create() takes the pieces from an exporter (a heap) and owns them
 * from then on; a failed create() gives them back and changes nothing else.
 * With `backing` (udmabuf), the pieces belong to those memfds instead: the
 * buffer holds one memfd reference each (taken by the caller), dropped on
 * release, and never frees the pages itself.
 * Views returned by create()/attach()/get() own a reference; put() drops it.
 */
import { RecordType, RecordView, getRecord, readName, writeName, type RecordTypeId } from "../memory/record.js";
import { DmaBufError, hex } from "../errno.js";
import { SG_SEG_ADDR, SG_SEG_LEN, SG_SEG_SIZE } from "../engine/abi.js";
import type { SegmentSource } from "../engine/tables.js";
import { Mutex } from "../memory/mutex.js";
import { PAGE_SIZE } from "../memory/layout.js";
import { Resv } from "../sync/resv.js";
import type { Sync } from "../sync/sync.js";
import { memfdUnref } from "./memfd.js";

export const DMABUF_REFCOUNT = 0;
export const DMABUF_SIZE = 4;
export const DMABUF_PIECES = 8;
export const DMABUF_NPIECES = 12;
export const DMABUF_SEGMENTS = 16;
export const DMABUF_NSEGMENTS = 20;
export const DMABUF_RESV = 24;
export const DMABUF_CACHING = 28;
export const DMABUF_EXPORTER = 32;
export const DMABUF_FILES = 36;
export const DMABUF_NAME_LOCK = 40;
export const DMABUF_NAME = 72;
export const DMABUF_BACKING = 104;
export const DMABUF_NBACKING = 108;
export const DMABUF_CPU_COPY = 112;
export const DMABUF_CPU_CLEAN = 116;
export const DMABUF_PARTIAL = 120;
export const DMABUF_ATTACH = 124;
export const DMABUF_RECORD_SIZE = 128;
/** DMABUF_ATTACH's low bit (records are 64-byte aligned; the kernel tags a dma_resv_list's fence pointers so). */
export const DMABUF_ATTACH_REVOKED = 1;
export const DMA_BUF_NAME_LEN = 32;

const PIECE_OFFSET = 0;
const PIECE_ORDER = 4;
const PIECE_SIZE = 8;

export const CACHING_CACHED = 1;
export const CACHING_WRITE_COMBINE = 2;
export const CACHING_UNCACHED = 3;
export type Caching = typeof CACHING_CACHED | typeof CACHING_WRITE_COMBINE | typeof CACHING_UNCACHED;

/** Exporter ids as stored in DMABUF_EXPORTER, and their exp_name. */
export const exporterNames = ["", "system", "system-uncached", "cma", "udmabuf"] as const;
export type ExporterName = Exclude<(typeof exporterNames)[number], "">;

export interface PagePiece {
  offset: number;
  order: number;
}

export interface Segment {
  addr: number;
  len: number;
}

export class DmaBufRecord {
  private owned: boolean;

  private readonly view: RecordView;
  /** Set by put(): the view no longer stands for the buffer (its record may be freed or reused). */
  private released = false;

  /** The record's words; EBADF once this view was put. */
  private get rec(): RecordView {
    if (this.released) throw new DmaBufError("EBADF", "dma_buf", `this view of the dma-buf at ${hex(this.offset)} was put`);
    return this.view;
  }

  private constructor(readonly sync: Sync, readonly offset: number, owned: boolean) {
    this.owned = owned;
    this.view = new RecordView(sync, offset);
  }

  /**
   * A new buffer over `pieces` (page-pool blocks, in buffer order), which it
   * owns from now on. On failure the pieces go back to the pool.
   */
  static create(sync: Sync, pieces: PagePiece[], caching: Caching, exporter: ExporterName, backing: number[] = []): DmaBufRecord {
    const pool = sync.arena.pages;
    const records: [number, RecordTypeId][] = [];
    let segmentList = -1;
    let resv: Resv | undefined;
    try {
      const merged = mergeAdjacent(pieces);
      const record = sync.allocRecord(RecordType.dmaBuf, DMABUF_RECORD_SIZE, "dma_buf_export");
      records.push([record, RecordType.dmaBuf]);
      const pieceList = sync.allocRecord(RecordType.dmaBufPieces, pieces.length * PIECE_SIZE, "dma_buf_export");
      records.push([pieceList, RecordType.dmaBufPieces]);
      const user = sync.arena.user;
      segmentList = user.alloc(user.orderFor(merged.length * SG_SEG_SIZE), "dma_buf_export");
      const backingList = backing.length > 0 ? sync.allocRecord(RecordType.dmaBufBacking, backing.length * 4, "dma_buf_export") : 0;
      if (backingList !== 0) records.push([backingList, RecordType.dmaBufBacking]);
      resv = Resv.create(sync);
      const { u32, i32 } = sync;
      backing.forEach((m, i) => { u32[(backingList >>> 2) + i] = m; });
      pieces.forEach((p, i) => {
        u32[(pieceList + i * PIECE_SIZE + PIECE_OFFSET) >>> 2] = p.offset;
        u32[(pieceList + i * PIECE_SIZE + PIECE_ORDER) >>> 2] = p.order;
      });
      merged.forEach((s, i) => {
        u32[(segmentList + i * SG_SEG_SIZE + SG_SEG_ADDR) >>> 2] = s.addr;
        u32[(segmentList + i * SG_SEG_SIZE + SG_SEG_LEN) >>> 2] = s.len;
      });
      const w = (off: number, v: number) => { u32[(record + off) >>> 2] = v; };
      w(DMABUF_SIZE, pieces.reduce((n, p) => n + PAGE_SIZE * 2 ** p.order, 0));
      w(DMABUF_PIECES, pieceList);
      w(DMABUF_NPIECES, pieces.length);
      w(DMABUF_SEGMENTS, segmentList);
      w(DMABUF_NSEGMENTS, merged.length);
      w(DMABUF_RESV, resv.offset);
      w(DMABUF_CACHING, caching);
      w(DMABUF_EXPORTER, exporterNames.indexOf(exporter));
      w(DMABUF_BACKING, backingList);
      w(DMABUF_NBACKING, backing.length);
      new Mutex(sync.arena.buffer, record + DMABUF_NAME_LOCK).init();
      // Published by whatever hands the offset to another thread (postMessage
      // or an Atomics store), which orders these plain writes before it.
      Atomics.store(i32, (record + DMABUF_REFCOUNT) >>> 2, 1);
      return new DmaBufRecord(sync, record, true);
    } catch (e) {
      resv?.put();
      for (const [r, type] of records) sync.freeRecord(r, type);
      if (segmentList >= 0) sync.arena.user.free(segmentList, undefined, "dma_buf_export");
      if (backing.length > 0) backing.forEach((m) => memfdUnref(sync, m));
      else for (const p of pieces) pool.free(p.offset, p.order, "dma_buf_export");
      throw e;
    }
  }

  /**
   * Another view of the buffer at `offset` (another thread's), taking a
   * reference. EBADF, nothing touched, unless a live dma-buf record (of
   * `generation`, when a token carries one) starts there.
   */
  static attach(sync: Sync, offset: number, generation?: number): DmaBufRecord {
    getRecord(sync.arena, offset, RecordType.dmaBuf, DMABUF_REFCOUNT, "dma_buf_get", "EBADF", generation,
      () => new DmaBufRecord(sync, offset, true).put());
    return new DmaBufRecord(sync, offset, true);
  }

  /** The generation of this buffer's record (what a token carries). */
  get generation(): number {
    return this.sync.arena.records.check(this.offset, RecordType.dmaBuf, "dma_buf_get", "EBADF");
  }

  /**
   * A view that stands for a reference already held in the arena (an
   * attachment's, attachment.ts) and takes none: its put() drops that one.
   */
  static adopt(sync: Sync, offset: number): DmaBufRecord {
    return new DmaBufRecord(sync, offset, true);
  }

  get size(): number {
    return this.rec.word(DMABUF_SIZE);
  }

  get caching(): Caching {
    return this.rec.word(DMABUF_CACHING) as Caching;
  }

  get exporter(): ExporterName {
    return exporterNames[this.rec.word(DMABUF_EXPORTER)] as ExporterName;
  }

  get refcount(): number {
    return Atomics.load(this.sync.i32, (this.offset + DMABUF_REFCOUNT) >>> 2);
  }

  /** Whether the exporter revoked the buffer (attachment.ts). */
  get revoked(): boolean {
    return (Atomics.load(this.sync.u32, (this.offset + DMABUF_ATTACH) >>> 2) & DMABUF_ATTACH_REVOKED) !== 0;
  }

  /** Open files referring to the buffer (fdinfo's count). */
  get fileCount(): number {
    return Atomics.load(this.sync.i32, (this.offset + DMABUF_FILES) >>> 2);
  }

  /** A new file referring to the buffer: counts it and returns an owned view for it. */
  openFile(): DmaBufRecord {
    const view = this.get();
    Atomics.add(this.sync.i32, (this.offset + DMABUF_FILES) >>> 2, 1);
    return view;
  }

  /** Closes a file made by openFile() (this view): uncounts it and drops its reference. */
  closeFile(): void {
    Atomics.sub(this.sync.i32, (this.offset + DMABUF_FILES) >>> 2, 1);
    this.put();
  }

  private resvView: Resv | undefined;

  /** The reservation object, borrowed (valid while the buffer is held). */
  get resv(): Resv {
    return (this.resvView ??= new Resv(this.sync, this.rec.word(DMABUF_RESV), false));
  }

  /** The page allocation, in buffer order. */
  pieces(): PagePiece[] {
    const list = this.rec.word(DMABUF_PIECES);
    return Array.from({ length: this.rec.word(DMABUF_NPIECES) }, (_, i) => ({
      offset: this.sync.u32[(list + i * PIECE_SIZE + PIECE_OFFSET) >>> 2],
      order: this.sync.u32[(list + i * PIECE_SIZE + PIECE_ORDER) >>> 2],
    }));
  }

  /** The scatter list: arena address and length of each physically contiguous chunk. */
  segments(): Segment[] {
    const table = this.segmentTable;
    return Array.from({ length: table.count }, (_, i) => table.entry(i));
  }

  /** The scatter list as the engine walks it (gather, scatter, checksum). */
  get segmentTable(): SegmentSource {
    const list = this.rec.word(DMABUF_SEGMENTS);
    const { u32 } = this.sync;
    return {
      offset: list,
      count: this.rec.word(DMABUF_NSEGMENTS),
      entry: (i) => ({ addr: u32[(list + i * SG_SEG_SIZE + SG_SEG_ADDR) >>> 2], len: u32[(list + i * SG_SEG_SIZE + SG_SEG_LEN) >>> 2] }),
    };
  }

  /** DMA_BUF_SET_NAME's name ("" when unset). */
  get name(): string {
    return this.nameLock().with(() => readName(this.sync.u8, this.offset + DMABUF_NAME));
  }

  /** DMA_BUF_SET_NAME: at most 31 bytes, else EINVAL (the name is unchanged). */
  setName(name: string): void {
    this.nameLock().with(() => {
      try {
        writeName(this.sync.u8, this.offset + DMABUF_NAME, name, "name", "DMA_BUF_SET_NAME");
      } catch (e) {
        throw new DmaBufError("EINVAL", "DMA_BUF_SET_NAME", `name '${name}' is longer than ${DMA_BUF_NAME_LEN - 1} bytes`, { cause: e });
      }
    });
  }

  private nameLock(): Mutex {
    return new Mutex(this.sync.arena.buffer, this.offset + DMABUF_NAME_LOCK);
  }

  /** dma_buf get: a new owned view. */
  get(): DmaBufRecord {
    return DmaBufRecord.attach(this.sync, this.offset);
  }

  /** Drops this view's reference; the last one frees the pages and the record. */
  put(): void {
    if (!this.owned) throw new DmaBufError("EINVAL", "dma_buf_put", "this view holds no reference");
    this.owned = false;
    if (Atomics.sub(this.sync.i32, (this.offset + DMABUF_REFCOUNT) >>> 2, 1) !== 1) {
      this.released = true;
      return;
    }
    const { sync } = this;
    const pieces = this.pieces();
    const backingList = this.rec.word(DMABUF_BACKING);
    const backing = Array.from(sync.u32.subarray(backingList >>> 2, (backingList >>> 2) + this.rec.word(DMABUF_NBACKING)));
    new Resv(sync, this.rec.word(DMABUF_RESV), true).put();
    sync.freeRecord(this.rec.word(DMABUF_PIECES), RecordType.dmaBufPieces);
    sync.arena.user.free(this.rec.word(DMABUF_SEGMENTS), undefined, "dma_buf_release");
    if (backingList !== 0) sync.freeRecord(backingList, RecordType.dmaBufBacking);
    for (const word of [DMABUF_CPU_COPY, DMABUF_CPU_CLEAN]) {
      const block = this.rec.word(word);
      if (block !== 0) sync.arena.user.free(block, undefined, "dma_buf_release");
    }
    sync.freeRecord(this.offset, RecordType.dmaBuf);
    this.released = true;
    if (backing.length > 0) backing.forEach((m) => memfdUnref(sync, m));
    else for (const p of pieces) sync.arena.pages.free(p.offset, p.order, "dma_buf_release");
  }

  [Symbol.dispose](): void {
    if (this.owned) this.put();
  }
}

/** The scatter list of a piece list: physically adjacent pieces merged. */
export function mergeAdjacent(pieces: PagePiece[]): Segment[] {
  const out: Segment[] = [];
  for (const p of pieces) {
    const len = PAGE_SIZE * 2 ** p.order;
    const last = out[out.length - 1];
    if (last !== undefined && last.addr + last.len === p.offset && last.len + len <= 0x80000000) last.len += len;
    else out.push({ addr: p.offset, len });
  }
  return out;
}

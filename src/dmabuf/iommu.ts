/*
 * The IOMMU of one device: a page table in the arena that turns the device's
 * addresses (IOVAs) into arena offsets, as an io-pgtable does for a real
 * IOMMU domain. Every DMA of a device goes through translate(): an address
 * outside the device's mappings, or an access that its mapping does not
 * allow, is a fault that is recorded here (report_iommu_fault) and reaches
 * the job as EFAULT. It never reaches other memory.
 *
 * Storage: a header in the sync heap (IOMMU_*, 76 bytes, a 128-byte block)
 * names two tables made of page-pool blocks, as a kernel's page tables are
 * pages. With the default 256 MiB of IOVA space they take 264 KiB of the pool.
 *   IOMMU_LOCK         a Mutex (32 bytes): serializes map, unmap, addUser,
 *                      dropUser, destroy and the recording of faults
 *   IOMMU_MAGIC        u32: IOMMU_MAGIC_VALUE while the IOMMU lives, 0 after
 *                      destroy(); stored last by create() (the publish point)
 *   IOMMU_PAGES        u32: the IOVA space, in 4 KiB device pages
 *   IOMMU_TABLE        u32: the page table, one u32 PTE per device page:
 *                      the arena offset of the page (page number << 12) |
 *                      PTE_HEAD (the first page of a mapping) | PTE_VALID |
 *                      IOMMU_WRITE | IOMMU_READ; 0 for an unmapped page
 *   IOMMU_BITMAP       u32: the IOVA allocator, one bit per device page
 *                      (1 = allocated). Page 0 is always allocated, so device
 *                      address 0 is never handed out and can mean "none"
 *   IOMMU_NEXT         u32: the page where the next search starts (next fit),
 *                      so a freed range comes back only after the search has
 *                      gone round the space: a stale IOVA faults meanwhile
 *   IOMMU_MAPPED       u32: mapped pages
 *   IOMMU_MAPPINGS     u32: mappings
 *   IOMMU_USERS        u32: attachments that map through this IOMMU
 *                      (src/dmabuf/attachment.ts): destroy() is EBUSY while any remain
 *   IOMMU_FAULTS       u32: faults so far
 *   IOMMU_FAULT_IOVA   u32: the device address of the last fault
 *   IOMMU_FAULT_ACCESS u32: its access, IOMMU_READ and/or IOMMU_WRITE
 *   IOMMU_MODE         u32: the domain's mode (the cost model below)
 *   IOMMU_INVAL_NS     u32: the model's IOTLB invalidation latency, ns
 *   IOMMU_FLUSHES      u32: IOTLB invalidations so far
 *   IOMMU_FQ           u32: lazy: the flush queue, a page-pool block of
 *                      {first page, pages} pairs unmapped but not yet invalidated
 *   IOMMU_FQ_COUNT     u32: lazy: entries in the flush queue
 *   IOMMU_PT_BASE      u32: passthrough: the IOVA of the 1:1 window over the
 *                      whole DMA range
 *   IOMMU_FLUSH_MS     f64: time spent waiting for invalidations
 *   IOMMU_DMA_SEQ      u32: the device's DMA sequence, a seqcount: odd while
 *                      the device's engine is moving bytes through this
 *                      IOMMU (dmaBegin .. dmaEnd), even between; the revoke
 *                      waits on it (dmaQuiesce)
 *
 * The cost model (iommu.strict / iommu.passthrough / lazy DMA-FQ in Linux):
 *   strict       every unmap clears the PTEs, then invalidates the IOTLB and
 *                waits for it: the unmapping thread spends IOTLB_INVALIDATE_NS
 *                (a busy wait, under the lock, as the kernel waits on its
 *                invalidation queue) before the IOVA range is free again
 *   lazy         unmap clears the PTEs and queues the range; one invalidation
 *                covers the whole queue when it is full (FQ_ENTRIES) or map()
 *                finds no room; only then are the ranges free. The lab clears
 *                PTEs at once, so a stale IOTLB entry (the mode's real risk)
 *                is not modelled: DMA after unmap faults in every mode
 *   passthrough  the device sees physical addresses: create() maps the whole
 *                DMA range once, 1:1, at IOMMU_PT_BASE (dmaAddress(addr) is
 *                arithmetic), and nothing is ever invalidated; map()/unmap()
 *                still work for importers that ask for mappings
 * IOTLB_INVALIDATE_NS, the latency of one invalidation, is the model's
 * parameter (IommuOptions.iotlbInvalidateNs). Its default, 1500 ns, is in the
 * range of a VT-d queued invalidation with its wait descriptor on current
 * servers; the published per-I/O mapped result (570 K IOPS strict against
 * 5.01 M premapped on Optane) implies about 1.5 us of map, unmap and flush
 * per I/O.
 *
 * API (each call's errors change nothing):
 *   Iommu.create(sync, { iovaBytes })  a new, empty IOMMU (default 256 MiB
 *       of IOVA space, whole pages, 8 KiB to 4 GiB, else EINVAL); ENOMEM when
 *       the page pool or the sync heap cannot hold it
 *   new Iommu(sync, offset)  its view in any thread; EINVAL when no IOMMU
 *       lives at offset
 *   map(runs, prot)  iommu_map: page-aligned runs {addr, len} of the DMA
 *       range (the page pool and user memory) become one contiguous IOVA
 *       range, whose first device address it returns. Bad runs or prot:
 *       EINVAL; no free range large enough: ENOMEM
 *   unmap(iova, bytes)  iommu_unmap of exactly one mapping, else EINVAL
 *   translate(iova, len, access, emit)  the device's DMA of len bytes at
 *       iova: reads and checks the whole range first, then calls
 *       emit(addr, len) for each run of physically adjacent pages, in order,
 *       and returns how many runs it emitted. A page that is not mapped, a mapping
 *       without the access, or a range past the IOVA space: the fault is
 *       recorded and it throws EFAULT naming the IOVA and the access, with
 *       nothing emitted. Arguments that are not integers, or an access that
 *       is not READ, WRITE or both: EINVAL, no fault recorded
 *   faults(), stats()  counters (a consistent snapshot, under the lock)
 *   addUser(), dropUser()  for attachments
 *   destroy()  frees everything; EBUSY while mappings or users remain
 *   dmaBegin(), dmaEnd()  the device's engine brackets each job's DMA
 *       (translate and the copies it feeds) with them; one engine per IOMMU
 *   dmaStopped()  the host, once the device's worker is terminated: DMA it
 *       left open (a job cut short) is over
 *   Iommu.dmaQuiesce(sync, iommus, timeoutMs)  the revoke's wait: returns
 *       when every DMA that was in flight through the given IOMMUs at the
 *       call has ended (or its IOMMU was destroyed); ETIMEDOUT past the
 *       bound. This thread's own DMA (a kernel that revokes) is not waited for
 *
 * Ordering: translate takes no lock. It runs in device threads while other
 * threads map and unmap.
 *   - map() stores each PTE with Atomics.store before it returns the IOVA.
 *     The IOVA reaches a device through a seq-cst publish (a job ring's
 *     HEAD), so a translate of it sees those PTEs.
 *   - unmap() clears the PTEs (Atomics.store 0) before it frees the range in
 *     the bitmap, so no new mapping of the range exists while an old PTE can
 *     still be read.
 *   - translate() reads each PTE once, with a plain load, into a list of
 *     runs, and emits only when the whole range has checked out. Plain loads
 *     are enough: the publication above orders map()'s stores before them,
 *     and an aligned u32 element never tears, so a racing unmap() is seen
 *     page by page as the old PTE or as 0 (a fault, with nothing emitted).
 *     (1 MiB of contiguous pages: 1.1 us a translate, 2.0 with Atomics.load.)
 *   - The runs are arena offsets, valid while the mapping lasts. Whoever owns
 *     the mapping keeps it, and its pages, until the jobs that use it are done.
 *   - The DMA seqcount: the engine's Atomics.add at dmaBegin is seq-cst and
 *     comes before its translate's PTE loads, so an unmap that a quiescing
 *     thread did before it read an even IOMMU_DMA_SEQ is seen by any later
 *     translate (which faults); a DMA that read the PTEs before the unmap is
 *     seen by the quiescer as an odd sequence, and waited for.
 * A view reads IOMMU_PAGES, IOMMU_TABLE and IOMMU_BITMAP once: create()
 * writes them before the magic, and they never change.
 */
import { RecordType, RecordView } from "../memory/record.js";
import { DmaBufError, hex } from "../errno.js";
import { Mutex, type MutexStats } from "../memory/mutex.js";
import { PAGE_SHIFT, PAGE_SIZE } from "../memory/layout.js";
import type { Sync } from "../sync/sync.js";
import { futexWait, futexWake, nowMs } from "../memory/futex.js";

export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;
/** PTE bits beside IOMMU_READ and IOMMU_WRITE. */
export const PTE_VALID = 4;
export const PTE_HEAD = 8;
const PTE_ADDR = ~(PAGE_SIZE - 1);

export const IOMMU_LOCK = 0;
export const IOMMU_MAGIC = 32;
export const IOMMU_PAGES = 36;
export const IOMMU_TABLE = 40;
export const IOMMU_BITMAP = 44;
export const IOMMU_NEXT = 48;
export const IOMMU_MAPPED = 52;
export const IOMMU_MAPPINGS = 56;
export const IOMMU_USERS = 60;
export const IOMMU_FAULTS = 64;
export const IOMMU_FAULT_IOVA = 68;
export const IOMMU_FAULT_ACCESS = 72;
export const IOMMU_MODE = 76;
export const IOMMU_INVAL_NS = 80;
export const IOMMU_FLUSHES = 84;
export const IOMMU_FQ = 88;
export const IOMMU_FQ_COUNT = 92;
export const IOMMU_PT_BASE = 96;
export const IOMMU_FLUSH_MS = 104;
export const IOMMU_DMA_SEQ = 112;
export const IOMMU_RECORD_SIZE = 116;

export const IOMMU_MODE_STRICT = 0;
export const IOMMU_MODE_LAZY = 1;
export const IOMMU_MODE_PASSTHROUGH = 2;
export type IommuMode = "strict" | "lazy" | "passthrough";
const modeIds: Record<IommuMode, number> = { strict: IOMMU_MODE_STRICT, lazy: IOMMU_MODE_LAZY, passthrough: IOMMU_MODE_PASSTHROUGH };
const modeNames: IommuMode[] = ["strict", "lazy", "passthrough"];

/** The model's IOTLB invalidation latency (ns), by default. */
export const IOTLB_INVALIDATE_NS = 1500;
/** Lazy mode: unmapped ranges queued before one invalidation covers them. */
export const FQ_ENTRIES = 256;
export const IOMMU_MAGIC_VALUE = 0x554d4f49; // the bytes "IOMU"

export const DEFAULT_IOVA_BYTES = 256 * 1024 * 1024;
/** Device addresses are u32s. */
export const MAX_IOVA_BYTES = 2 ** 32;

export interface IommuOptions {
  /** The IOVA space: whole pages, 8 KiB to 4 GiB; default 256 MiB (passthrough adds the DMA range's window). */
  iovaBytes?: number;
  /** strict (default), lazy or passthrough: the cost model of the module comment. */
  mode?: IommuMode;
  /** The latency of one IOTLB invalidation, ns (default IOTLB_INVALIDATE_NS). */
  iotlbInvalidateNs?: number;
}

/** A physically contiguous piece of memory to map: an arena offset and a length. */
export interface PhysRun {
  addr: number;
  len: number;
}

export interface IommuFaults {
  count: number;
  /** The device address of the last fault (0 before the first). */
  lastIova: number;
  /** Its access: IOMMU_READ, IOMMU_WRITE or both (0 before the first). */
  lastAccess: number;
}

export interface IommuStats {
  iovaBytes: number;
  mappedBytes: number;
  mappings: number;
  users: number;
  faults: number;
  mode: IommuMode;
  iotlbInvalidateNs: number;
  /** IOTLB invalidations, and the time spent waiting for them. */
  flushes: number;
  flushMs: number;
  lock: MutexStats;
}

const accessNames = ["", "read", "write", "read/write"];
/** IOMMUs whose DMA this thread is running now (dmaBegin..dmaEnd): a revoke from inside it does not wait for itself. */
const dmaByThisThread = new Set<number>();
const NO_RUNS = new Uint32Array(0);
const BITS = 32;

export class Iommu {
  private readonly u32: Uint32Array;
  private readonly mutex: Mutex;
  /** The IOVA space in device pages (page 0 is never mapped). */
  readonly pages: number;
  /** u32 index of PTE 0 and of the bitmap's first word. */
  private readonly table: number;
  private readonly bitmap: number;
  /** translate()'s runs before it emits them, {addr, len} pairs; this thread's, grown on demand. */
  private scratch = NO_RUNS;
  private readonly rec: RecordView;

  constructor(readonly sync: Sync, readonly offset: number) {
    sync.arena.records.check(offset, RecordType.iommu, "iommu");
    if (Atomics.load(sync.u32, (offset + IOMMU_MAGIC) >>> 2) !== IOMMU_MAGIC_VALUE) {
      throw new DmaBufError("EINVAL", "iommu", `no IOMMU at ${hex(offset)}`);
    }
    this.u32 = sync.u32;
    this.rec = new RecordView(sync, offset);
    this.mutex = new Mutex(sync.arena.buffer, offset + IOMMU_LOCK);
    this.pages = this.rec.word(IOMMU_PAGES);
    this.table = this.rec.word(IOMMU_TABLE) >>> 2;
    this.bitmap = this.rec.word(IOMMU_BITMAP) >>> 2;
  }

  /** iommu_domain_alloc: a new IOMMU with nothing mapped. */
  static create(sync: Sync, options: IommuOptions = {}): Iommu {
    const syscall = "iommu_domain_alloc";
    const asked = options.iovaBytes ?? DEFAULT_IOVA_BYTES;
    if (!Number.isSafeInteger(asked) || asked % PAGE_SIZE !== 0 || asked < 2 * PAGE_SIZE || asked > MAX_IOVA_BYTES) {
      throw new DmaBufError("EINVAL", syscall, `iovaBytes ${asked} must be a whole number of pages from ${2 * PAGE_SIZE} to ${MAX_IOVA_BYTES}`);
    }
    const modeName = options.mode ?? "strict";
    const mode = modeIds[modeName];
    if (mode === undefined) throw new DmaBufError("EINVAL", syscall, `mode '${String(modeName)}' is not strict, lazy or passthrough`);
    const invalNs = options.iotlbInvalidateNs ?? IOTLB_INVALIDATE_NS;
    if (!Number.isInteger(invalNs) || invalNs < 0 || invalNs > 1e9) throw new DmaBufError("EINVAL", syscall, `iotlbInvalidateNs ${invalNs} is not 0 to 1e9`);
    const { dmaLo, dmaHi } = sync.arena;
    const window = mode === IOMMU_MODE_PASSTHROUGH ? Math.ceil((dmaHi - dmaLo) / PAGE_SIZE) * PAGE_SIZE : 0;
    if (asked + window > MAX_IOVA_BYTES) throw new DmaBufError("EINVAL", syscall, `iovaBytes ${asked} and the ${window}-byte passthrough window exceed ${MAX_IOVA_BYTES}`);
    const bytes = asked + window;
    const pages = bytes / PAGE_SIZE;
    const pool = sync.arena.pages;
    const tableBytes = 4 * pages;
    const bitmapBytes = 4 * Math.ceil(pages / BITS);
    const blocks: number[] = [];
    let header = 0;
    try {
      for (const n of mode === IOMMU_MODE_LAZY ? [tableBytes, bitmapBytes, FQ_ENTRIES * 8] : [tableBytes, bitmapBytes]) {
        const order = pool.orderFor(n);
        if (order > pool.maxOrder) {
          throw new DmaBufError("ENOMEM", syscall, `an IOMMU table of ${n} bytes exceeds the page pool's largest block`);
        }
        blocks.push(pool.alloc(order, syscall));
      }
      header = sync.allocRecord(RecordType.iommu, IOMMU_RECORD_SIZE, syscall);
    } catch (e) {
      for (const b of blocks) pool.free(b, undefined, syscall);
      throw e;
    }
    const [table, bitmap, fq = 0] = blocks;
    sync.engine.fill(table, 0, tableBytes);
    sync.engine.fill(bitmap, 0, bitmapBytes);
    const { u32 } = sync;
    u32[bitmap >>> 2] = 1; // page 0: never handed out
    const w = (off: number, v: number) => { u32[(header + off) >>> 2] = v; };
    w(IOMMU_PAGES, pages);
    w(IOMMU_TABLE, table);
    w(IOMMU_BITMAP, bitmap);
    w(IOMMU_NEXT, 1);
    w(IOMMU_MODE, mode);
    w(IOMMU_INVAL_NS, invalNs);
    w(IOMMU_FQ, fq);
    if (window > 0) {
      // The 1:1 window: every page of the DMA range, from page 1 on.
      for (let p = 0; p < window / PAGE_SIZE; p++) {
        u32[(bitmap >>> 2) + ((p + 1) >>> 5)] |= 1 << ((p + 1) & 31);
        u32[(table >>> 2) + p + 1] = (dmaLo + p * PAGE_SIZE) | IOMMU_READ | IOMMU_WRITE | PTE_VALID | (p === 0 ? PTE_HEAD : 0);
      }
      w(IOMMU_PT_BASE, PAGE_SIZE);
      w(IOMMU_NEXT, 1 + window / PAGE_SIZE < pages ? 1 + window / PAGE_SIZE : 1);
    }
    new Mutex(sync.arena.buffer, header + IOMMU_LOCK).init();
    // The publish point: a thread that sees the magic sees the words above
    // (and the offset reaches it through postMessage or an Atomics store).
    Atomics.store(u32, (header + IOMMU_MAGIC) >>> 2, IOMMU_MAGIC_VALUE);
    return new Iommu(sync, header);
  }

  get iovaBytes(): number {
    return this.pages * PAGE_SIZE;
  }

  private checkAlive(syscall: string): void {
    if (Atomics.load(this.u32, (this.offset + IOMMU_MAGIC) >>> 2) !== IOMMU_MAGIC_VALUE) {
      throw new DmaBufError("EINVAL", syscall, `the IOMMU at ${hex(this.offset)} was destroyed`);
    }
  }

  /**
   * Runs fn under the lock; EINVAL when the IOMMU was destroyed. Checked
   * before locking too: a freed header's lock word is garbage.
   */
  private locked<T>(syscall: string, fn: () => T): T {
    this.checkAlive(syscall);
    return this.mutex.with(() => {
      this.checkAlive(syscall);
      return fn();
    });
  }

  // ---- the allocator and the page table (under the lock) -------------------

  private setAllocated(page: number, on: boolean): void {
    const i = this.bitmap + (page >>> 5);
    if (on) this.u32[i] |= 1 << (page & 31);
    else this.u32[i] &= ~(1 << (page & 31));
  }

  /** The first page of n free ones in [from, to), or -1. Skips whole bitmap words where it can. */
  private findFree(n: number, from: number, to: number): number {
    let run = 0;
    for (let p = from; p < to;) {
      const bits = this.u32[this.bitmap + (p >>> 5)];
      if ((p & 31) === 0 && p + BITS <= to && (bits === 0 || bits === 0xffffffff)) {
        run = bits === 0 ? run + BITS : 0;
        p += BITS;
        if (run >= n) return p - run;
        continue;
      }
      run = (bits & (1 << (p & 31))) === 0 ? run + 1 : 0;
      p++;
      if (run === n) return p - n;
    }
    return -1;
  }

  // ---- map and unmap -------------------------------------------------------

  /** iommu_map: the runs, in order, at one new IOVA range; returns its first device address. */
  map(runs: readonly PhysRun[], prot: number): number {
    const syscall = "iommu_map";
    if (prot !== IOMMU_READ && prot !== IOMMU_WRITE && prot !== (IOMMU_READ | IOMMU_WRITE)) {
      throw new DmaBufError("EINVAL", syscall, `prot ${prot} must be IOMMU_READ (1), IOMMU_WRITE (2) or both`);
    }
    if (!Array.isArray(runs) || runs.length === 0) throw new DmaBufError("EINVAL", syscall, "nothing to map: no runs");
    const { dmaLo, dmaHi } = this.sync.arena;
    let n = 0;
    for (const [i, { addr, len }] of runs.entries()) {
      if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr % PAGE_SIZE !== 0 || len <= 0 || len % PAGE_SIZE !== 0 ||
          addr < dmaLo || addr + len > dmaHi) {
        throw new DmaBufError("EINVAL", syscall,
          `run ${i} {addr ${hex(addr)}, len ${len}} must be whole pages inside the DMA range [${hex(dmaLo)}, ${hex(dmaHi)})`);
      }
      n += len / PAGE_SIZE;
    }
    return this.locked(syscall, () => {
      const next = this.rec.word(IOMMU_NEXT);
      let first = this.findFree(n, next, this.pages);
      if (first < 0) first = this.findFree(n, 1, this.pages);
      if (first < 0 && this.rec.word(IOMMU_FQ_COUNT) > 0) {
        // Lazy: the queued ranges become free with one invalidation.
        this.flushQueue();
        first = this.findFree(n, 1, this.pages);
      }
      if (first < 0) {
        throw new DmaBufError("ENOMEM", syscall,
          `no free range of ${n} pages in the ${this.iovaBytes}-byte IOVA space (${this.rec.word(IOMMU_MAPPED)} pages mapped)`);
      }
      let page = first;
      for (const { addr, len } of runs) {
        for (let at = addr; at < addr + len; at += PAGE_SIZE, page++) {
          this.setAllocated(page, true);
          // Published by the IOVA's own publication (see the module comment).
          Atomics.store(this.u32, this.table + page, at | prot | PTE_VALID | (page === first ? PTE_HEAD : 0));
        }
      }
      this.rec.setWord(IOMMU_NEXT, first + n < this.pages ? first + n : 1);
      this.rec.setWord(IOMMU_MAPPED, this.rec.word(IOMMU_MAPPED) + n);
      this.rec.setWord(IOMMU_MAPPINGS, this.rec.word(IOMMU_MAPPINGS) + 1);
      return first * PAGE_SIZE;
    });
  }

  /** iommu_unmap: the whole mapping that starts at iova and is `bytes` long. */
  unmap(iova: number, bytes: number): void {
    const syscall = "iommu_unmap";
    const what = `[${hex(iova)}, +${bytes})`;
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(bytes) || iova % PAGE_SIZE !== 0 || bytes <= 0 ||
        bytes % PAGE_SIZE !== 0 || iova < PAGE_SIZE || iova + bytes > this.iovaBytes) {
      throw new DmaBufError("EINVAL", syscall, `range ${what} is not whole pages of the IOVA space`);
    }
    const first = iova / PAGE_SIZE;
    const n = bytes / PAGE_SIZE;
    this.locked(syscall, () => {
      const pte = (p: number) => this.u32[this.table + p];
      let exact = (pte(first) & PTE_HEAD) !== 0;
      for (let p = first + 1; exact && p < first + n; p++) exact = (pte(p) & (PTE_VALID | PTE_HEAD)) === PTE_VALID;
      // The page after must not continue the mapping.
      const after = first + n;
      if (exact && after < this.pages) exact = (pte(after) & (PTE_VALID | PTE_HEAD)) !== PTE_VALID;
      if (!exact) throw new DmaBufError("EINVAL", syscall, `range ${what} is not exactly one mapping`);
      // PTEs first, then the IOTLB, then the allocator: see the module comment.
      for (let p = first; p < first + n; p++) Atomics.store(this.u32, this.table + p, 0);
      this.rec.setWord(IOMMU_MAPPED, this.rec.word(IOMMU_MAPPED) - n);
      this.rec.setWord(IOMMU_MAPPINGS, this.rec.word(IOMMU_MAPPINGS) - 1);
      const mode = this.rec.word(IOMMU_MODE);
      if (mode === IOMMU_MODE_LAZY) {
        const fq = this.rec.word(IOMMU_FQ) >>> 2;
        const k = this.rec.word(IOMMU_FQ_COUNT);
        this.u32[fq + 2 * k] = first;
        this.u32[fq + 2 * k + 1] = n;
        this.rec.setWord(IOMMU_FQ_COUNT, k + 1);
        if (k + 1 === FQ_ENTRIES) this.flushQueue();
        return;
      }
      if (mode === IOMMU_MODE_STRICT) this.invalidateIotlb();
      for (let p = first; p < first + n; p++) this.setAllocated(p, false);
    });
  }

  /** The model's IOTLB invalidation: waits IOMMU_INVAL_NS (busy, under the lock, as the kernel waits for its queue). */
  private invalidateIotlb(): void {
    const ns = this.rec.word(IOMMU_INVAL_NS);
    const start = performance.now();
    const end = start + ns / 1e6;
    while (performance.now() < end) { /* the invalidation wait descriptor */ }
    this.rec.setWord(IOMMU_FLUSHES, this.rec.word(IOMMU_FLUSHES) + 1);
    this.rec.setF64(IOMMU_FLUSH_MS, this.rec.f64(IOMMU_FLUSH_MS) + performance.now() - start);
  }

  /** Lazy: one invalidation for every queued range, which then become free. */
  private flushQueue(): void {
    this.invalidateIotlb();
    const fq = this.rec.word(IOMMU_FQ) >>> 2;
    for (let k = 0; k < this.rec.word(IOMMU_FQ_COUNT); k++) {
      const first = this.u32[fq + 2 * k];
      for (let p = first; p < first + this.u32[fq + 2 * k + 1]; p++) this.setAllocated(p, false);
    }
    this.rec.setWord(IOMMU_FQ_COUNT, 0);
  }

  get mode(): IommuMode {
    return modeNames[this.rec.word(IOMMU_MODE)];
  }

  /** Passthrough: the device address of arena offset `addr` (inside the DMA range; EINVAL in other modes or outside it). */
  dmaAddress(addr: number): number {
    const { dmaLo, dmaHi } = this.sync.arena;
    if (this.rec.word(IOMMU_MODE) !== IOMMU_MODE_PASSTHROUGH || !Number.isSafeInteger(addr) || addr < dmaLo || addr >= dmaHi) {
      throw new DmaBufError("EINVAL", "dma_map_direct", `no 1:1 device address for ${hex(addr)} (mode ${this.mode})`);
    }
    return this.rec.word(IOMMU_PT_BASE) + (addr - dmaLo);
  }

  // ---- the device's side ---------------------------------------------------

  /**
   * The DMA of `len` bytes at `iova` with `access`: emit(addr, len) for each
   * run of physically adjacent pages; returns the number of runs. The hot
   * path of a device: no lock, and no allocation once the view's scratch
   * list is large enough.
   */
  translate(iova: number, len: number, access: number, emit: (addr: number, len: number) => void): number {
    if ((iova >>> 0) !== iova || (len >>> 0) !== len || (access !== IOMMU_READ && access !== IOMMU_WRITE && access !== (IOMMU_READ | IOMMU_WRITE))) {
      throw new DmaBufError("EINVAL", "iommu_iova_to_phys",
        `IOVA ${iova}, length ${len} and access ${access} must be u32s, the access READ (1), WRITE (2) or both`);
    }
    if (len === 0) return 0;
    const { u32, table } = this;
    const need = access | PTE_VALID;
    const end = iova + len;
    const first = iova >>> PAGE_SHIFT;
    const last = Math.floor((end - 1) / PAGE_SIZE);
    if (last >= this.pages) {
      for (let p = first; p < this.pages; p++) if ((u32[table + p] & need) !== need) this.fault(Math.max(iova, p * PAGE_SIZE), access);
      this.fault(Math.max(iova, this.iovaBytes), access);
    }
    let runs = this.scratch;
    if (runs.length < 2 * (last - first + 1)) runs = new Uint32Array(2 ** Math.ceil(Math.log2(2 * (last - first + 1))));
    // One plain load per PTE (see the module comment), merged into runs.
    let pte = u32[table + first];
    if ((pte & need) !== need) this.fault(iova, access);
    let runAddr = ((pte & PTE_ADDR) >>> 0) + (iova & (PAGE_SIZE - 1));
    let runLen = Math.min(len, PAGE_SIZE - (iova & (PAGE_SIZE - 1)));
    let count = 0;
    for (let p = first + 1; p <= last; p++) {
      pte = u32[table + p];
      if ((pte & need) !== need) this.fault(p * PAGE_SIZE, access);
      const addr = (pte & PTE_ADDR) >>> 0;
      if (addr === runAddr + runLen) {
        runLen += PAGE_SIZE;
      } else {
        runs[count++] = runAddr;
        runs[count++] = runLen;
        runAddr = addr;
        runLen = PAGE_SIZE;
      }
    }
    if (last > first) runLen -= (last + 1) * PAGE_SIZE - end; // the last page's tail
    runs[count++] = runAddr;
    runs[count++] = runLen;
    // Validated: now emit. A translate called from emit gets a list of its own.
    this.scratch = NO_RUNS;
    try {
      for (let i = 0; i < count; i += 2) emit(runs[i], runs[i + 1]);
    } finally {
      this.scratch = runs;
    }
    return count / 2;
  }

  /** report_iommu_fault: records the fault (count, address, access) and throws EFAULT. */
  private fault(iova: number, access: number): never {
    const page = Math.floor(iova / PAGE_SIZE);
    const pte = page < this.pages ? Atomics.load(this.u32, this.table + page) : 0;
    const why = page >= this.pages ? `outside the ${this.iovaBytes}-byte IOVA space`
      : (pte & PTE_VALID) === 0 ? "no mapping" : `the mapping allows ${accessNames[pte & (IOMMU_READ | IOMMU_WRITE)]} only`;
    this.mutex.with(() => {
      this.rec.setWord(IOMMU_FAULTS, this.rec.word(IOMMU_FAULTS) + 1);
      this.rec.setWord(IOMMU_FAULT_IOVA, iova);
      this.rec.setWord(IOMMU_FAULT_ACCESS, access);
    });
    throw new DmaBufError("EFAULT", "iommu_iova_to_phys", `IOMMU ${hex(this.offset)}: DMA ${accessNames[access]} at IOVA ${hex(iova)}: ${why}`);
  }

  faults(): IommuFaults {
    return this.mutex.with(() => ({
      count: this.rec.word(IOMMU_FAULTS),
      lastIova: this.rec.word(IOMMU_FAULT_IOVA),
      lastAccess: this.rec.word(IOMMU_FAULT_ACCESS),
    }));
  }

  stats(): IommuStats {
    return this.mutex.with(() => ({
      iovaBytes: this.iovaBytes,
      mappedBytes: this.rec.word(IOMMU_MAPPED) * PAGE_SIZE,
      mappings: this.rec.word(IOMMU_MAPPINGS),
      users: this.rec.word(IOMMU_USERS),
      faults: this.rec.word(IOMMU_FAULTS),
      mode: this.mode,
      iotlbInvalidateNs: this.rec.word(IOMMU_INVAL_NS),
      flushes: this.rec.word(IOMMU_FLUSHES),
      flushMs: this.rec.f64(IOMMU_FLUSH_MS),
      lock: this.mutex.stats(),
    }));
  }

  // ---- DMA in flight ---------------------------------------------------------

  /** The device's engine starts moving bytes through this IOMMU (the seqcount goes odd). */
  dmaBegin(): void {
    Atomics.add(this.u32, (this.offset + IOMMU_DMA_SEQ) >>> 2, 1);
    dmaByThisThread.add(this.offset);
  }

  /** The engine's DMA is over (the seqcount goes even); wakes a waiting revoke. */
  dmaEnd(): void {
    dmaByThisThread.delete(this.offset);
    const i = (this.offset + IOMMU_DMA_SEQ) >>> 2;
    Atomics.add(this.u32, i, 1);
    futexWake(this.sync.i32, i);
  }

  /** The device's worker is gone: a DMA it left open is over. */
  dmaStopped(): void {
    const i = (this.offset + IOMMU_DMA_SEQ) >>> 2;
    if ((Atomics.load(this.u32, i) & 1) === 0) return;
    Atomics.add(this.u32, i, 1);
    futexWake(this.sync.i32, i);
  }

  /**
   * Waits until every DMA in flight through `iommus` when called has ended,
   * or its IOMMU was destroyed (its record freed or reused: the generation
   * read at the call no longer matches). ETIMEDOUT after timeoutMs.
   */
  static dmaQuiesce(sync: Sync, iommus: readonly Iommu[], timeoutMs: number, syscall: string): void {
    const { records } = sync.arena;
    const waits = [];
    for (const m of iommus) {
      if (dmaByThisThread.has(m.offset)) continue;
      const seq = Atomics.load(m.u32, (m.offset + IOMMU_DMA_SEQ) >>> 2);
      if ((seq & 1) !== 0) waits.push({ m, seq, generation: records.generationAt(m.offset) });
    }
    const deadline = nowMs() + timeoutMs;
    for (const { m, seq, generation } of waits) {
      const i = (m.offset + IOMMU_DMA_SEQ) >>> 2;
      const same = () => records.generationAt(m.offset) === generation
        && Atomics.load(m.u32, (m.offset + IOMMU_MAGIC) >>> 2) === IOMMU_MAGIC_VALUE
        && Atomics.load(m.u32, i) === seq;
      while (same()) {
        const left = deadline - nowMs();
        if (left <= 0) {
          throw new DmaBufError("ETIMEDOUT", syscall,
            `the DMA of the device behind IOMMU ${hex(m.offset)} was still running after ${timeoutMs} ms (the buffer is revoked: that DMA is the last)`);
        }
        // Slices: a destroyed IOMMU is noticed without a wake-up.
        futexWait(sync.i32, i, seq | 0, Math.min(left, 10));
      }
    }
  }

  // ---- lifetime ------------------------------------------------------------

  /** A user (an attachment) that maps through this IOMMU: destroy() waits for its dropUser(). */
  addUser(syscall = "iommu_attach"): void {
    this.locked(syscall, () => this.rec.setWord(IOMMU_USERS, this.rec.word(IOMMU_USERS) + 1));
  }

  dropUser(syscall = "iommu_detach"): void {
    this.locked(syscall, () => {
      if (this.rec.word(IOMMU_USERS) === 0) throw new DmaBufError("EINVAL", syscall, `the IOMMU at ${hex(this.offset)} has no users`);
      this.rec.setWord(IOMMU_USERS, this.rec.word(IOMMU_USERS) - 1);
    });
  }

  /** iommu_domain_free: the tables and the header; EBUSY while mappings or users remain. */
  destroy(): void {
    const syscall = "iommu_domain_free";
    this.locked(syscall, () => {
      const mappings = this.rec.word(IOMMU_MAPPINGS);
      const users = this.rec.word(IOMMU_USERS);
      if (mappings !== 0 || users !== 0) {
        throw new DmaBufError("EBUSY", syscall, `the IOMMU at ${hex(this.offset)} still has ${mappings} mapping(s) and ${users} user(s)`);
      }
      Atomics.store(this.u32, (this.offset + IOMMU_MAGIC) >>> 2, 0);
    });
    const pool = this.sync.arena.pages;
    pool.free(this.table * 4, undefined, syscall);
    pool.free(this.bitmap * 4, undefined, syscall);
    const fq = this.rec.word(IOMMU_FQ);
    if (fq !== 0) pool.free(fq, undefined, syscall);
    this.sync.freeRecord(this.offset, RecordType.iommu);
  }
}

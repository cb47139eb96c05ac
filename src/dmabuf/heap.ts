/*
 * dma-heap exporters: where dma-bufs come from.
 *
 *   system           zeroed pages from the page pool in chunks of order 8,
 *                    4, then 0 (1 MiB, 64 KiB, 4 KiB), each size tried while
 *                    it fits and the pool has one, as the kernel's
 *                    alloc_largest_available does: a buffer is scattered
 *   system-uncached  the same pages, mapped write-combined (CACHING_WRITE_COMBINE)
 *   cma              one physically contiguous run of exactly the pages
 *                    needed; ENOMEM when the pool is too fragmented for it
 *
 * Contract: alloc(len) rounds len up to whole pages; len must be a positive
 * integer (EINVAL otherwise, as DMA_HEAP_IOCTL_ALLOC's len 0). Out of pages:
 * ENOMEM, and every page taken meanwhile goes back (nothing changes).
 * Validation of the ioctl's argument struct (fd, fd_flags, heap_flags) is
 * the uapi layer's; these take the length only.
 */
import { DmaBufError } from "../errno.js";
import type { Engine } from "../engine/engine.js";
import { PAGE_SIZE } from "../memory/layout.js";
import type { Sync } from "../sync/sync.js";
import {
  CACHING_CACHED, CACHING_WRITE_COMBINE, DmaBufRecord, type Caching, type ExporterName, type PagePiece,
} from "./dma_buf.js";

export type HeapName = "system" | "system-uncached" | "cma";
export const heapNames: HeapName[] = ["system", "system-uncached", "cma"];

/** The chunk orders of the system heap, largest first (the kernel's orders[]). */
export const SYSTEM_HEAP_ORDERS = [8, 4, 0] as const;

export class Heap {
  constructor(readonly sync: Sync, readonly engine: Engine, readonly name: HeapName) {}

  get caching(): Caching {
    return this.name === "system-uncached" ? CACHING_WRITE_COMBINE : CACHING_CACHED;
  }

  /** A new zeroed buffer of at least len bytes (whole pages). */
  alloc(len: number): DmaBufRecord {
    if (!Number.isSafeInteger(len) || len <= 0 || len > 0xffff_f000) {
      throw new DmaBufError("EINVAL", "DMA_HEAP_IOCTL_ALLOC", `len ${len} must be a positive number of bytes below 4 GiB`);
    }
    const pages = Math.ceil(len / PAGE_SIZE);
    const pieces = this.name === "cma" ? this.contiguous(pages) : this.scattered(pages);
    for (const p of pieces) this.engine.fill(p.offset, 0, PAGE_SIZE * 2 ** p.order);
    return DmaBufRecord.create(this.sync, pieces, this.caching, this.name as ExporterName);
  }

  private contiguous(pages: number): PagePiece[] {
    const pool = this.sync.arena.pages;
    if (pages > 2 ** pool.maxOrder) {
      throw new DmaBufError("ENOMEM", "DMA_HEAP_IOCTL_ALLOC",
        `cma: ${pages} contiguous pages exceed the page pool's largest block (${2 ** pool.maxOrder} pages)`);
    }
    try {
      return this.sync.arena.pages.allocRun(pages, "DMA_HEAP_IOCTL_ALLOC");
    } catch (e) {
      if (e instanceof DmaBufError && e.code === "ENOMEM") {
        throw new DmaBufError("ENOMEM", "DMA_HEAP_IOCTL_ALLOC",
          `cma: no contiguous run of ${pages} pages (the pool is exhausted or fragmented)`, { cause: e });
      }
      throw e;
    }
  }

  private scattered(pages: number): PagePiece[] {
    const pool = this.sync.arena.pages;
    const pieces: PagePiece[] = [];
    let left = pages;
    try {
      for (const order of SYSTEM_HEAP_ORDERS) {
        while (left >= 2 ** order) {
          let offset: number;
          try {
            offset = pool.alloc(order, "DMA_HEAP_IOCTL_ALLOC");
          } catch (e) {
            if (e instanceof DmaBufError && e.code === "ENOMEM") break; // try the next smaller order
            throw e;
          }
          pieces.push({ offset, order });
          left -= 2 ** order;
        }
      }
      if (left > 0) {
        throw new DmaBufError("ENOMEM", "DMA_HEAP_IOCTL_ALLOC",
          `${this.name}: out of pages (${pages} needed, ${pages - left} found)`);
      }
      return pieces;
    } catch (e) {
      for (const p of pieces) pool.free(p.offset, p.order, "DMA_HEAP_IOCTL_ALLOC");
      throw e;
    }
  }
}

/*
 * udmabuf: a dma-buf over pages of memfds (/dev/udmabuf, UDMABUF_CREATE and
 * UDMABUF_CREATE_LIST). The buffer's pages are the memfds' own: writing
 * through one is seen through the other, with no copy. The buffer holds a
 * reference on each memfd, so the pages outlive a closed memfd.
 *
 * Rules (drivers/dma-buf/udmabuf.c), checked for every item before anything
 * is taken, so a refused call changes nothing:
 *   an item's memfd not a memfd: EBADFD
 *   offset or size not page aligned: EINVAL
 *   the memfd not sealed with F_SEAL_SHRINK, or sealed with F_SEAL_WRITE or
 *   F_SEAL_FUTURE_WRITE: EINVAL
 *   offset + size past the memfd's end: EINVAL
 *   no items, or more than UDMABUF_LIST_LIMIT: EINVAL
 *   a total of 0, or above UDMABUF_SIZE_LIMIT: EINVAL
 * Flags are the uapi's business (UDMABUF_FLAGS_CLOEXEC is the only defined
 * one, and mainline ignores unknown bits), so this takes none.
 */
import { DmaBufError, hex } from "../errno.js";
import { describe, objectArg } from "../args.js";
import { PAGE_SIZE } from "../memory/layout.js";
import type { Sync } from "../sync/sync.js";
import { CACHING_CACHED, DmaBufRecord, type PagePiece } from "./dma_buf.js";
import { F_SEAL_FUTURE_WRITE, F_SEAL_SHRINK, F_SEAL_WRITE, Memfd } from "./memfd.js";

export const UDMABUF_FLAGS_CLOEXEC = 0x01;
/** The module's size_limit_mb default: 64 MiB per buffer. */
export const UDMABUF_SIZE_LIMIT = 64 * 1024 * 1024;
/** The module's list_limit default. */
export const UDMABUF_LIST_LIMIT = 1024;

export interface UdmabufItem {
  memfd: unknown;
  offset: number;
  size: number;
}

/** UDMABUF_CREATE_LIST (UDMABUF_CREATE is a list of one item). */
export function udmabufCreate(sync: Sync, items: UdmabufItem[]): DmaBufRecord {
  if (!Array.isArray(items)) throw new DmaBufError("EFAULT", "UDMABUF_CREATE_LIST", `the items ${describe(items)} are not an array`);
  const syscall = items.length === 1 ? "UDMABUF_CREATE" : "UDMABUF_CREATE_LIST";
  if (items.length === 0 || items.length > UDMABUF_LIST_LIMIT) {
    throw new DmaBufError("EINVAL", syscall, `count ${items.length} must be between 1 and ${UDMABUF_LIST_LIMIT}`);
  }
  let total = 0;
  items.forEach((item, i) => {
    const { memfd, offset, size } = objectArg<UdmabufItem>(item, syscall, `item ${i}`);
    if (!(memfd instanceof Memfd) || memfd.closed) {
      throw new DmaBufError("EBADFD", syscall, `item ${i}: the file is not an open memfd`);
    }
    for (const [what, v] of [["offset", offset], ["size", size]] as const) {
      if (!Number.isSafeInteger(v) || v < 0 || v % PAGE_SIZE !== 0) {
        throw new DmaBufError("EINVAL", syscall, `item ${i}: ${what} ${describe(v)} is not a multiple of the page size`);
      }
    }
    const seals = memfd.seals;
    if ((seals & F_SEAL_SHRINK) === 0) {
      throw new DmaBufError("EINVAL", syscall, `item ${i}: memfd '${memfd.name}' is not sealed with F_SEAL_SHRINK`);
    }
    if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) !== 0) {
      throw new DmaBufError("EINVAL", syscall, `item ${i}: memfd '${memfd.name}' is sealed against writing (seals ${hex(seals)})`);
    }
    if (offset + size > memfd.size) {
      throw new DmaBufError("EINVAL", syscall, `item ${i}: offset ${offset} + size ${size} passes the memfd's ${memfd.size} bytes`);
    }
    total += size;
  });
  if (total === 0 || total > UDMABUF_SIZE_LIMIT) {
    throw new DmaBufError("EINVAL", syscall, `total size ${total} must be between 1 page and ${UDMABUF_SIZE_LIMIT} bytes`);
  }
  const pieces: PagePiece[] = [];
  const backing: number[] = [];
  for (const { memfd, offset, size } of items as { memfd: Memfd; offset: number; size: number }[]) {
    const pages = memfd.pages();
    for (let p = offset / PAGE_SIZE; p < (offset + size) / PAGE_SIZE; p++) pieces.push({ offset: pages[p], order: 0 });
    memfd.ref();
    backing.push(memfd.offset);
  }
  return DmaBufRecord.create(sync, pieces, CACHING_CACHED, "udmabuf", backing);
}

/*
 * The registered resources of a ring (io_uring_register), as tables in the
 * sync heap so that the SQ thread reads them too. A ring's CTX_FILES and
 * CTX_BUFS words name them; they change only under CTX_LOCK with nothing in
 * flight (the kernel's quiesce), so the kernel side reads them without more.
 *
 * Registered file slot (FILE_SLOT bytes), an IoTarget (target.ts):
 *   FILE_KIND u32 (0: an empty slot, fd -1 at registration), FILE_HANDLE,
 *   FILE_FLAGS, FILE_BLOCK_SIZE
 * Registered buffer slot (BUF_SLOT bytes):
 *   BUF_KIND  BUF_USER (a range of user memory) or BUF_DMABUF (a dma-buf
 *             registered with its target file: dma_token.ts), 0 empty
 *   BUF_ADDR  user memory: the range's arena offset; dma-buf: the token record
 *   BUF_LEN   bytes
 *   BUF_UADDR dma-buf: iov_uaddr, the address fixed I/O names its offset 0 by
 */
import { DmaBufError } from "../errno.js";
import type { IoTarget } from "./target.js";

export const FILE_KIND = 0;
export const FILE_HANDLE = 4;
export const FILE_FLAGS = 8;
export const FILE_BLOCK_SIZE = 12;
export const FILE_SLOT = 16;

export const BUF_KIND = 0;
export const BUF_ADDR = 4;
export const BUF_LEN = 8;
export const BUF_UADDR = 12;
export const BUF_SLOT = 16;
export const BUF_USER = 1;
export const BUF_DMABUF = 2;

export interface RegisteredBuffer { kind: number; addr: number; len: number; uaddr: number }

export function writeFileSlot(u32: Uint32Array, table: number, i: number, t: IoTarget | null): void {
  const at = (table + i * FILE_SLOT) >>> 2;
  u32[at + FILE_KIND / 4] = t?.kind ?? 0;
  u32[at + FILE_HANDLE / 4] = t?.handle ?? 0;
  u32[at + FILE_FLAGS / 4] = t?.flags ?? 0;
  u32[at + FILE_BLOCK_SIZE / 4] = t?.blockSize ?? 0;
}

/** The registered file at index i; EBADF for an index past the table or an empty slot. */
export function readFileSlot(u32: Uint32Array, table: number, nr: number, i: number): IoTarget {
  if (!(i >= 0 && i < nr)) throw new DmaBufError("EBADF", "io_file_get_fixed", `fixed file index ${i} is not below the ${nr} registered`);
  const at = (table + i * FILE_SLOT) >>> 2;
  const kind = u32[at + FILE_KIND / 4];
  if (kind === 0) throw new DmaBufError("EBADF", "io_file_get_fixed", `fixed file slot ${i} is empty`);
  return { kind: kind as IoTarget["kind"], handle: u32[at + FILE_HANDLE / 4], flags: u32[at + FILE_FLAGS / 4], blockSize: u32[at + FILE_BLOCK_SIZE / 4] };
}

export function writeBufSlot(u32: Uint32Array, table: number, i: number, b: RegisteredBuffer | null): void {
  const at = (table + i * BUF_SLOT) >>> 2;
  u32[at + BUF_KIND / 4] = b?.kind ?? 0;
  u32[at + BUF_ADDR / 4] = b?.addr ?? 0;
  u32[at + BUF_LEN / 4] = b?.len ?? 0;
  u32[at + BUF_UADDR / 4] = b?.uaddr ?? 0;
}

/** The registered buffer at buf_index i; EFAULT past the table or for an empty slot (io_import_fixed). */
export function readBufSlot(u32: Uint32Array, table: number, nr: number, i: number): RegisteredBuffer {
  if (!(i >= 0 && i < nr)) throw new DmaBufError("EFAULT", "io_import_fixed", `buf_index ${i} is not below the ${nr} registered buffers`);
  const at = (table + i * BUF_SLOT) >>> 2;
  const kind = u32[at + BUF_KIND / 4];
  if (kind === 0) throw new DmaBufError("EFAULT", "io_import_fixed", `registered buffer ${i} is empty`);
  return { kind, addr: u32[at + BUF_ADDR / 4], len: u32[at + BUF_LEN / 4], uaddr: u32[at + BUF_UADDR / 4] };
}

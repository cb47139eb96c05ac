/*
 * Bytes between a regular file and a dma-buf: what copy_file_range (the
 * RFC's v4 form, a dma-buf on one side) and DMA_BUF_IOCTL_RW_FILE (its
 * first form, an ioctl of the dma-buf) both do, here in one place.
 *
 *   buffered  the calling thread's CPU copies between the host's page cache
 *             and the buffer's pages (fs.readSync/writeSync straight into
 *             views of them; through the CPU cache in a non-coherent lab),
 *             as the kernel's buffered path copies from the page cache;
 *   direct    the storage device under the lab's directory (the first
 *             spawnStorage of the lab, dev_nodes.ts) moves the bytes by
 *             DMA: its worker reads or writes the regular file's host fd
 *             straight into the pages its IOMMU maps for this one I/O
 *             (block_io.ts mappedRw: per-I/O mapping, unmapped after).
 *             File position, buffer offset and length in DIRECT_ALIGN
 *             (512-byte) blocks, else EINVAL; no storage device ENODEV.
 * Both go through the read/write path's implicit synchronization
 * (rw.ts withImplicitSync): filling the buffer waits for its readers and
 * writers and is a WRITE fence meanwhile, saving it waits for its writers
 * and is a READ fence; O_NONBLOCK on the dma-buf file is EAGAIN rather than
 * a wait. A revoked buffer is ENODEV. Callers have checked and clipped the
 * range: moveFileDmaBuf moves exactly [bufPos, bufPos + bytes) of the
 * buffer and [filePos, filePos + bytes) of the file, or less when the file
 * ends first (a read then returns the shorter count); a failure before any
 * byte moved changes nothing.
 */
import { DmaBufError, hex } from "../errno.js";
import type { LabCore } from "../lab.js";
import type { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { bufferRuns } from "../dmabuf/runs.js";
import { cpuRuns, withImplicitSync } from "../dmabuf/rw.js";
import { mappedRw, StorageRecord } from "../devices/block_io.js";
import { requireBlocking } from "../memory/futex.js";
import { rootBlockDevice } from "./dev_nodes.js";
import { DIRECT_ALIGN, hostRw, type RegularFile } from "./regular_file.js";

export interface FileDmaBufIo {
  file: RegularFile;
  buf: DmaBufRecord;
  /** true: file -> buffer (fill it); false: buffer -> file (save it). */
  toBuffer: boolean;
  filePos: number;
  bufPos: number;
  bytes: number;
  direct: boolean;
  /** The dma-buf file's O_NONBLOCK. */
  nonblock: boolean;
  syscall: string;
}

/** EINVAL unless the direct I/O's file position, buffer offset and length are whole DIRECT_ALIGN blocks. */
export function checkDirectAlign(filePos: number, bufPos: number, len: number, syscall: string): void {
  for (const [what, v] of [["file offset", filePos], ["dma-buf offset", bufPos], ["length", len]] as const) {
    if (v % DIRECT_ALIGN !== 0) throw new DmaBufError("EINVAL", syscall, `direct I/O: ${what} ${v} is not a multiple of ${DIRECT_ALIGN}`);
  }
}

/** Moves the bytes (see the contract above); returns how many moved. */
export function moveFileDmaBuf(lab: LabCore, io: FileDmaBufIo): number {
  const { buf, file, toBuffer, filePos, bufPos, syscall } = io;
  if (buf.revoked) throw new DmaBufError("ENODEV", syscall, `dma-buf ${hex(buf.offset)} was revoked by its exporter`);
  // Reading the file: no byte past its end is asked for.
  const bytes = toBuffer ? Math.max(0, Math.min(io.bytes, file.size() - filePos)) : io.bytes;
  let storage: StorageRecord | undefined;
  if (io.direct) {
    const record = rootBlockDevice(lab);
    if (record === undefined) throw new DmaBufError("ENODEV", syscall, "direct I/O needs the storage device under the lab's directory (spawnStorage): there is none");
    storage = new StorageRecord(lab, record, syscall);
  }
  if (bytes === 0) return 0;
  return withImplicitSync(buf, toBuffer, syscall, { nonblock: io.nonblock }, () => {
    if (storage === undefined) {
      return cpuRuns(buf, bufPos, bytes, toBuffer, (runs) =>
        hostRw(file.hostFd, runs.map((r) => lab.arena.view(r.addr, r.len)), filePos, !toBuffer, syscall, file.path));
    }
    // The device reads the file into the pages (a write to memory), or writes the pages to it.
    requireBlocking(syscall, "io_uring");
    const pending = mappedRw(storage, !toBuffer, filePos, bufferRuns(buf, bufPos, bytes), file.hostFd);
    for (const f of pending.fences) f.wait();
    const res = pending.finish();
    if (res < 0) throw new DmaBufError(DmaBufError.codeOf(res), syscall, `${file.path}: the storage device failed the direct I/O at ${filePos}`);
    return res;
  });
}

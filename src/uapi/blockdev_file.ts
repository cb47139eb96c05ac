/*
 * An open storage device (/dev/nvme0n1): a block device file. It has no page
 * cache in this lab, so every open behaves as O_DIRECT: offsets, lengths and
 * buffer addresses are in logical blocks (EINVAL otherwise), and the buffers
 * must be user memory of the arena (EFAULT otherwise), which the device
 * reaches through its IOMMU with a mapping per I/O. read/write wait for the
 * device (blocking forms; io_uring is the asynchronous way). The file holds
 * a reference on the storage record; I/O after the device was shut down is
 * ENODEV, on a crashed device EIO.
 */
import { DmaBufError } from "../errno.js";
import type { LabCore } from "../lab.js";
import { requireBlocking } from "../memory/futex.js";
import { blockRw, StorageRecord, storageRef, storageUnref } from "../devices/block_io.js";
import { TARGET_BLK, type IoTarget, type IoTargetFile } from "../io_uring/target.js";
import { isWrite, type RwSyscall } from "../dmabuf/rw.js";
import { OpenFile, type IoOptions } from "./file.js";
import { O_ACCMODE, O_RDONLY, O_WRONLY, SEEK_CUR, SEEK_END, SEEK_SET } from "./uapi.js";

export class BlockDevFile extends OpenFile implements IoTargetFile {
  readonly kind = "blockdev" as const;
  private readonly blockSize: number;

  constructor(readonly lab: LabCore, readonly storage: number, readonly path: string, flags: number) {
    super(flags);
    storageRef(lab, storage);
    this.blockSize = new StorageRecord(lab, storage).blockSize;
  }

  ioTarget(): IoTarget {
    return { kind: TARGET_BLK, handle: this.storage, flags: this.flags & O_ACCMODE, blockSize: this.blockSize };
  }

  protected drop(last: boolean): void {
    if (last) storageUnref(this.lab, this.storage);
  }

  override rw(syscall: RwSyscall, iov: Uint8Array[], pos: number | undefined, _io?: IoOptions): number {
    const write = isWrite(syscall);
    const mode = this.flags & O_ACCMODE;
    if (write ? mode === O_RDONLY : mode === O_WRONLY) throw new DmaBufError("EBADF", syscall, `${this.path} is not open for ${write ? "writing" : "reading"}`);
    const at = pos ?? this.pos;
    const bs = this.blockSize;
    if (!Number.isSafeInteger(at) || at < 0 || at % bs !== 0) throw new DmaBufError("EINVAL", syscall, `offset ${at} is not a multiple of the ${bs}-byte logical block`);
    const segs = iov.map((v, i) => {
      if (!(v instanceof Uint8Array) || !this.lab.arena.owns(v) || !this.lab.arena.user.contains(v.byteOffset)) {
        throw new DmaBufError("EFAULT", syscall, `iovec ${i} is not a view of the lab's user memory`);
      }
      if (v.byteOffset % bs !== 0 || v.byteLength % bs !== 0) {
        throw new DmaBufError("EINVAL", syscall, `iovec ${i} (address ${v.byteOffset}, ${v.byteLength} bytes) is not in ${bs}-byte blocks`);
      }
      return { addr: v.byteOffset, len: v.byteLength };
    });
    requireBlocking(syscall, "io_uring");
    const pending = blockRw(this.lab, this.storage, write, at, segs);
    for (const f of pending.fences) f.wait();
    const n = pending.finish();
    if (n < 0) throw new DmaBufError(DmaBufError.codeOf(n), syscall, `${this.path}: the device failed the I/O at ${at}`);
    if (pos === undefined) this.pos = at + n;
    return n;
  }

  override llseek(offset: number, whence: number): number {
    const base = whence === SEEK_SET ? 0 : whence === SEEK_CUR ? this.pos : whence === SEEK_END ? new StorageRecord(this.lab, this.storage, "lseek").capacity : NaN;
    if (Number.isNaN(base)) throw new DmaBufError("EINVAL", "lseek", `whence ${whence} is not SEEK_SET, SEEK_CUR or SEEK_END`);
    const to = base + offset;
    if (!Number.isSafeInteger(to) || to < 0) throw new DmaBufError("EINVAL", "lseek", `position ${to} is negative or not an integer`);
    this.pos = to;
    return to;
  }
}

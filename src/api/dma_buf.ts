/*
 * The object API: dma-bufs as JavaScript objects, built on the uapi (each
 * call is a system call on this thread's Process), not beside it.
 *
 *   const buf = lab.heap("system").alloc(1 << 20);   // DMA_HEAP_IOCTL_ALLOC
 *   buf.write(bytes, 0);                             // pwrite(2): the read/write path
 *   buf.beginCpuAccess("rw"); ...; buf.endCpuAccess("rw");   // DMA_BUF_IOCTL_SYNC
 *   const map = buf.map();                           // mmap(2)
 *   const fence = buf.exportSyncFile("write");       // DMA_BUF_IOCTL_EXPORT_SYNC_FILE
 *   buf.close();                                     // close(2); also `using`
 *
 * Contract: a DmaBuf owns one fd of its Process (lab.process, one per
 * thread) until close(); every method maps to the system call named beside
 * it and throws its DmaBufError unchanged; every blocking method has an
 * Async twin (Promise, never blocking). Positions: read/write without a
 * position use and advance the file position, with one they are pread/pwrite.
 * share() gives a token another thread turns into its own DmaBuf with
 * DmaBuf.import(lab, token) or lab.import(token); the token holds a
 * reference until then, so the sender may close at once (THE SHARING RULE,
 * src/sync/flight.ts). A token of Process.exportFd (holding no reference)
 * is still accepted.
 */
import type { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { DmaBufError } from "../errno.js";
import { describe, intArg } from "../args.js";
import type { HeapName } from "../dmabuf/heap.js";
import type { LabCore } from "../lab.js";
import { sendFlight, type ShareToken } from "../sync/flight.js";
import { SyncFile } from "../sync/sync_file.js";
import { DmaBufFile } from "../uapi/dma_buf_file.js";
import type { FdToken, IoOptions, OpenFile } from "../uapi/file.js";
import type { DmaBufMapping } from "../uapi/mapping.js";
import type { Process } from "../uapi/process.js";
import { SyncFileFile, installSyncFile } from "../uapi/sync_file_file.js";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME,
  DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE,
  DMA_HEAP_IOCTL_ALLOC, O_CLOEXEC, O_NONBLOCK, O_RDWR, SEEK_CUR, SEEK_END, SEEK_SET, F_GETFL, F_SETFL,
  type dma_buf_export_sync_file,
} from "../uapi/uapi.js";

/**
 * What the object API needs of a lab: the core plus this thread's Process
 * and its heaps. Lab (src/api/lab.ts) is one; the object API's modules take
 * this type so that none of them imports the facade that imports them.
 */
export interface ObjectLab extends LabCore {
  readonly process: Process;
  heap(name: HeapName): DmaHeap;
}

/** Which way CPU access or a fence goes: "read", "write" or both. */
export type Direction = "read" | "write" | "rw";

const directionFlags: Record<Direction, number> = { read: DMA_BUF_SYNC_READ, write: DMA_BUF_SYNC_WRITE, rw: DMA_BUF_SYNC_RW };

function flagsOf(direction: Direction, syscall: string): number {
  const flags = typeof direction === "string" && Object.hasOwn(directionFlags, direction) ? directionFlags[direction] : undefined;
  if (flags === undefined) throw new DmaBufError("EINVAL", syscall, `direction ${describe(direction)} is not "read", "write" or "rw"`);
  return flags;
}

export class DmaBuf {
  /** The open file description this DmaBuf stands for; null once closed. */
  private description: OpenFile | null;

  /** A DmaBuf over an fd of `process` that it now owns. */
  constructor(readonly process: Process, readonly fd: number) {
    const file = process.file(fd, "dma_buf");
    if (!(file instanceof DmaBufFile)) throw new DmaBufError("EBADF", "dma_buf", `fd ${fd} is a ${file.kind} file, not a dma-buf`);
    this.description = file;
  }

  /**
   * This thread's DmaBuf for a token from another thread: a share() token
   * (adopting its reference; EINVAL/EBADF for a bad or spent one), or an fd
   * token of Process.exportFd.
   */
  static import(lab: ObjectLab, token: ShareToken<"dma-buf"> | FdToken): DmaBuf {
    if (Object(token).kind !== "dma-buf") {
      throw new DmaBufError("EINVAL", "dma_buf_import", `token kind '${String(Object(token).kind)}' is not 'dma-buf'`);
    }
    return new DmaBuf(lab.process, lab.process.importFd(token));
  }

  /**
   * The fd, while it still refers to this DmaBuf's open file description:
   * EBADF once this DmaBuf is closed, or when its fd was closed behind its
   * back (and perhaps reused for another file, which is never touched).
   */
  private fdFor(syscall: string): number {
    const file = this.description;
    if (file === null) throw new DmaBufError("EBADF", syscall, `this DmaBuf (fd ${this.fd}) is closed`);
    if (this.process.lookup(this.fd) !== file) {
      throw new DmaBufError("EBADF", syscall, `fd ${this.fd} no longer refers to this DmaBuf's file (it was closed with process.close)`);
    }
    return this.fd;
  }

  private get file(): DmaBufFile {
    return this.process.file(this.fdFor("dma_buf")) as DmaBufFile;
  }

  /** The buffer object behind the fd (borrowed: valid while this DmaBuf is open). */
  get record(): DmaBufRecord {
    return this.file.buf;
  }

  get size(): number {
    return this.file.buf.size;
  }

  get name(): string {
    return this.file.buf.name;
  }

  /** DMA_BUF_SET_NAME. */
  set name(name: string) {
    this.process.ioctl(this.fdFor("ioctl"), DMA_BUF_SET_NAME, name);
  }

  /** O_NONBLOCK: read, write and beginCpuAccess give EAGAIN instead of waiting. */
  get nonblock(): boolean {
    return (this.process.fcntl(this.fdFor("fcntl"), F_GETFL) & O_NONBLOCK) !== 0;
  }

  set nonblock(on: boolean) {
    this.process.fcntl(this.fdFor("fcntl"), F_SETFL, on ? O_NONBLOCK : 0);
  }

  /** The file position; assigning it is lseek(SEEK_SET). */
  get position(): number {
    return this.process.lseek(this.fdFor("lseek"), 0, SEEK_CUR);
  }

  set position(pos: number) {
    this.process.lseek(this.fdFor("lseek"), pos, SEEK_SET);
  }

  /** lseek(2) with SEEK_SET, SEEK_CUR or SEEK_END. */
  seek(offset: number, whence: typeof SEEK_SET | typeof SEEK_CUR | typeof SEEK_END = SEEK_SET): number {
    return this.process.lseek(this.fdFor("lseek"), offset, whence);
  }

  /**
   * read(2), or pread(2) at `pos`: the bytes read, 0 at the end. Waits for
   * the buffer's writers (implicit sync) unless the fd is O_NONBLOCK (EAGAIN).
   * @param into  the destination (arena memory from lab.alloc() is the fast path)
   * @param pos   a position: pread; none (or null): the file position, advanced
   * @param io    `timeoutMs`: give up waiting for fences after that many ms (ETIMEDOUT, nothing read); default no limit
   */
  read(into: Uint8Array, pos?: number | null, io?: IoOptions): number {
    return pos === undefined || pos === null ? this.process.read(this.fdFor("read"), into, io) : this.process.pread(this.fdFor("pread"), into, pos, io);
  }

  /**
   * write(2), or pwrite(2) at `pos`: the bytes written (short at the end,
   * ENOSPC at or past it). Waits for readers and writers unless O_NONBLOCK.
   * @param io  `timeoutMs`: give up waiting for fences after that many ms (ETIMEDOUT, nothing written)
   */
  write(from: Uint8Array, pos?: number | null, io?: IoOptions): number {
    return pos === undefined || pos === null ? this.process.write(this.fdFor("write"), from, io) : this.process.pwrite(this.fdFor("pwrite"), from, pos, io);
  }

  /** readv(2) at the file position; `io.timeoutMs` as for read(). */
  readv(iov: Uint8Array[], io?: IoOptions): number {
    return this.process.readv(this.fdFor("readv"), iov, io);
  }

  /** writev(2) at the file position; `io.timeoutMs` as for write(). */
  writev(iov: Uint8Array[], io?: IoOptions): number {
    return this.process.writev(this.fdFor("writev"), iov, io);
  }

  /** read() as a Promise: waits with Atomics.waitAsync, never blocks; `pos` and `io.timeoutMs` as for read(). */
  async readAsync(into: Uint8Array, pos?: number, io?: IoOptions): Promise<number> {
    return this.process.readAsync(this.fdFor("read"), into, pos, io);
  }

  /** write() as a Promise, never blocking; `pos` and `io.timeoutMs` as for write(). */
  async writeAsync(from: Uint8Array, pos?: number, io?: IoOptions): Promise<number> {
    return this.process.writeAsync(this.fdFor("write"), from, pos, io);
  }

  /** readv() as a Promise, at `pos` when given (preadv); `io.timeoutMs` as for read(). */
  async readvAsync(iov: Uint8Array[], pos?: number, io?: IoOptions): Promise<number> {
    return this.process.readvAsync(this.fdFor("readv"), iov, pos, io);
  }

  /** writev() as a Promise, at `pos` when given (pwritev); `io.timeoutMs` as for write(). */
  async writevAsync(iov: Uint8Array[], pos?: number, io?: IoOptions): Promise<number> {
    return this.process.writevAsync(this.fdFor("writev"), iov, pos, io);
  }

  /**
   * DMA_BUF_IOCTL_SYNC START: waits for the implicit fences of the direction
   * (a reader for writers, a writer for everyone), then invalidates the CPU
   * cache model. `timeoutMs`: give up after that many ms (ETIMEDOUT); default
   * no limit. EAGAIN instead of waiting on an O_NONBLOCK fd.
   */
  beginCpuAccess(direction: Direction = "rw", timeoutMs?: number): void {
    this.process.ioctl(this.fdFor("ioctl"), DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | flagsOf(direction, "DMA_BUF_IOCTL_SYNC"), timeoutMs });
  }

  /** beginCpuAccess() as a Promise, never blocking; `timeoutMs` the same. */
  async beginCpuAccessAsync(direction: Direction = "rw", timeoutMs?: number): Promise<void> {
    await this.process.ioctlAsync(this.fdFor("ioctl"), DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | flagsOf(direction, "DMA_BUF_IOCTL_SYNC"), timeoutMs });
  }

  /** DMA_BUF_IOCTL_SYNC END: cleans toward devices; does not wait. */
  endCpuAccess(direction: Direction = "rw"): void {
    this.process.ioctl(this.fdFor("ioctl"), DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | flagsOf(direction, "DMA_BUF_IOCTL_SYNC") });
  }

  /**
   * mmap(2) of [offset, offset + length): views to bracket with
   * begin/endCpuAccess; unmap() it. `offset` a multiple of the page size,
   * `length` > 0 (rounded up to whole pages), the range inside the buffer
   * (EINVAL otherwise). `mapping.view` is the one view of a contiguous range.
   */
  map(offset = 0, length?: number): DmaBufMapping {
    return this.process.mmap(this.fdFor("mmap"), offset, length ?? this.size - intArg(offset, "mmap", "offset"));
  }

  unmap(mapping: DmaBufMapping): void {
    this.process.munmap(mapping);
  }

  /** DMA_BUF_IOCTL_EXPORT_SYNC_FILE: what a reader ("read") or writer ("write", "rw") would wait for. */
  exportSyncFile(direction: Direction = "write"): SyncFile {
    const arg: dma_buf_export_sync_file = { flags: flagsOf(direction, "DMA_BUF_IOCTL_EXPORT_SYNC_FILE") };
    this.process.ioctl(this.fdFor("ioctl"), DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg);
    const file = this.process.file(arg.fd!) as SyncFileFile;
    try {
      return new SyncFile(file.syncFile.sync, file.syncFile.fence);
    } finally {
      this.process.close(arg.fd!);
    }
  }

  /** DMA_BUF_IOCTL_IMPORT_SYNC_FILE: the file's fences join the buffer's (as writers with "write"/"rw"). */
  importSyncFile(syncFile: SyncFile, direction: Direction = "write"): void {
    if (!(syncFile instanceof SyncFile)) throw new DmaBufError("EINVAL", "DMA_BUF_IOCTL_IMPORT_SYNC_FILE", `${describe(syncFile)} is not a SyncFile`);
    const flags = flagsOf(direction, "DMA_BUF_IOCTL_IMPORT_SYNC_FILE");
    const fd = installSyncFile(this.process, () => new SyncFile(syncFile.sync, syncFile.fence));
    try {
      this.process.ioctl(this.fdFor("ioctl"), DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags, fd });
    } finally {
      this.process.close(fd);
    }
  }

  /** fdinfo: size, count, exp_name, name. */
  fdinfo(): string {
    return this.process.fdinfo(this.fdFor("fdinfo"));
  }

  /**
   * A token for another thread (DmaBuf.import or lab.import there). It holds
   * a reference on the buffer until it is imported or dropped
   * (lab.dropToken), so this DmaBuf may be closed at once.
   */
  share(): ShareToken<"dma-buf"> {
    const file = this.file;
    return sendFlight(this.process.lab.sync, "dma-buf", file.buf.offset, () => { file.buf.get(); }, { flags: file.flags });
  }

  get closed(): boolean {
    return this.description === null;
  }

  /**
   * close(2). A second close is harmless, and so is closing a DmaBuf whose
   * fd was closed behind its back: whatever reuses that fd number stays open.
   */
  close(): void {
    const file = this.description;
    if (file === null) return;
    this.description = null;
    if (this.process.lookup(this.fd) === file) this.process.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A dma-heap opened by this thread's Process: alloc() is DMA_HEAP_IOCTL_ALLOC.
 * One per heap name and Process (lab.heap(name) returns the same one), so
 * it holds one heap fd however often it is asked for. The fd is opened on
 * the first alloc() and again if it was closed behind the heap's back
 * (process.closeAll()): the heap holds its open file description, never
 * just the number, and never allocates through another file's fd.
 */
export class DmaHeap {
  private heapFd = -1;
  private description: OpenFile | undefined;

  constructor(readonly process: Process, readonly name: HeapName) {}

  /** A new zeroed DmaBuf of at least `size` bytes (whole pages). */
  alloc(size: number): DmaBuf {
    const data = { len: size, fd: 0, fd_flags: O_RDWR | O_CLOEXEC, heap_flags: 0 };
    this.process.ioctl(this.fd(), DMA_HEAP_IOCTL_ALLOC, data);
    return new DmaBuf(this.process, data.fd);
  }

  /** The heap fd, (re)opened when it no longer refers to this heap's file. */
  private fd(): number {
    if (this.description === undefined || this.process.lookup(this.heapFd) !== this.description) {
      this.heapFd = this.process.open(`/dev/dma_heap/${this.name}`, O_RDWR | O_CLOEXEC);
      this.description = this.process.file(this.heapFd);
    }
    return this.heapFd;
  }
}

/*
 * OpenFile: one open file description (the kernel's struct file) of the uapi
 * layer: what an fd-table entry points to.
 *
 * Contract:
 *   - A file is made with one reference, which the fd it is installed under
 *     takes over. Every other fd (dup, or the table slot an fd token is
 *     imported into) and every mapping takes one more with get() and gives it
 *     back with put(); the last put() releases the object the file stands for
 *     (DmaBufRecord.closeFile(), SyncFile.close(), SwSyncTimeline.close()).
 *   - `flags` is the file's access mode and status flags (O_NONBLOCK); they
 *     belong to the description, so dup()ed fds share them (fcntl F_SETFL).
 *   - The operations a kind of file does not have answer as the kernel's VFS
 *     does for a file without that operation: ioctl ENOTTY, llseek ESPIPE,
 *     mmap ENODEV, poll DEFAULT_POLLMASK, fdinfo only the generic lines.
 *   - A failed operation changes nothing.
 *   - An operation that needs the calling process (an ioctl that takes or
 *     makes fds, io_uring's setup) gets it as a Caller: the lab, fd lookup
 *     and installing a new fd, which is all the kinds use. Process
 *     (process.ts) is one; the kinds name this interface, not the class, so
 *     that process.ts, which makes every kind of file, sits above them.
 */
import { DmaBufError } from "../errno.js";
import { isWrite, type RwSyscall } from "../dmabuf/rw.js";
import type { LabCore } from "../lab.js";
import type { DmaBufMapping } from "./mapping.js";
import { DEFAULT_POLLMASK, O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY } from "./uapi.js";

export type FileKind = "dma-buf" | "sync_file" | "sw_sync" | "dma-heap" | "memfd" | "udmabuf" | "regular" | "blockdev" | "io_uring" | "stdio";

/** What crosses to another thread for an fd (process.exportFd): structured-clonable, holds no reference. */
export interface FdToken {
  /** The kind of file it reopens: "dma-buf", "sync_file", "sw_sync", "memfd" or "udmabuf". */
  kind: Exclude<FileKind, "dma-heap" | "regular" | "blockdev" | "io_uring" | "stdio">;
  /** The object's record in the arena (dma-buf record, fence, sw_sync timeline). */
  offset: number;
  /**
   * That record's generation when the token was made (src/memory/record.ts):
   * a token whose record was freed meanwhile, its block perhaps reused, is
   * refused (EBADF for a dma-buf, EINVAL otherwise).
   */
  generation: number;
  /** The sender's file flags (access mode, O_NONBLOCK), copied to the new description. */
  flags: number;
  /** sync_file: its name. */
  name?: string;
}

/** The calling process as a file's operations see it (Process is one; see the contract above). */
export interface Caller {
  readonly lab: LabCore;
  /** The file an fd refers to, or undefined (for arguments that name fds). */
  lookup(fd: unknown): OpenFile | undefined;
  /** Makes a file and installs it under the lowest free fd (EMFILE before make() runs); returns the fd. */
  installNew(make: () => OpenFile, cloexec: boolean, syscall?: string): number;
}

/** Per-call options of read and write. */
export interface IoOptions {
  /** Give up waiting for the buffer's fences after this many ms: ETIMEDOUT, nothing copied. undefined or null: no limit. */
  timeoutMs?: number | null;
}

export abstract class OpenFile {
  abstract readonly kind: FileKind;
  private refs = 1;

  protected constructor(public flags: number) {}

  get nonblock(): boolean {
    return (this.flags & O_NONBLOCK) !== 0;
  }

  get accessMode(): number {
    return this.flags & O_ACCMODE;
  }

  /** FMODE_READ of the access mode: O_RDONLY and O_RDWR (3, ioctl only, neither reads nor writes). */
  get canRead(): boolean {
    return this.accessMode === O_RDONLY || this.accessMode === O_RDWR;
  }

  /** FMODE_WRITE of the access mode: O_WRONLY and O_RDWR. */
  get canWrite(): boolean {
    return this.accessMode === O_WRONLY || this.accessMode === O_RDWR;
  }

  get accessModeName(): string {
    return ["O_RDONLY", "O_WRONLY", "O_RDWR", "3 (ioctl only)"][this.accessMode];
  }

  /** References: fds in any table of this thread, plus mappings. */
  get references(): number {
    return this.refs;
  }

  /** One more reference (an fd or a mapping). */
  get(): this {
    this.acquire();
    this.refs++;
    return this;
  }

  /** Drops one reference; the last releases the object. */
  put(): void {
    if (this.refs <= 0) throw new DmaBufError("EBADF", "fput", `this ${this.kind} file is already released`);
    this.refs--;
    this.drop(this.refs === 0);
  }

  /** Per-reference bookkeeping of get() (a dma-buf counts its file references). */
  protected acquire(): void {}

  /** Per-reference bookkeeping of put(); `last` releases the object. */
  protected abstract drop(last: boolean): void;

  ioctl(_proc: Caller, request: number, _arg: unknown): number {
    throw new DmaBufError("ENOTTY", "ioctl", `request 0x${request.toString(16)} is not an ioctl of a ${this.kind} file`);
  }

  /** The ioctl's async twin: the same, but a wait is a Promise (default: the blocking form, for ioctls that never wait). */
  ioctlAsync(proc: Caller, request: number, arg: unknown): Promise<number> {
    return Promise.resolve().then(() => this.ioctl(proc, request, arg));
  }

  llseek(_offset: number, _whence: number): number {
    throw new DmaBufError("ESPIPE", "lseek", `a ${this.kind} file cannot seek`);
  }

  /** The file's mmap, after Process.mmap's access checks; prot is PROT_READ | PROT_WRITE bits. */
  mmap(_offset: number, _length: number, _prot: number): DmaBufMapping {
    throw new DmaBufError("ENODEV", "mmap", `a ${this.kind} file cannot be mapped`);
  }

  /**
   * read_iter / write_iter for the system call `syscall` (its name gives the
   * direction and goes into errors): the iovecs at `pos`, or at (and
   * advancing) the file position when pos is undefined or null. A file without them: EINVAL.
   */
  rw(syscall: RwSyscall, _iov: Uint8Array[], _pos: number | undefined | null, _io?: IoOptions | null): number {
    throw new DmaBufError("EINVAL", syscall, `a ${this.kind} file cannot be ${isWrite(syscall) ? "written" : "read"}`);
  }

  rwAsync(syscall: RwSyscall, iov: Uint8Array[], pos: number | undefined | null, io?: IoOptions | null): Promise<number> {
    return Promise.resolve().then(() => this.rw(syscall, iov, pos, io));
  }

  poll(): number {
    return DEFAULT_POLLMASK;
  }

  /** The file position (f_pos) of this open file description (fdinfo's pos; 0 for files that do not seek). */
  pos = 0;

  /** The file-specific lines of /proc/<pid>/fdinfo/<fd> ("" for none). */
  fdinfo(): string {
    return "";
  }

  /** The token another thread imports (process.importFd); EINVAL for files that cannot be passed. */
  exportToken(): FdToken {
    throw new DmaBufError("EINVAL", "exportFd", `a ${this.kind} file cannot be passed to another thread`);
  }
}

/** A file over one object that it closes with its last reference (a SyncFile, an SwSyncTimeline). */
export abstract class ObjectFile<T extends { close(): void }> extends OpenFile {
  /** Takes over `object`. */
  constructor(protected readonly object: T, flags: number) {
    super(flags);
  }

  protected drop(last: boolean): void {
    if (last) this.object.close();
  }
}

/**
 * vfs_read / vfs_write's first check, for every read/write-family call (the
 * system calls, their Async twins, io_uring's READ/WRITE): the file must be
 * open for that direction (FMODE_READ, FMODE_WRITE), else EBADF.
 */
export function checkRwAccess(file: OpenFile, fd: number, write: boolean, syscall: string): void {
  if (!(write ? file.canWrite : file.canRead)) {
    throw new DmaBufError("EBADF", syscall, `fd ${fd} is not open for ${write ? "writing" : "reading"} (access mode ${file.accessModeName})`);
  }
}

/*
 * Process: a file-descriptor table and the system calls on it, the uapi's
 * entry point. One per thread is normal; a test may make several.
 *
 * Contract:
 *   fds      0, 1 and 2 are stdin, stdout and stderr (StdioFile), open
 *            in every Process; new fds are small integers from 3 up (0-2
 *            are never handed out, even once closed), the lowest free one first, below `maxFds`
 *            (RLIMIT_NOFILE, default 1024): none free EMFILE. An fd not
 *            in the table (never opened, closed, not an integer): EBADF.
 *            Each fd has its own close-on-exec bit (FD_CLOEXEC) and points
 *            to an open file description (OpenFile, src/uapi/file.ts); dup
 *            shares the description, so close() of one fd leaves the file
 *            open, and the last reference (fd or mapping) releases it.
 *   open     /dev/dma_heap/{system,system-uncached,cma} (a DmaHeapFile) and
 *            /dev/sw_sync (also /sys/kernel/debug/sync/sw_sync: a new timeline
 *            per open), /dev/udmabuf (UDMABUF_CREATE, UDMABUF_CREATE_LIST).
 *            Other paths ENOENT. flags: the access mode, O_NONBLOCK
 *            and O_CLOEXEC are kept, other bits ignored.
 *   fcntl    F_GETFD/F_SETFD (FD_CLOEXEC), F_GETFL (access mode | O_NONBLOCK),
 *            F_SETFL (only O_NONBLOCK changes), F_ADD_SEALS/F_GET_SEALS on a
 *            memfd; other commands EINVAL.
 *   memfd_create, ftruncate  memfds, the page source of /dev/udmabuf.
 *   ioctl    the file's operation (ENOTTY when it has none; a dma-heap
 *            EINVAL); ioctlAsync is its twin, which waits with Promises.
 *   read, write, pread, pwrite, readv, writev (and Async twins)  the file's
 *            read/write operation (a dma-buf: the read/write path). First,
 *            as vfs_read/vfs_write: a read of a file not open for reading
 *            (O_WRONLY) or a write of one not open for writing (O_RDONLY)
 *            EBADF, before anything happens; then files without the
 *            operation: EINVAL.
 *   copy_file_range  between regular files, and between a regular file and
 *            a dma-buf either way (src/uapi/copy_file_range.ts).
 *   mmap     (fd, offset, length, prot = PROT_READ | PROT_WRITE, flags =
 *            MAP_SHARED), do_mmap's checks first: flags neither MAP_SHARED
 *            nor MAP_PRIVATE EINVAL; a file not open for reading, or
 *            PROT_WRITE with MAP_SHARED on one not open for writing,
 *            EACCES; MAP_PRIVATE (copy-on-write) is not modelled: EINVAL.
 *            Then the file's mmap (a dma-buf, a memfd; others ENODEV).
 *   Async twins (ioctlAsync, readAsync, ..., pollAsync) report every error,
 *            a bad fd included, through their Promise; they never throw.
 *   lseek, poll, fdinfo  the file's operations. poll: revents =
 *            events' ready bits, POLLNVAL for a bad fd; it returns how many
 *            entries have revents. Its timeout (ms; 0 a snapshot, negative
 *            without limit) waits for readiness, re-checked at every fence
 *            signal of the lab; pollAsync is its twin.
 *   munmap   drops a mapping's reference (EINVAL when already unmapped).
 *   exportFd/importFd  pass an fd to another thread (worker): exportFd(fd)
 *            gives a structured-clonable FdToken {kind, offset, flags}; the
 *            receiving thread's Process.importFd(token) installs a new fd
 *            for the same object, with a description of its own (flags
 *            copied). THE TOKEN RULE: a token holds no reference, so one
 *            that is never imported leaks nothing; in exchange the sender
 *            must keep its fd (or another reference) open until the receiver
 *            has imported it (reply, then close), as SCM_RIGHTS holds the
 *            file while the fd is in flight. Importing a token whose object is
 *            gone gives EBADF where that can be detected (a dma-buf whose
 *            refcount is 0, a closed sw_sync timeline).
 *   close()  of the process (closeAll / Symbol.dispose) unmaps what it
 *            mapped and closes every fd.
 * Every failed call changes nothing: a call that makes a new fd finds the
 * slot first (EMFILE before any object is made) and installs only after.
 */
import { DmaBufError } from "../errno.js";
import { describe, flagsArg, intArg, positionArg, stringArg, writableArg } from "../args.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { isWrite, type RwSyscall } from "../dmabuf/rw.js";
import { heapNames, type HeapName } from "../dmabuf/heap.js";
import type { LabCore } from "../lab.js";
import { keepingAlive, nowMs, requireBlocking } from "../memory/futex.js";
import { SwSyncTimeline } from "../sync/sw_sync.js";
import { SyncFile } from "../sync/sync_file.js";
import { DmaBufFile } from "./dma_buf_file.js";
import { DmaHeapFile } from "./dma_heap.js";
import { checkRwAccess, type Caller, type FdToken, type IoOptions, type OpenFile } from "./file.js";
import { receiveFlight, type ShareToken } from "../sync/flight.js";
import { DmaBufMapping } from "./mapping.js";
import { MemfdFile } from "./memfd_file.js";
import { devNode } from "./dev_nodes.js";
import { IoUringFile } from "./io_uring_file.js";
import { openBeneath } from "./regular_file.js";
import { copyFileRange } from "./copy_file_range.js";
import type { IoUringParams } from "../io_uring/io_uring.js";
import { UdmabufDevFile } from "./udmabuf_file.js";
import { SwSyncFile } from "./sw_sync_file.js";
import { SyncFileFile } from "./sync_file_file.js";
import { StdioFile, STDERR_FILENO, STDIN_FILENO, STDOUT_FILENO } from "./stdio_file.js";
import {
  DMA_HEAP_DIR, O_DIRECT, F_ADD_SEALS, F_GET_SEALS, F_GETFD, F_GETFL, F_SETFD, F_SETFL, MFD_CLOEXEC, O_RDWR, FD_CLOEXEC, O_ACCMODE, O_CLOEXEC, O_NONBLOCK, POLLNVAL,
  SW_SYNC_PATH, UDMABUF_PATH, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE,
} from "./uapi.js";

export const FIRST_FD = 3;
export const DEFAULT_MAX_FDS = 1024;
const SW_SYNC_DEBUGFS = "/sys/kernel/debug/sync/sw_sync";

interface FdEntry {
  file: OpenFile;
  cloexec: boolean;
}

export interface PollFd {
  fd: number;
  events: number;
  /** Output. */
  revents?: number;
}

export interface ProcessOptions {
  /** RLIMIT_NOFILE: fds are below it (default 1024). */
  maxFds?: number;
  /** The name sw_sync timelines opened here get (the kernel uses the process name). */
  name?: string;
  /**
   * A host directory whose regular files open() reaches: any path outside
   * /dev/ is resolved beneath it (regular_file.ts: nothing outside it, '..'
   * or symbolic links included). Without it such paths are ENOENT.
   */
  root?: string;
}

export class Process implements Caller {
  readonly maxFds: number;
  readonly name: string;
  readonly root: string | undefined;
  private readonly table = new Map<number, FdEntry>();
  private readonly mappings = new Set<DmaBufMapping>();

  constructor(readonly lab: LabCore, options: ProcessOptions = {}) {
    const { maxFds = DEFAULT_MAX_FDS, name = "dmabuf-lab" } = options;
    if (!Number.isSafeInteger(maxFds) || maxFds <= FIRST_FD) {
      throw new DmaBufError("EINVAL", "setrlimit", `maxFds ${maxFds} must be an integer above ${FIRST_FD}`);
    }
    this.maxFds = maxFds;
    this.name = name;
    this.root = options.root;
    for (const fd of [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO]) this.table.set(fd, { file: new StdioFile(fd), cloexec: false });
  }

  /** The open fds, ascending. */
  get fds(): number[] {
    return [...this.table.keys()].sort((a, b) => a - b);
  }

  /** The file an fd refers to (EBADF when there is none). */
  file(fd: number, syscall = "fget"): OpenFile {
    const entry = this.table.get(fd);
    if (entry === undefined) throw new DmaBufError("EBADF", syscall, `fd ${describe(fd)} is not open`);
    return entry.file;
  }

  /** The file an fd refers to, or undefined (for arguments that name fds: sync_file_fdget and the like). */
  lookup(fd: unknown): OpenFile | undefined {
    return typeof fd === "number" ? this.table.get(fd)?.file : undefined;
  }

  /**
   * Makes a file and installs it under the lowest free fd: the fd is found
   * first (EMFILE, and make() is not called), then make() builds the file
   * (its failure leaves the table alone). Returns the fd.
   */
  installNew(make: () => OpenFile, cloexec: boolean, syscall = "get_unused_fd"): number {
    const fd = this.freeFd(syscall);
    this.table.set(fd, { file: make(), cloexec });
    return fd;
  }

  private freeFd(syscall: string): number {
    for (let fd = FIRST_FD; fd < this.maxFds; fd++) if (!this.table.has(fd)) return fd;
    throw new DmaBufError("EMFILE", syscall, `all ${this.maxFds - FIRST_FD} fds below the limit ${this.maxFds} are open`);
  }

  // ---- open, close, dup, fcntl ---------------------------------------------

  open(path: string, flags = 0): number {
    stringArg(path, "open", "path");
    flagsArg(flags, "open");
    const fileFlags = flags & (O_ACCMODE | O_NONBLOCK);
    const cloexec = (flags & O_CLOEXEC) !== 0;
    const node = typeof path === "string" ? devNode(this.lab, path) : undefined;
    if (node !== undefined) return this.installNew(() => node(flags & (O_ACCMODE | O_NONBLOCK | O_DIRECT)), cloexec, "open");
    if (typeof path === "string" && !path.startsWith("/dev/") && this.root !== undefined) {
      const root = this.root;
      return this.installNew(() => openBeneath(root, path, flags), cloexec, "open");
    }
    if (path.startsWith(DMA_HEAP_DIR)) {
      const name = path.slice(DMA_HEAP_DIR.length);
      if (!heapNames.includes(name as HeapName)) {
        throw new DmaBufError("ENOENT", "open", `${path}: no such heap (heaps: ${heapNames.join(", ")})`);
      }
      return this.installNew(() => new DmaHeapFile(this.lab.exporter(name as HeapName), fileFlags), cloexec, "open");
    }
    if (path === SW_SYNC_PATH || path === SW_SYNC_DEBUGFS) {
      return this.installNew(() => new SwSyncFile(this.lab.sync.swSync(this.name), fileFlags), cloexec, "open");
    }
    if (path === UDMABUF_PATH) {
      return this.installNew(() => new UdmabufDevFile(fileFlags), cloexec, "open");
    }
    throw new DmaBufError("ENOENT", "open", `${path}: no such device`);
  }

  // ---- io_uring ------------------------------------------------------------------

  /** io_uring_setup(2): a new ring's fd; params is filled in (src/uapi/io_uring_file.ts). */
  io_uring_setup(entries: number, params: IoUringParams = {}): number {
    return this.installNew(() => IoUringFile.setup(this, entries, params), false, "io_uring_setup");
  }

  /** io_uring_enter(2); timeoutMs bounds the GETEVENTS wait (ETIME). */
  io_uring_enter(fd: number, toSubmit: number, minComplete: number, flags = 0, timeoutMs?: number): number {
    return this.ioUring(fd, "io_uring_enter").enter(toSubmit, minComplete, flags, timeoutMs);
  }

  /** io_uring_register(2). */
  io_uring_register(fd: number, opcode: number, arg: unknown, nrArgs: number): number {
    return this.ioUring(fd, "io_uring_register").register(opcode, arg, nrArgs);
  }

  private ioUring(fd: number, syscall: string): IoUringFile {
    const file = this.file(fd, syscall);
    if (!(file instanceof IoUringFile)) throw new DmaBufError("EOPNOTSUPP", syscall, `fd ${fd} is a ${file.kind} file, not an io_uring`);
    return file;
  }

  /** memfd_create(2): a new memfd fd (MFD_CLOEXEC, MFD_ALLOW_SEALING). */
  memfd_create(name: string, flags = 0): number {
    stringArg(name, "memfd_create", "name");
    flagsArg(flags, "memfd_create");
    return this.installNew(() => new MemfdFile(this.lab.memfd(name, flags), O_RDWR), (flags & MFD_CLOEXEC) !== 0, "memfd_create");
  }

  /** ftruncate(2): a memfd's size; other files EINVAL. */
  ftruncate(fd: number, size: number): void {
    const file = this.file(fd, "ftruncate");
    if (!(file instanceof MemfdFile)) throw new DmaBufError("EINVAL", "ftruncate", `fd ${fd} is a ${file.kind} file, not a memfd`);
    intArg(size, "ftruncate", "size");
    file.truncate(size);
  }

  close(fd: number): void {
    const file = this.file(fd, "close");
    this.table.delete(fd);
    file.put();
  }

  /** The lowest free fd for the same open file description (close-on-exec clear). */
  dup(fd: number): number {
    const file = this.file(fd, "dup");
    return this.installNew(() => file.get(), false, "dup");
  }

  fcntl(fd: number, cmd: number, arg = 0): number {
    const entry = this.table.get(fd);
    if (entry === undefined) throw new DmaBufError("EBADF", "fcntl", `fd ${describe(fd)} is not open`);
    if (cmd === F_SETFD || cmd === F_SETFL || cmd === F_ADD_SEALS) flagsArg(arg, "fcntl", "arg");
    switch (cmd) {
      case F_GETFD: return entry.cloexec ? FD_CLOEXEC : 0;
      case F_SETFD: entry.cloexec = (arg & FD_CLOEXEC) !== 0; return 0;
      case F_GETFL: return entry.file.flags;
      case F_SETFL: entry.file.flags = (entry.file.flags & ~O_NONBLOCK) | (arg & O_NONBLOCK); return 0;
      case F_ADD_SEALS:
      case F_GET_SEALS: {
        if (!(entry.file instanceof MemfdFile)) throw new DmaBufError("EINVAL", "fcntl", `fd ${fd}: only a memfd has seals`);
        if (cmd === F_GET_SEALS) return entry.file.seals;
        entry.file.addSeals(arg);
        return 0;
      }
      default: throw new DmaBufError("EINVAL", "fcntl", `command ${describe(cmd)} is not F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_ADD_SEALS or F_GET_SEALS`);
    }
  }

  // ---- file operations ---------------------------------------------------------

  ioctl(fd: number, request: number, arg?: unknown): number {
    const file = this.file(fd, "ioctl");
    return file.ioctl(this, ioctlRequest(request), arg);
  }

  /** ioctl's async twin: a wait (DMA_BUF_IOCTL_SYNC START) is a Promise, never a blocked thread. */
  async ioctlAsync(fd: number, request: number, arg?: unknown): Promise<number> {
    const file = this.file(fd, "ioctl");
    return file.ioctlAsync(this, ioctlRequest(request), arg);
  }

  lseek(fd: number, offset: number, whence: number): number {
    const file = this.file(fd, "lseek");
    intArg(offset, "lseek", "offset", { min: -Number.MAX_SAFE_INTEGER });
    intArg(whence, "lseek", "whence");
    return file.llseek(offset, whence);
  }

  /**
   * read(2) at the file position; readv with several buffers; pread/pwrite
   * at a given one. io.timeoutMs: ETIMEDOUT when the implicit fences take
   * longer. The Async twins never block (a position of undefined uses the
   * file position).
   */
  read(fd: number, buf: Uint8Array, io?: IoOptions): number {
    return this.rwFile(fd, "read").rw("read", [buf], undefined, io);
  }

  write(fd: number, buf: Uint8Array, io?: IoOptions): number {
    return this.rwFile(fd, "write").rw("write", [buf], undefined, io);
  }

  pread(fd: number, buf: Uint8Array, pos: number, io?: IoOptions): number {
    const file = this.rwFile(fd, "pread");
    return file.rw("pread", [buf], positionArg(pos, "pread"), io);
  }

  pwrite(fd: number, buf: Uint8Array, pos: number, io?: IoOptions): number {
    const file = this.rwFile(fd, "pwrite");
    return file.rw("pwrite", [buf], positionArg(pos, "pwrite"), io);
  }

  readv(fd: number, iov: Uint8Array[], io?: IoOptions): number {
    return this.rwFile(fd, "readv").rw("readv", iov, undefined, io);
  }

  writev(fd: number, iov: Uint8Array[], io?: IoOptions): number {
    return this.rwFile(fd, "writev").rw("writev", iov, undefined, io);
  }

  async readAsync(fd: number, buf: Uint8Array, pos?: number, io?: IoOptions): Promise<number> {
    return this.rwFile(fd, "read").rwAsync("read", [buf], pos, io);
  }

  async writeAsync(fd: number, buf: Uint8Array, pos?: number, io?: IoOptions): Promise<number> {
    return this.rwFile(fd, "write").rwAsync("write", [buf], pos, io);
  }

  async readvAsync(fd: number, iov: Uint8Array[], pos?: number, io?: IoOptions): Promise<number> {
    return this.rwFile(fd, "readv").rwAsync("readv", iov, pos, io);
  }

  async writevAsync(fd: number, iov: Uint8Array[], pos?: number, io?: IoOptions): Promise<number> {
    return this.rwFile(fd, "writev").rwAsync("writev", iov, pos, io);
  }

  /**
   * copy_file_range(2) between regular files, and between a regular file
   * and a dma-buf either way (src/uapi/copy_file_range.ts): an offset of
   * null is the file position (advanced), a number leaves it alone.
   */
  copy_file_range(fdIn: number, offIn: number | null, fdOut: number, offOut: number | null, len: number, flags = 0): number {
    const fileIn = this.file(fdIn, "copy_file_range");
    const fileOut = this.file(fdOut, "copy_file_range");
    return copyFileRange(this.lab, { fdIn, fileIn, offIn, fdOut, fileOut, offOut, len, flags });
  }

  /** vfs_read / vfs_write's first check: the file is open for that direction (FMODE_READ, FMODE_WRITE), else EBADF. */
  private rwFile(fd: number, syscall: RwSyscall): OpenFile {
    const file = this.file(fd, syscall);
    checkRwAccess(file, fd, isWrite(syscall), syscall);
    return file;
  }

  /** mmap(2): do_mmap's checks (see the contract above), then the file's mmap. */
  mmap(fd: number, offset: number, length: number, prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED): DmaBufMapping {
    const file = this.file(fd, "mmap");
    if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE)) !== 0) {
      throw new DmaBufError("EINVAL", "mmap", `prot 0x${Number(prot).toString(16)} has bits other than PROT_READ|PROT_WRITE`);
    }
    const type = flags & (MAP_SHARED | MAP_PRIVATE);
    if (!Number.isInteger(flags) || (type !== MAP_SHARED && type !== MAP_PRIVATE)) {
      throw new DmaBufError("EINVAL", "mmap", `flags 0x${Number(flags).toString(16)} is neither MAP_SHARED nor MAP_PRIVATE`);
    }
    if (!file.canRead) throw new DmaBufError("EACCES", "mmap", `fd ${fd} is not open for reading (access mode ${file.accessModeName})`);
    if (type === MAP_SHARED && (prot & PROT_WRITE) !== 0 && !file.canWrite) {
      throw new DmaBufError("EACCES", "mmap", `PROT_WRITE with MAP_SHARED needs fd ${fd} open for writing (access mode ${file.accessModeName})`);
    }
    if (type === MAP_PRIVATE) throw new DmaBufError("EINVAL", "mmap", "MAP_PRIVATE (a copy-on-write mapping) is not modelled; map MAP_SHARED");
    const mapping = file.mmap(offset, length, prot);
    this.mappings.add(mapping);
    return mapping;
  }

  munmap(mapping: DmaBufMapping): void {
    if (!(mapping instanceof DmaBufMapping)) throw new DmaBufError("EINVAL", "munmap", `${describe(mapping)} is not a mapping mmap() returned`);
    mapping.unmap();
    this.mappings.delete(mapping);
  }

  /**
   * poll(2): sets each entry's revents and returns how many are ready.
   * timeoutMs 0 (the default) is a snapshot; a positive one waits until an
   * entry is ready (re-checked at every fence signal of the lab) or the time
   * is up (0 returned); a negative one waits without limit.
   */
  poll(fds: PollFd[], timeoutMs = 0): number {
    const { ready, deadline } = this.pollStart(fds, timeoutMs);
    if (ready > 0 || timeoutMs === 0) return ready;
    requireBlocking("poll", "pollAsync()");
    this.lab.sync.blockUntilSignal(() => this.pollScan(fds) > 0, deadline, "poll");
    return this.pollScan(fds);
  }

  async pollAsync(fds: PollFd[], timeoutMs = 0): Promise<number> {
    const { ready, deadline } = this.pollStart(fds, timeoutMs);
    if (ready > 0 || timeoutMs === 0) return ready;
    await keepingAlive(this.lab.sync.untilSignalAsync(() => this.pollScan(fds) > 0, deadline));
    return this.pollScan(fds);
  }

  private pollStart(fds: PollFd[], timeoutMs: number): { ready: number; deadline: number } {
    if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs)) {
      throw new DmaBufError("EINVAL", "poll", `timeout ${describe(timeoutMs)} is not a number of ms`);
    }
    // Every entry is checked (its revents writable) before any is set.
    if (!Array.isArray(fds)) throw new DmaBufError("EFAULT", "poll", `fds ${describe(fds)} is not an array of {fd, events}`);
    for (const p of fds) {
      writableArg(p, "poll", ["revents"]);
      flagsArg(p.events, "poll", "events");
    }
    return { ready: this.pollScan(fds), deadline: timeoutMs < 0 ? Infinity : nowMs() + timeoutMs };
  }

  private pollScan(fds: PollFd[]): number {
    let ready = 0;
    for (const p of fds) {
      const file = this.table.get(p.fd)?.file;
      p.revents = file === undefined ? POLLNVAL : file.poll() & p.events;
      if (p.revents !== 0) ready++;
    }
    return ready;
  }

  /** The text of /proc/self/fdinfo/<fd>: pos, flags (octal, O_CLOEXEC included), then the file's own lines. */
  fdinfo(fd: number): string {
    const entry = this.table.get(fd);
    if (entry === undefined) throw new DmaBufError("EBADF", "fdinfo", `fd ${describe(fd)} is not open`);
    const flags = entry.file.flags | (entry.cloexec ? O_CLOEXEC : 0);
    return `pos:\t${entry.file.pos}\nflags:\t0${flags.toString(8)}\n${entry.file.fdinfo()}`;
  }

  // ---- passing fds between threads -----------------------------------------------

  /** A token for fd that another thread's Process.importFd() installs (see THE TOKEN RULE above). */
  exportFd(fd: number): FdToken {
    return this.file(fd, "exportFd").exportToken();
  }

  /**
   * Installs a new fd (close-on-exec clear) for the object of a token from
   * another thread, checked before it is trusted: an fd token (exportFd: a
   * record of its kind and generation must start at its offset, record.ts;
   * a dma-buf that is not is EBADF, anything else EINVAL, nothing touched; a
   * new reference is taken), or a share() token of a dma-buf, sync_file or
   * sw_sync timeline (its flight record checked the same way; the reference
   * it carries is adopted, once: src/sync/flight.ts).
   */
  importFd(token: FdToken | ShareToken<"dma-buf" | "sync_file" | "sw_sync">): number {
    if (typeof token === "object" && token !== null && "flight" in token) {
      const kind = token.kind;
      if (!tokenKinds.includes(kind)) {
        throw new DmaBufError("EINVAL", "importFd", `token kind '${String(kind)}' is not a dma-buf, sync_file or sw_sync`);
      }
      // The fd is found before the file adopts the reference: EMFILE leaves the token importable.
      return receiveFlight(this.lab.sync, token, kind, "importFd", (t) => this.installNew(() => this.fileOf(t, null), false, "importFd"));
    }
    const checked = checkToken(token);
    return this.installNew(() => this.fileOf(checked, checked.generation), false, "importFd");
  }

  /**
   * The file for a token's object: with a generation (an fd token), a new
   * reference on the record of that generation; with null (a share() token
   * already claimed), adopting the reference the token carried.
   */
  private fileOf(token: { kind: string; offset: number; flags?: number; name?: string }, generation: number | null): OpenFile {
    const { sync } = this.lab;
    const { kind, offset } = token;
    const adopt = generation === null;
    const flags = typeof token.flags === "number" ? token.flags & (O_ACCMODE | O_NONBLOCK) : O_RDWR;
    switch (kind) {
      case "dma-buf": {
        const buf = adopt ? DmaBufRecord.adopt(sync, offset) : DmaBufRecord.attach(sync, offset, generation);
        try {
          return new DmaBufFile(buf, flags);
        } finally {
          buf.put();
        }
      }
      case "sync_file": {
        const fence = adopt ? sync.view(offset, true) : sync.fenceAt(offset, generation);
        try {
          return new SyncFileFile(new SyncFile(sync, fence, typeof token.name === "string" ? token.name : ""), flags);
        } finally {
          fence.put();
        }
      }
      default:
        return new SwSyncFile(adopt ? SwSyncTimeline.adopt(sync, offset) : SwSyncTimeline.dup(sync, offset, generation), flags);
    }
  }

  // ---- teardown --------------------------------------------------------------

  /** Unmaps every mapping made here and closes every fd. */
  closeAll(): void {
    for (const m of this.mappings) if (m.mapped) m.unmap();
    this.mappings.clear();
    for (const fd of this.fds) this.close(fd);
  }

  [Symbol.dispose](): void {
    this.closeAll();
  }
}

/** An ioctl request number: a 32-bit unsigned integer, else ENOTTY (no driver has that request). */
function ioctlRequest(request: unknown): number {
  return intArg(request, "ioctl", "request", { max: 0xffffffff }, "ENOTTY");
}

const tokenKinds: readonly unknown[] = ["dma-buf", "sync_file", "sw_sync"];

/** A token's fields, read once and checked for shape (EINVAL for anything that is not an FdToken). */
function checkToken(token: unknown): FdToken {
  const bad = (what: string): never => { throw new DmaBufError("EINVAL", "importFd", `the token ${what}`); };
  if (typeof token !== "object" || token === null) return bad(`is ${token === null ? "null" : typeof token}, not an FdToken`);
  const { kind, offset, generation, flags, name } = token as Record<string, unknown>;
  if (!tokenKinds.includes(kind)) bad(`kind ${describe(kind)} is not a dma-buf, sync_file or sw_sync`);
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) bad("has no record offset");
  if (typeof generation !== "number" || !Number.isSafeInteger(generation) || generation < 0) bad("has no record generation");
  if (typeof flags !== "number" || !Number.isInteger(flags)) bad("has no flags");
  if (name !== undefined && typeof name !== "string") bad("has a name that is not a string");
  return { kind, offset, generation, flags, name } as FdToken;
}

/*
 * The file operations of a dma-buf fd (drivers/dma-buf/dma-buf.c, dma_buf_fops).
 *
 * Contract (reference section 2; every failure changes nothing):
 *   DMA_BUF_IOCTL_SYNC {flags}  a bit outside RW|END, or no READ/WRITE bit:
 *                    EINVAL. START waits for the implicit fences: READ for
 *                    usage WRITE, WRITE or RW for usage READ; O_NONBLOCK
 *                    gives EAGAIN instead of waiting, the lab's `timeoutMs`
 *                    ETIMEDOUT after that long; then cpuAccessHook(). END
 *                    calls cpuAccessHook() and does not wait. Pairing is not
 *                    enforced. ioctlAsync waits with a Promise instead.
 *   DMA_BUF_SET_NAME "name"  at most 31 bytes, else EINVAL; not a string: EFAULT.
 *   DMA_BUF_IOCTL_EXPORT_SYNC_FILE {flags, fd}  flags a non-zero subset of RW,
 *                    else EINVAL; fd <- a new sync_file (close-on-exec) with
 *                    a snapshot of what a reader (READ) or a writer (WRITE,
 *                    RW) would wait for: none a signalled stub, one that
 *                    fence, several a fence array (dma_resv_get_singleton).
 *   DMA_BUF_IOCTL_IMPORT_SYNC_FILE {flags, fd}  the same flag rule; fd not an
 *                    open sync_file: EINVAL. Each leaf of the sync_file's
 *                    fence is added on its own, usage WRITE when WRITE is
 *                    set, else READ; the slots are reserved first (ENOMEM
 *                    there leaves the reservation object as it was).
 *   DMA_BUF_IOCTL_RW_FILE {flags, fd, file_offset, buf_offset, buf_len}
 *                    (Tao Wang's RFC) fills the buffer from a regular file
 *                    (READ) or saves it to one (WRITE), DIRECT optional;
 *                    see rwFile() below and src/uapi/dma_buf_rw_file.ts.
 *   other ioctls     ENOTTY
 *   read, write, pread, pwrite, readv, writev  the read/write path
 *                    (src/dmabuf/rw.ts) at the file position (advanced by
 *                    what moved) or at the given one, O_NONBLOCK giving
 *                    EAGAIN instead of waiting for the implicit fences.
 *   llseek           SEEK_SET, SEEK_CUR, SEEK_END (the position now matters
 *                    for read and write); a negative result or another whence
 *                    EINVAL. Upstream, without a read/write path, only offset 0
 *                    was accepted; every upstream answer is the same here.
 *   mmap             in a non-coherent lab, a cached buffer maps the CPU's
 *                    view (its cache), which SYNC START/END maintain.
 *   mmap             offset page aligned, length > 0, and the page-rounded
 *                    range within the buffer's pages, else EINVAL.
 *   poll             POLLIN when no pending KERNEL/WRITE fence, POLLOUT when
 *                    no pending KERNEL/WRITE/READ fence.
 *   fdinfo           size, count (DmaBufRecord.fileCount: fds and mappings in every
 *                    thread), exp_name, and name when set.
 * File references: each get() is one more DmaBufRecord.openFile(), each put() one
 * closeFile(), so fdinfo's count follows dup, close, mmap and fd passing as
 * the kernel's file_count does.
 */
import { DmaBufError } from "../errno.js";
import { describe, intArg, objectArg, timeoutArg, writableArg } from "../args.js";
import type { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { PAGE_SIZE } from "../memory/layout.js";
import { DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, usageRw } from "../sync/resv.js";
import { SyncFile } from "../sync/sync_file.js";
import { unwrap } from "../sync/fence_unwrap.js";
import { checkRwAccess, OpenFile, type FdToken, type IoOptions, type Caller } from "./file.js";
import { checkDirectAlign, moveFileDmaBuf } from "./dma_buf_rw_file.js";
import { RegularFile } from "./regular_file.js";
import { CpuCache } from "../dmabuf/coherence.js";
import { rwAsync, rwSync, type RwSyscall } from "../dmabuf/rw.js";
import { DmaBufMapping } from "./mapping.js";
import { SyncFileFile, installSyncFile } from "./sync_file_file.js";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME,
  DMA_BUF_SET_NAME_A, DMA_BUF_IOCTL_RW_FILE, DMA_BUF_RW_FLAGS_DIRECT, DMA_BUF_RW_FLAGS_OP_MASK, DMA_BUF_RW_FLAGS_READ, DMA_BUF_RW_FLAGS_WRITE, DMA_BUF_SYNC_END, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_VALID_FLAGS_MASK, DMA_BUF_SYNC_WRITE,
  POLLIN, POLLOUT, SEEK_CUR, SEEK_END, SEEK_SET,
  type dma_buf_export_sync_file, type dma_buf_import_sync_file, type dma_buf_rw_file, type dma_buf_sync,
} from "./uapi.js";

/**
 * THE COHERENCE HOOK: the exporter's begin_cpu_access (START: invalidate
 * toward the CPU) and end_cpu_access (END: clean toward devices), through
 * the coherence model (src/dmabuf/coherence.ts). Coherent labs and
 * uncached buffers have no CPU cache, and nothing to do.
 */
export function cpuAccessHook(buf: DmaBufRecord, flags: number): void {
  // The sanitizer's bracket (src/sanitize): START opens this thread's CPU access, END records it.
  const { san } = buf.sync;
  if (san.on) {
    if ((flags & DMA_BUF_SYNC_END) !== 0) san.cpuEnd(buf.offset, buf.generation);
    else san.cpuBegin(buf.offset, buf.generation, buf.size, (flags & DMA_BUF_SYNC_WRITE) !== 0);
  }
  const cache = CpuCache.of(buf);
  if (cache === null) return;
  if ((flags & DMA_BUF_SYNC_END) !== 0) cache.cleanRange();
  else cache.invalidate();
}

interface SyncRequest {
  flags: number;
  end: boolean;
  usage: ReturnType<typeof usageRw>;
  timeoutMs: number;
}

export class DmaBufFile extends OpenFile {
  readonly kind = "dma-buf";
  /** One owned view per file reference (each from openFile()). */
  private readonly views: DmaBufRecord[];

  /** A new file over `buf` (borrowed; the file opens its own reference). */
  constructor(buf: DmaBufRecord, flags: number) {
    super(flags);
    this.views = [buf.openFile()];
  }

  /** The buffer, borrowed (valid while the file is open). */
  get buf(): DmaBufRecord {
    const v = this.views[0];
    if (v === undefined) throw new DmaBufError("EBADF", "dma_buf", "this dma-buf file is released");
    return v;
  }

  protected override acquire(): void {
    this.views.push(this.buf.openFile());
  }

  protected drop(_last: boolean): void {
    this.views.pop()!.closeFile();
  }

  override ioctl(proc: Caller, request: number, arg: unknown): number {
    switch (request) {
      case DMA_BUF_IOCTL_SYNC: {
        const req = this.syncRequest(arg);
        if (!req.end) this.waitSync(req);
        cpuAccessHook(this.buf, req.flags);
        return 0;
      }
      case DMA_BUF_SET_NAME:
      case DMA_BUF_SET_NAME_A:
        if (typeof arg !== "string") throw new DmaBufError("EFAULT", "DMA_BUF_SET_NAME", "the argument must be the name, a string");
        this.buf.setName(arg);
        return 0;
      case DMA_BUF_IOCTL_EXPORT_SYNC_FILE:
        return this.exportSyncFile(proc, arg as dma_buf_export_sync_file);
      case DMA_BUF_IOCTL_IMPORT_SYNC_FILE:
        return this.importSyncFile(proc, arg as dma_buf_import_sync_file);
      case DMA_BUF_IOCTL_RW_FILE:
        return this.rwFile(proc, arg);
      default:
        return super.ioctl(proc, request, arg);
    }
  }

  override async ioctlAsync(proc: Caller, request: number, arg: unknown): Promise<number> {
    if (request !== DMA_BUF_IOCTL_SYNC) return super.ioctlAsync(proc, request, arg);
    const req = this.syncRequest(arg);
    if (!req.end) {
      if (this.nonblock) this.waitSync(req);
      else if ((await this.buf.resv.waitAsync(req.usage, req.timeoutMs)) === 0) throw timedOut(req);
    }
    cpuAccessHook(this.buf, req.flags);
    return 0;
  }

  private syncRequest(arg: unknown): SyncRequest {
    const { flags, timeoutMs: timeout } = objectArg<Partial<dma_buf_sync>>(arg, "DMA_BUF_IOCTL_SYNC");
    if (typeof flags !== "number" || !Number.isInteger(flags) || flags < 0) {
      throw new DmaBufError("EFAULT", "DMA_BUF_IOCTL_SYNC", `flags ${describe(flags)} is not a __u64`);
    }
    if ((flags & ~DMA_BUF_SYNC_VALID_FLAGS_MASK) !== 0 || flags > DMA_BUF_SYNC_VALID_FLAGS_MASK) {
      throw new DmaBufError("EINVAL", "DMA_BUF_IOCTL_SYNC", `flags 0x${flags.toString(16)} has bits outside RW|END`);
    }
    if ((flags & DMA_BUF_SYNC_RW) === 0) {
      throw new DmaBufError("EINVAL", "DMA_BUF_IOCTL_SYNC", `flags 0x${flags.toString(16)} has neither READ nor WRITE`);
    }
    // undefined or null: no limit, as for read and write.
    const timeoutMs = timeoutArg(timeout, "DMA_BUF_IOCTL_SYNC");
    return { flags, end: (flags & DMA_BUF_SYNC_END) !== 0, usage: usageRw((flags & DMA_BUF_SYNC_WRITE) !== 0), timeoutMs };
  }

  private waitSync(req: SyncRequest): void {
    const resv = this.buf.resv;
    if (this.nonblock) {
      if (!resv.testSignaled(req.usage)) {
        throw new DmaBufError("EAGAIN", "DMA_BUF_IOCTL_SYNC", `O_NONBLOCK and a pending ${req.usage === DMA_RESV_USAGE_READ ? "reader or writer" : "writer"} fence`);
      }
      return;
    }
    if (resv.wait(req.usage, req.timeoutMs) === 0) throw timedOut(req);
  }

  private exportSyncFile(proc: Caller, arg: dma_buf_export_sync_file): number {
    writableArg(arg, "DMA_BUF_IOCTL_EXPORT_SYNC_FILE", ["fd"]);
    const flags = rwFlags(arg, "DMA_BUF_IOCTL_EXPORT_SYNC_FILE");
    const { sync } = this.buf;
    arg.fd = installSyncFile(proc, () => {
      const fence = this.buf.resv.getSingleton(usageRw((flags & DMA_BUF_SYNC_WRITE) !== 0)) ?? sync.stub();
      try {
        return new SyncFile(sync, fence);
      } finally {
        fence.put();
      }
    });
    return 0;
  }

  private importSyncFile(proc: Caller, arg: dma_buf_import_sync_file): number {
    const flags = rwFlags(arg, "DMA_BUF_IOCTL_IMPORT_SYNC_FILE");
    const file = proc.lookup(arg.fd);
    if (!(file instanceof SyncFileFile)) {
      throw new DmaBufError("EINVAL", "DMA_BUF_IOCTL_IMPORT_SYNC_FILE", `fd ${describe(arg.fd)} is not a sync_file`);
    }
    const leaves = unwrap(file.syncFile.fence);
    if (leaves.length === 0) return 0;
    const usage = (flags & DMA_BUF_SYNC_WRITE) !== 0 ? DMA_RESV_USAGE_WRITE : DMA_RESV_USAGE_READ;
    const resv = this.buf.resv;
    resv.withLock(() => {
      resv.reserveFences(leaves.length);
      for (const f of leaves) resv.addFence(f, usage);
    });
    return 0;
  }


  /**
   * DMA_BUF_IOCTL_RW_FILE (Tao Wang's RFC): fills the buffer from a regular
   * file (READ) or saves it to one (WRITE), buffered or DIRECT, by
   * dma_buf_rw_file.ts. Returns the bytes moved (fewer when the file ends
   * first). Errors: the argument not an object EFAULT; bits outside
   * OP_MASK|DIRECT, or not exactly one of READ and WRITE, EINVAL; fd not
   * open EBADF, not a regular file EINVAL, not open for the direction
   * EBADF; offsets or length not integers >= 0, or [buf_offset, +buf_len)
   * not inside the buffer, EINVAL; DIRECT misaligned EINVAL.
   */
  private rwFile(proc: Caller, arg: unknown): number {
    const syscall = "DMA_BUF_IOCTL_RW_FILE";
    const a = objectArg<Partial<dma_buf_rw_file>>(arg, syscall);
    // A __u32; READ | DIRECT in JavaScript is a negative int32, the same bits.
    const flags = intArg(a.flags, syscall, "flags", { min: -(2 ** 31), max: 0xffffffff }) >>> 0;
    const op = flags & DMA_BUF_RW_FLAGS_OP_MASK;
    if ((flags & ~(DMA_BUF_RW_FLAGS_OP_MASK | DMA_BUF_RW_FLAGS_DIRECT)) !== 0 || (op !== DMA_BUF_RW_FLAGS_READ && op !== DMA_BUF_RW_FLAGS_WRITE)) {
      throw new DmaBufError("EINVAL", syscall, `flags 0x${flags.toString(16)} are not READ or WRITE, optionally with DIRECT`);
    }
    const file = proc.lookup(a.fd);
    if (file === undefined) throw new DmaBufError("EBADF", syscall, `fd ${describe(a.fd)} is not open`);
    if (!(file instanceof RegularFile)) throw new DmaBufError("EINVAL", syscall, `fd ${a.fd} is a ${file.kind} file, not a regular file`);
    const toBuffer = op === DMA_BUF_RW_FLAGS_READ;
    checkRwAccess(file, a.fd as number, !toBuffer, syscall);
    const filePos = intArg(a.file_offset, syscall, "file_offset");
    const bufPos = intArg(a.buf_offset, syscall, "buf_offset");
    const len = intArg(a.buf_len, syscall, "buf_len");
    const size = this.buf.size;
    if (bufPos > size || len > size - bufPos) throw new DmaBufError("EINVAL", syscall, `[${bufPos}, +${len}) is not inside the ${size}-byte dma-buf`);
    if (filePos + len > Number.MAX_SAFE_INTEGER) throw new DmaBufError("EINVAL", syscall, `file_offset ${filePos} + buf_len ${len} passes the largest file offset`);
    const direct = (flags & DMA_BUF_RW_FLAGS_DIRECT) !== 0;
    if (direct) checkDirectAlign(filePos, bufPos, len, syscall);
    return moveFileDmaBuf(proc.lab, {
      file, buf: this.buf, toBuffer, filePos, bufPos, bytes: len, direct, nonblock: this.nonblock, syscall,
    });
  }

  override llseek(offset: number, whence: number): number {
    const base = whence === SEEK_SET ? 0 : whence === SEEK_CUR ? this.pos : whence === SEEK_END ? this.buf.size : NaN;
    if (Number.isNaN(base)) throw new DmaBufError("EINVAL", "lseek", `whence ${whence} is not SEEK_SET, SEEK_CUR or SEEK_END`);
    const to = base + offset;
    if (!Number.isSafeInteger(offset) || to < 0) throw new DmaBufError("EINVAL", "lseek", `offset ${offset} from ${base} gives position ${to}`);
    this.pos = to;
    return to;
  }

  override rw(syscall: RwSyscall, iov: Uint8Array[], pos: number | undefined | null, io?: IoOptions | null): number {
    const current = pos === undefined || pos === null;
    const n = rwSync(this.buf, iov, current ? this.pos : pos, syscall, { nonblock: this.nonblock, timeoutMs: io?.timeoutMs });
    if (current) this.pos += n;
    return n;
  }

  override async rwAsync(syscall: RwSyscall, iov: Uint8Array[], pos: number | undefined | null, io?: IoOptions | null): Promise<number> {
    const current = pos === undefined || pos === null;
    const at = current ? this.pos : pos;
    const n = await rwAsync(this.buf, iov, at, syscall, { nonblock: this.nonblock, timeoutMs: io?.timeoutMs });
    if (current) this.pos = at + n;
    return n;
  }

  override mmap(offset: number, length: number, prot: number): DmaBufMapping {
    const size = this.buf.size;
    intArg(offset, "mmap", "offset");
    intArg(length, "mmap", "length");
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) {
      throw new DmaBufError("EINVAL", "mmap", `offset ${offset} is not a multiple of the page size ${PAGE_SIZE}`);
    }
    if (!Number.isSafeInteger(length) || length <= 0) throw new DmaBufError("EINVAL", "mmap", `length ${length} must be positive`);
    const len = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    if (offset + len > size) {
      throw new DmaBufError("EINVAL", "mmap", `range [${offset}, ${offset + len}) is past the buffer's ${size / PAGE_SIZE} pages`);
    }
    const views: Uint8Array[] = [];
    const memory = this.buf.sync.arena.memory.buffer;
    const cache = CpuCache.of(this.buf);
    const buf = this.buf;
    const onAccess = (at: number, n: number, write: boolean): void => {
      if (buf.sync.san.on) buf.sync.san.mmapAccess(buf.offset, buf.generation, at, n, write, buf.sync.san.now());
    };
    if (cache !== null) return new DmaBufMapping(this, offset, len, [cache.cpuView().subarray(offset, offset + len)], prot, undefined, onAccess);
    let pos = 0;
    for (const s of this.buf.segments()) {
      const from = Math.max(offset, pos);
      const to = Math.min(offset + len, pos + s.len);
      if (from < to) views.push(new Uint8Array(memory, s.addr + (from - pos), to - from));
      pos += s.len;
    }
    return new DmaBufMapping(this, offset, len, views, prot, undefined, onAccess);
  }

  override poll(): number {
    const resv = this.buf.resv;
    return (resv.testSignaled(DMA_RESV_USAGE_WRITE) ? POLLIN : 0) | (resv.testSignaled(DMA_RESV_USAGE_READ) ? POLLOUT : 0);
  }

  override fdinfo(): string {
    const buf = this.buf;
    const name = buf.name;
    return `size:\t${buf.size}\ncount:\t${buf.fileCount}\nexp_name:\t${buf.exporter}\n${name !== "" ? `name:\t${name}\n` : ""}`;
  }

  override exportToken(): FdToken {
    return { kind: "dma-buf", offset: this.buf.offset, generation: this.buf.generation, flags: this.flags };
  }
}

function timedOut(req: SyncRequest): DmaBufError {
  return new DmaBufError("ETIMEDOUT", "DMA_BUF_IOCTL_SYNC", `the implicit fences did not signal within ${req.timeoutMs} ms`);
}

/** The flag rule of EXPORT_SYNC_FILE and IMPORT_SYNC_FILE: a non-zero subset of RW. */
function rwFlags(arg: { flags?: unknown } | undefined, syscall: string): number {
  const flags = arg?.flags;
  if (typeof flags !== "number" || !Number.isInteger(flags)) throw new DmaBufError("EFAULT", syscall, `flags ${describe(flags)} is not a __u32`);
  if ((flags & ~DMA_BUF_SYNC_RW) !== 0 || flags < 0 || flags > DMA_BUF_SYNC_RW) {
    throw new DmaBufError("EINVAL", syscall, `flags 0x${flags.toString(16)} has bits outside RW`);
  }
  if (flags === 0) throw new DmaBufError("EINVAL", syscall, "flags has neither READ nor WRITE");
  return flags;
}

/*
 * The file of an io_uring instance (what io_uring_setup's fd refers to): it
 * owns the ring's block of user memory, the kernel side (IoRingKernel in
 * this thread, or the SQ thread for IORING_SETUP_SQPOLL), and the registered
 * files and buffers with a reference on each file.
 *
 * Contract (io_uring_setup(2), io_uring_enter(2), io_uring_register(2)):
 *   setup    entries 1..IORING_MAX_ENTRIES (more: EINVAL, or clamped with
 *            IORING_SETUP_CLAMP), rounded up to a power of two; the CQ has
 *            twice as many (or params.cq_entries with IORING_SETUP_CQSIZE,
 *            at least the SQ's); unknown flags EINVAL. params gets sq_entries,
 *            cq_entries, features, sq_off, cq_off and `ring` (the block's
 *            arena offset, this lab's mmap).
 *   enter    submits up to to_submit SQEs (plain mode), then with
 *            IORING_ENTER_GETEVENTS waits until min_complete CQEs are ready
 *            or timeoutMs passes (ETIME when nothing was submitted). It
 *            returns at once when nothing is in flight (the kernel would
 *            sleep until a signal). SQPOLL: SQ_WAKEUP wakes the SQ thread;
 *            to_submit is answered as submitted.
 *   register FILES (an array of fds, -1 for an empty slot; EBUSY when
 *            registered; EBADF for a bad fd; EOPNOTSUPP for a file io_uring
 *            cannot address through a slot), UNREGISTER_FILES, BUFFERS
 *            (views of user memory or {iov_base, iov_len}; EFAULT outside
 *            user memory or zero-length; EINVAL for more than UIO_MAXIOV
 *            or a buffer over 1 GiB; {0, 0} is an empty slot), UNREGISTER_BUFFERS
 *            (ENXIO when none), BUFFERS_UPDATE (slots replaced; with
 *            IORING_RSRC_F_EXTENDED_UPDATE the entries are io_uring_reg_buffer:
 *            a dma-buf and its target storage device, src/io_uring/dma_token.ts).
 *            Registration changes need the ring quiet: EBUSY while
 *            requests are in flight (the kernel quiesces instead).
 * Release (the last reference): the SQ thread stops, requests in flight are
 * waited for (bounded) and their resources released, then the ring's memory,
 * the tables and the file references go.
 */
import { DmaBufError } from "../errno.js";
import type { LabCore } from "../lab.js";
import { RecordType } from "../memory/record.js";
import { nowMs } from "../memory/futex.js";
import { shippedWorker } from "../thread/host.js";
import { spawnWorker, type SpawnedWorker } from "../thread/spawn.js";
import {
  CQ_TAIL, CTX_BUFS, CTX_DYING, CTX_FILES, CTX_INFLIGHT, CTX_NR_BUFS, CTX_NR_FILES, CTX_SQ_WAKE, CTX_STATE, IORING_ENTER_GETEVENTS,
  IORING_ENTER_SQ_WAIT, IORING_ENTER_SQ_WAKEUP, IORING_ENTER_SUPPORTED, IORING_FEAT_NODROP, IORING_FEAT_RW_CUR_POS, IORING_FEAT_SINGLE_MMAP,
  IORING_MAX_BUF_SIZE, IORING_MAX_CQ_ENTRIES, IORING_MAX_ENTRIES, IORING_MAX_FIXED_FILES, IORING_REGISTER_BUFFERS, IORING_REGISTER_FILES,
  IORING_SETUP_CLAMP, IORING_SETUP_CQSIZE, IORING_SETUP_SQPOLL, IORING_SETUP_SUPPORTED, IORING_SQ_THREAD_IDLE_MS, IORING_UNREGISTER_BUFFERS,
  IORING_UNREGISTER_FILES, IORING_REGISTER_BUFFERS_UPDATE, IORING_RSRC_F_EXTENDED_UPDATE, ringLayout, sqRingOffsets, UIO_MAXIOV,
  type IoUringParams, type IoUringRegBuffer, type IoUringRsrcUpdate2,
} from "../io_uring/io_uring.js";
import { IoRingKernel } from "../io_uring/kernel.js";
import { IoRing } from "../io_uring/ring.js";
import { BUF_ADDR, BUF_DMABUF, BUF_KIND, BUF_SLOT, BUF_USER, FILE_SLOT, writeBufSlot, writeFileSlot, type RegisteredBuffer } from "../io_uring/table.js";
import { dmaTokenCreate, dmaTokenDestroy } from "../io_uring/dma_token.js";
import { DmaBufFile } from "./dma_buf_file.js";
import { BlockDevFile } from "./blockdev_file.js";
import { isIoTargetFile } from "../io_uring/target.js";
import { OpenFile, checkRwAccess, type Caller } from "./file.js";

/** How long release waits for each request still on a device. */
const RELEASE_WAIT_MS = 5000;
const SLICE_MS = 50;

export interface IoUringBuffer { iov_base: number; iov_len: number }

function roundPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}

export class IoUringFile extends OpenFile {
  readonly kind = "io_uring" as const;
  readonly ring: IoRing;
  readonly sqpoll: boolean;
  /** Plain mode: the kernel side runs here. */
  private readonly kernel: IoRingKernel | undefined;
  private sqThread: SpawnedWorker | undefined;
  /** Resolves once the SQ thread runs (at once in plain mode). */
  readonly started: Promise<void>;
  private files: (OpenFile | null)[] = [];
  private fileTable = 0;
  private bufTable = 0;
  private nrBufs = 0;

  private constructor(private readonly proc: Caller, private readonly block: Uint8Array, sq: number, cq: number, flags: number, idleMs: number) {
    super(2);
    const { lab } = proc;
    this.ring = IoRing.init(lab.arena, block.byteOffset, sq, cq, flags, idleMs);
    this.sqpoll = (flags & IORING_SETUP_SQPOLL) !== 0;
    if (this.sqpoll) {
      this.started = spawnWorker(shippedWorker("io-sq"), { handle: lab.share(), ring: this.ring.offset }, `io_uring-sq`).then((w) => {
        this.sqThread = w;
        w.unref();
        void w.exited.then(() => this.freeAll());
      });
      this.started.catch(() => {});
    } else {
      this.kernel = new IoRingKernel(lab, this.ring, {
        lookup: (fd) => {
          const f = proc.lookup(fd);
          if (f === undefined) return undefined;
          if (isIoTargetFile(f)) return { target: f.ioTarget(), file: f };
          return {
            rw: (iov, pos, write) => {
              const syscall = write ? (pos === undefined ? "writev" : "pwritev") : (pos === undefined ? "readv" : "preadv");
              checkRwAccess(f, fd, write, syscall);
              return f.rw(syscall, iov, pos);
            },
          };
        },
      });
      this.started = Promise.resolve();
    }
  }

  /** io_uring_setup: validates everything, then lays out the ring. */
  static setup(proc: Caller, entries: number, params: IoUringParams): IoUringFile {
    const syscall = "io_uring_setup";
    const flags = params.flags ?? 0;
    if (!Number.isInteger(flags) || (flags & ~IORING_SETUP_SUPPORTED) !== 0) throw new DmaBufError("EINVAL", syscall, `flags 0x${flags.toString(16)} include unsupported bits`);
    if (!Number.isInteger(entries) || entries < 1) throw new DmaBufError("EINVAL", syscall, `entries ${entries} must be a positive integer`);
    if (entries > IORING_MAX_ENTRIES) {
      if ((flags & IORING_SETUP_CLAMP) === 0) throw new DmaBufError("EINVAL", syscall, `entries ${entries} exceed IORING_MAX_ENTRIES (${IORING_MAX_ENTRIES})`);
      entries = IORING_MAX_ENTRIES;
    }
    const sq = roundPow2(entries);
    let cq = 2 * sq;
    if ((flags & IORING_SETUP_CQSIZE) !== 0) {
      const want = params.cq_entries ?? 0;
      if (!Number.isInteger(want) || want < 1) throw new DmaBufError("EINVAL", syscall, `cq_entries ${want} must be a positive integer`);
      if (want > IORING_MAX_CQ_ENTRIES && (flags & IORING_SETUP_CLAMP) === 0) throw new DmaBufError("EINVAL", syscall, `cq_entries ${want} exceed ${IORING_MAX_CQ_ENTRIES}`);
      cq = roundPow2(Math.min(want, IORING_MAX_CQ_ENTRIES));
      if (cq < sq) throw new DmaBufError("EINVAL", syscall, `cq_entries ${want} are fewer than the ${sq} SQ entries`);
    }
    const idle = params.sq_thread_idle ?? IORING_SQ_THREAD_IDLE_MS;
    if (!Number.isInteger(idle) || idle < 0 || idle > 60_000) throw new DmaBufError("EINVAL", syscall, `sq_thread_idle ${idle} ms is out of range`);
    const l = ringLayout(sq, cq);
    const block = proc.lab.alloc(l.bytes, { align: 64 });
    const file = new IoUringFile(proc, block, sq, cq, flags, idle);
    params.sq_entries = sq;
    params.cq_entries = cq;
    params.features = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_RW_CUR_POS;
    params.ring = block.byteOffset;
    params.sq_off = { ...sqRingOffsets };
    params.cq_off = { head: 192, tail: CQ_TAIL, ring_mask: 320, ring_entries: 324, overflow: 328, cqes: l.cqes, flags: 332 };
    return file;
  }

  private get lab(): LabCore {
    return this.proc.lab;
  }

  // ---- io_uring_enter --------------------------------------------------------

  enter(toSubmit: number, minComplete: number, flags: number, timeoutMs = Infinity): number {
    const syscall = "io_uring_enter";
    if (!Number.isInteger(flags) || (flags & ~IORING_ENTER_SUPPORTED) !== 0) throw new DmaBufError("EINVAL", syscall, `flags 0x${flags.toString(16)} include unsupported bits`);
    if (!Number.isInteger(toSubmit) || toSubmit < 0 || !Number.isInteger(minComplete) || minComplete < 0) {
      throw new DmaBufError("EINVAL", syscall, `to_submit ${toSubmit} and min_complete ${minComplete} must be non-negative integers`);
    }
    if (!(timeoutMs >= 0)) throw new DmaBufError("EINVAL", syscall, `timeout ${timeoutMs} ms is negative`);
    const { ring } = this;
    const deadline = nowMs() + timeoutMs;
    if (this.kernel === undefined) {
      if ((flags & IORING_ENTER_SQ_WAKEUP) !== 0) {
        Atomics.add(ring.i32, ring.index(CTX_SQ_WAKE), 1);
        Atomics.notify(ring.i32, ring.index(CTX_SQ_WAKE));
      }
      if ((flags & IORING_ENTER_SQ_WAIT) !== 0) {
        while (ring.sqPending() >= ring.sqEntries && nowMs() < deadline) Atomics.wait(ring.i32, ring.index(CQ_TAIL), ring.load(CQ_TAIL), 1);
      }
      if ((flags & IORING_ENTER_GETEVENTS) !== 0) {
        for (;;) {
          if (ring.cqReady() >= minComplete) break;
          // Nothing left to consume and nothing in flight: no CQE can come
          // (SQ_HEAD first: the SQ thread counts requests before it releases their slots).
          if (ring.sqPending() === 0 && ring.load(CTX_INFLIGHT) === 0) break;
          const left = deadline - nowMs();
          if (left <= 0) {
            if (toSubmit === 0) throw new DmaBufError("ETIME", syscall, `fewer than ${minComplete} completions within ${timeoutMs} ms`);
            break;
          }
          // The SQ thread's release store of CQ_TAIL is followed by a notify.
          Atomics.wait(ring.i32, ring.index(CQ_TAIL), ring.load(CQ_TAIL), Math.min(left, SLICE_MS));
        }
      }
      return toSubmit;
    }
    const kernel = this.kernel;
    const submitted = ring.lock.with(() => kernel.submit(toSubmit));
    kernel.reap();
    if ((flags & IORING_ENTER_GETEVENTS) !== 0) {
      for (;;) {
        kernel.flushOverflow();
        if (ring.cqReady() >= minComplete || kernel.inflight === 0) break;
        const left = deadline - nowMs();
        if (left <= 0) {
          if (submitted === 0) throw new DmaBufError("ETIME", syscall, `fewer than ${minComplete} completions within ${timeoutMs} ms`);
          break;
        }
        kernel.waitSome(Math.min(left, SLICE_MS));
        kernel.reap();
      }
    }
    return submitted;
  }

  // ---- io_uring_register -----------------------------------------------------

  register(opcode: number, arg: unknown, nrArgs: number): number {
    const syscall = "io_uring_register";
    switch (opcode) {
      case IORING_REGISTER_FILES: return this.quiet(syscall, () => this.registerFiles(arg, nrArgs));
      case IORING_UNREGISTER_FILES: return this.quiet(syscall, () => this.unregisterFiles());
      case IORING_REGISTER_BUFFERS: return this.quiet(syscall, () => this.registerBuffers(arg, nrArgs));
      case IORING_UNREGISTER_BUFFERS: return this.quiet(syscall, () => this.unregisterBuffers());
      case IORING_REGISTER_BUFFERS_UPDATE: return this.quiet(syscall, () => this.updateBuffers(arg as IoUringRsrcUpdate2, nrArgs));
      default: throw new DmaBufError("EINVAL", syscall, `opcode ${opcode} is not supported`);
    }
  }

  /** Runs a table change under uring_lock with nothing in flight (EBUSY otherwise). */
  private quiet(syscall: string, fn: () => number): number {
    return this.ring.lock.with(() => {
      const busy = this.kernel !== undefined ? !this.kernel.idle : this.ring.load(CTX_INFLIGHT) !== 0 || this.ring.sqPending() !== 0;
      if (busy) throw new DmaBufError("EBUSY", syscall, "requests are in flight; wait for their completions first");
      return fn();
    });
  }

  private registerFiles(arg: unknown, nr: number): number {
    const syscall = "io_uring_register(IORING_REGISTER_FILES)";
    if (this.fileTable !== 0) throw new DmaBufError("EBUSY", syscall, "files are already registered");
    if (!Array.isArray(arg) || arg.length !== nr || nr < 1 || nr > IORING_MAX_FIXED_FILES) {
      throw new DmaBufError("EINVAL", syscall, `expected an array of nr_args (${nr}) fds, 1..${IORING_MAX_FIXED_FILES}`);
    }
    const files: (OpenFile | null)[] = arg.map((fd: unknown, i) => {
      if (fd === -1) return null;
      const f = this.proc.lookup(fd);
      if (f === undefined) throw new DmaBufError("EBADF", syscall, `entry ${i}: fd ${String(fd)} is not open`);
      if (!isIoTargetFile(f)) throw new DmaBufError("EOPNOTSUPP", syscall, `entry ${i}: fd ${String(fd)} is a ${f.kind} file, which a registered slot cannot hold`);
      return f;
    });
    const table = this.lab.sync.allocRecord(RecordType.ioUringFiles, nr * FILE_SLOT, syscall);
    files.forEach((f, i) => writeFileSlot(this.lab.sync.u32, table, i, f !== null && isIoTargetFile(f) ? f.ioTarget() : null));
    for (const f of files) f?.get();
    this.files = files;
    this.fileTable = table;
    this.ring.store(CTX_NR_FILES, nr);
    this.ring.store(CTX_FILES, table);
    return 0;
  }

  private unregisterFiles(): number {
    if (this.fileTable === 0) throw new DmaBufError("ENXIO", "io_uring_register(IORING_UNREGISTER_FILES)", "no files are registered");
    this.ring.store(CTX_FILES, 0);
    this.ring.store(CTX_NR_FILES, 0);
    this.lab.sync.freeRecord(this.fileTable, RecordType.ioUringFiles);
    this.fileTable = 0;
    for (const f of this.files.splice(0)) f?.put();
    return 0;
  }

  private registerBuffers(arg: unknown, nr: number): number {
    const syscall = "io_uring_register(IORING_REGISTER_BUFFERS)";
    if (this.bufTable !== 0) throw new DmaBufError("EBUSY", syscall, "buffers are already registered");
    if (!Array.isArray(arg) || arg.length !== nr || nr < 1 || nr > UIO_MAXIOV) {
      throw new DmaBufError("EINVAL", syscall, `expected an array of nr_args (${nr}) iovecs, 1..${UIO_MAXIOV}`);
    }
    const slots = arg.map((v: unknown, i) => this.userBuffer(v, i, syscall));
    const table = this.lab.sync.allocRecord(RecordType.ioUringBuffers, nr * BUF_SLOT, syscall);
    slots.forEach((b, i) => writeBufSlot(this.lab.sync.u32, table, i, b));
    this.nrBufs = nr;
    this.bufTable = table;
    this.ring.store(CTX_NR_BUFS, nr);
    this.ring.store(CTX_BUFS, table);
    return 0;
  }

  /** One iovec of a buffer registration: a slot of user memory, or null for {0, 0} (a sparse slot). */
  private userBuffer(v: unknown, i: number, syscall: string): RegisteredBuffer | null {
    const user = this.lab.arena.user;
    const end = user.base + user.granules * user.granuleBytes;
    const iov = v instanceof Uint8Array
      ? (this.lab.arena.owns(v) ? { iov_base: v.byteOffset, iov_len: v.byteLength } : null)
      : (v as IoUringBuffer | null);
    if (iov === null || typeof iov !== "object") throw new DmaBufError("EFAULT", syscall, `iovec ${i} is neither a view of the lab's memory nor {iov_base, iov_len}`);
    const { iov_base: base, iov_len: len } = iov;
    if (base === 0 && len === 0) return null;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(len) || len <= 0 || base < user.base || base + len > end) {
      throw new DmaBufError("EFAULT", syscall, `iovec ${i} [${String(base)}, +${String(len)}) is empty or outside user memory`);
    }
    if (len > IORING_MAX_BUF_SIZE) throw new DmaBufError("EINVAL", syscall, `iovec ${i} of ${len} bytes exceeds 1 GiB`);
    return { kind: BUF_USER, addr: base, len, uaddr: 0 };
  }

  /**
   * IORING_REGISTER_BUFFERS_UPDATE: replaces slots offset .. offset + nr - 1
   * of the registered table. Every entry is checked (and every dma-buf
   * token made) before any slot changes; a failure undoes the tokens made.
   */
  private updateBuffers(up: IoUringRsrcUpdate2, nrArgs: number): number {
    const syscall = "io_uring_register(IORING_REGISTER_BUFFERS_UPDATE)";
    if (this.bufTable === 0) throw new DmaBufError("ENXIO", syscall, "no buffer table is registered (register one, sparse slots {0, 0} included, first)");
    if (up === null || typeof up !== "object" || !Array.isArray(up.data)) throw new DmaBufError("EFAULT", syscall, "the argument is not an io_uring_rsrc_update2 with a data array");
    const flags = up.flags ?? 0;
    if ((flags & ~IORING_RSRC_F_EXTENDED_UPDATE) !== 0) throw new DmaBufError("EINVAL", syscall, `flags 0x${flags.toString(16)} include unknown bits`);
    const { offset, nr } = up;
    if (nr !== nrArgs || up.data.length !== nr || !Number.isInteger(offset) || offset < 0 || offset + nr > this.nrBufs) {
      throw new DmaBufError("EINVAL", syscall, `slots ${offset}..${offset + nr - 1} (nr ${nr}, nr_args ${nrArgs}, ${up.data.length} entries) are not inside the ${this.nrBufs}-slot table`);
    }
    const extended = (flags & IORING_RSRC_F_EXTENDED_UPDATE) !== 0;
    // Check every entry first: files and buffers, nothing made yet.
    const wanted = up.data.map((e, i): RegisteredBuffer | null | { dmabuf: DmaBufFile; target: BlockDevFile; uaddr: number } => {
      if (!extended) return this.userBuffer(e, i, syscall);
      const r = e as IoUringRegBuffer;
      if (r === null || typeof r !== "object") throw new DmaBufError("EFAULT", syscall, `entry ${i} is not an io_uring_reg_buffer`);
      const dmabuf = this.proc.lookup(r.dmabuf_fd);
      if (!(dmabuf instanceof DmaBufFile)) throw new DmaBufError("EBADF", syscall, `entry ${i}: dmabuf_fd ${String(r.dmabuf_fd)} is not an open dma-buf`);
      const target = this.proc.lookup(r.target_fd);
      if (target === undefined) throw new DmaBufError("EBADF", syscall, `entry ${i}: target_fd ${String(r.target_fd)} is not open`);
      if (!(target instanceof BlockDevFile)) throw new DmaBufError("EOPNOTSUPP", syscall, `entry ${i}: target_fd ${r.target_fd} is a ${target.kind} file; dma-bufs register against a storage device`);
      if (!Number.isSafeInteger(r.iov_uaddr) || r.iov_uaddr < 0 || r.iov_uaddr + dmabuf.buf.size > 2 ** 32) {
        throw new DmaBufError("EINVAL", syscall, `entry ${i}: iov_uaddr ${String(r.iov_uaddr)} leaves no room for the ${dmabuf.buf.size}-byte buffer below 2^32`);
      }
      return { dmabuf, target, uaddr: r.iov_uaddr };
    });
    const made: number[] = [];
    let slots: (RegisteredBuffer | null)[];
    try {
      slots = wanted.map((w) => {
        if (w === null || "kind" in w) return w;
        const token = dmaTokenCreate(this.lab, w.dmabuf.buf, w.target.storage, syscall);
        made.push(token);
        return { kind: BUF_DMABUF, addr: token, len: w.dmabuf.buf.size, uaddr: w.uaddr };
      });
    } catch (e) {
      for (const t of made) dmaTokenDestroy(this.lab, t);
      throw e;
    }
    const u32 = this.lab.sync.u32;
    slots.forEach((b, i) => {
      this.dropSlot(offset + i);
      writeBufSlot(u32, this.bufTable, offset + i, b);
    });
    return nr;
  }

  /** Releases what slot i holds (a dma-buf token). */
  private dropSlot(i: number): void {
    const at = (this.bufTable + i * BUF_SLOT) >>> 2;
    const u32 = this.lab.sync.u32;
    if (u32[at + BUF_KIND / 4] === BUF_DMABUF) dmaTokenDestroy(this.lab, u32[at + BUF_ADDR / 4]);
    writeBufSlot(u32, this.bufTable, i, null);
  }

  private unregisterBuffers(): number {
    if (this.bufTable === 0) throw new DmaBufError("ENXIO", "io_uring_register(IORING_UNREGISTER_BUFFERS)", "no buffers are registered");
    for (let i = 0; i < this.nrBufs; i++) this.dropSlot(i);
    this.ring.store(CTX_BUFS, 0);
    this.ring.store(CTX_NR_BUFS, 0);
    this.lab.sync.freeRecord(this.bufTable, RecordType.ioUringBuffers);
    this.bufTable = 0;
    this.nrBufs = 0;
    return 0;
  }

  // ---- release ---------------------------------------------------------------

  protected drop(last: boolean): void {
    if (!last) return;
    const { ring } = this;
    ring.store(CTX_STATE, CTX_DYING);
    if (this.kernel !== undefined) {
      this.kernel.cancelAll(RELEASE_WAIT_MS);
      this.freeAll();
      return;
    }
    // The SQ thread sees CTX_DYING, finishes its requests and exits; its exit frees the rest.
    Atomics.add(ring.i32, ring.index(CTX_SQ_WAKE), 1);
    Atomics.notify(ring.i32, ring.index(CTX_SQ_WAKE));
    void this.started.catch(() => this.freeAll());
  }

  private freed = false;

  private freeAll(): void {
    if (this.freed) return;
    this.freed = true;
    if (this.fileTable !== 0) this.unregisterFiles();
    if (this.bufTable !== 0) this.unregisterBuffers();
    this.lab.free(this.block);
  }

  /** Resolves once the ring's resources are gone (the SQ thread has exited). */
  async closed(): Promise<void> {
    if (this.sqThread !== undefined) await this.sqThread.exited;
  }
}

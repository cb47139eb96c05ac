/*
 * The kernel side of one io_uring: io_submit_sqes, request issue and
 * completion, links, drain and the CQ overflow list. It runs in exactly one
 * thread at a time: the thread that calls io_uring_enter (plain mode), or
 * the ring's SQ thread (IORING_SETUP_SQPOLL, workers/io-sq.ts). Requests are
 * that thread's JavaScript objects; everything another thread reads (the
 * rings, the registered tables, CTX_INFLIGHT) lives in the arena.
 *
 * Requests:
 *   - READV_FIXED/WRITEV_FIXED (Linux 6.15): a READV/WRITEV whose iovecs
 *     must all lie inside registered buffer buf_index (EFAULT otherwise); a
 *     registered dma-buf there is -EOPNOTSUPP (the dma-buf series' rule).
 *   - Each SQE is copied whole before SQ_HEAD is released (a later change of
 *     the SQE by the application does not affect the request).
 *   - A bad SQE fails alone: it completes with res = -errno (EINVAL for an
 *     unknown opcode or flag, EBADF for a bad fd or fixed-file index or a
 *     file opened without the access, EFAULT for memory outside user memory
 *     or outside the registered buffer, or a bad buf_index, EINVAL for
 *     O_DIRECT misalignment); the requests around it run.
 *   - Regular files complete inline (fs.readSync/writeSync straight between
 *     the file and the arena); the storage device completes asynchronously
 *     (a device job whose fence this side reaps: src/devices/block_io.ts);
 *     other files with a read/write operation (a dma-buf: the read/write
 *     path) complete inline through it, in plain mode only.
 *   - IOSQE_IO_LINK: the next SQE starts when this one completed; an error,
 *     or a short read or write, cancels the rest of the chain (-ECANCELED).
 *     IOSQE_IO_HARDLINK continues whatever the result. A chain still open at
 *     the end of a submission batch is queued as it is.
 *   - IOSQE_IO_DRAIN: the request starts when every earlier request has
 *     completed, and later ones wait behind it.
 *   - A full CQ keeps CQEs in an overflow list (IORING_FEAT_NODROP), sets
 *     IORING_SQ_CQ_OVERFLOW and counts them in CQ_OVERFLOW; they are flushed
 *     in order as the application frees CQ slots.
 * Where the lab differs: offset -1 (the file position) needs a file of the
 * submitting thread (plain mode, not IOSQE_FIXED_FILE); the SQ thread sees
 * only registered files (IOSQE_FIXED_FILE), as kernels before 5.11 required.
 */
import { DmaBufError } from "../errno.js";
import type { LabCore } from "../lab.js";
import type { Fence } from "../sync/fence.js";
import { blockRw } from "../devices/block_io.js";
import { hostRw } from "../uapi/regular_file.js";
import { dmaTokenIo } from "./dma_token.js";
import {
  CTX_BUFS, CTX_FILES, CTX_INFLIGHT, CTX_NR_BUFS, CTX_NR_FILES, IORING_OP_NOP, IORING_OP_READ, IORING_OP_READ_FIXED, IORING_OP_READV,
  IORING_OP_READV_FIXED, IORING_OP_WRITE, IORING_OP_WRITE_FIXED, IORING_OP_WRITEV, IORING_OP_WRITEV_FIXED, IORING_SQ_CQ_OVERFLOW, IOSQE_FIXED_FILE, IOSQE_IO_DRAIN, IOSQE_IO_HARDLINK, IOSQE_IO_LINK,
  IOSQE_SUPPORTED, IOVEC_SIZE, SQE_ADDR, SQE_BUF_INDEX, SQE_FD, SQE_FLAGS, SQE_LEN, SQE_OFF, SQE_OPCODE, SQE_RW_FLAGS, SQE_USER_DATA, UIO_MAXIOV,
} from "./io_uring.js";
import type { IoRing } from "./ring.js";
import { BUF_DMABUF, BUF_SLOT, FILE_SLOT, readBufSlot, readFileSlot } from "./table.js";
import { RecordType, type RecordTypeId } from "../memory/record.js";
import { TARGET_BLK, TARGET_REG, type IoTarget, type IoTargetFile } from "./target.js";

/** A file of the submitting thread, for SQEs that name an fd (plain mode). */
export interface SubmitterFiles {
  lookup(fd: number): { target?: IoTarget; file?: IoTargetFile; rw?: (iov: Uint8Array[], pos: number | undefined, write: boolean) => number } | undefined;
}

/** An I/O in flight on a device: done when `fence` has signalled; finish() releases what it holds and gives res. */
export interface Pending {
  fences: Fence[];
  finish(): number;
}

/** A segment of memory an I/O moves: an arena offset and a length. */
export interface Segment { addr: number; len: number }

/** What a fixed I/O against a registered dma-buf carries to the device (dma_token.ts). */
export interface FixedDmaBuf { token: number; offset: number; len: number }

interface Request {
  opcode: number;
  flags: number;
  fd: number;
  offLo: number;
  offHi: number;
  addr: number;
  addrHi: number;
  len: number;
  rwFlags: number;
  udLo: number;
  udHi: number;
  bufIndex: number;
  /** The next request of its link chain. */
  next: Request | null;
  /** Bytes asked for (a shorter result breaks a soft link). */
  want: number;
  pending: Pending | null;
}

const U32 = 2 ** 32;

export class IoRingKernel {
  private readonly active: Request[] = [];
  private readonly deferred: Request[] = [];
  private readonly overflow: { udLo: number; udHi: number; res: number }[] = [];
  /** Link chains started and not finished (drain waits for 0). */
  private chains = 0;

  constructor(readonly lab: LabCore, readonly ring: IoRing, private readonly files?: SubmitterFiles) {}

  /** Requests in flight on devices. */
  get inflight(): number {
    return this.active.length;
  }

  /** Nothing started and unfinished, nothing deferred, no overflow left. */
  get idle(): boolean {
    return this.chains === 0 && this.deferred.length === 0 && this.overflow.length === 0;
  }

  // ---- submission ------------------------------------------------------------

  /** io_submit_sqes: consumes up to `max` SQEs; returns how many. */
  submit(max: number): number {
    const { ring } = this;
    const n = Math.min(max, ring.sqPending());
    let chainHead: Request | null = null;
    let chainTail: Request | null = null;
    const heads: Request[] = [];
    for (let k = 0; k < n; k++) {
      const at = ring.sqeAtHead(k);
      if (at < 0) continue;
      const req = this.copySqe(at);
      if (chainTail !== null) {
        chainTail.next = req;
        chainTail = req;
      } else {
        chainHead = chainTail = req;
      }
      if ((req.flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) === 0) {
        heads.push(chainHead!);
        chainHead = chainTail = null;
      }
    }
    if (chainHead !== null) heads.push(chainHead); // a chain still open at the end of the batch
    // Counted in flight before the SQ slots are released (the application
    // reads SQ_HEAD, then CTX_INFLIGHT: it never sees both "consumed" and
    // "nothing in flight" before the CQEs are posted).
    Atomics.store(ring.u32, ring.index(CTX_INFLIGHT), this.chains + this.deferred.length + this.overflow.length + heads.length);
    // Release the SQ slots: every SQE was copied above.
    ring.consumed(n);
    for (const h of heads) this.queue(h);
    this.publishInflight();
    return n;
  }

  private copySqe(at: number): Request {
    const { u8, u32, i32 } = this.ring;
    const w = at >>> 2;
    return {
      opcode: u8[at + SQE_OPCODE], flags: u8[at + SQE_FLAGS], fd: i32[w + SQE_FD / 4],
      offLo: u32[w + SQE_OFF / 4], offHi: u32[w + SQE_OFF / 4 + 1], addr: u32[w + SQE_ADDR / 4], addrHi: u32[w + SQE_ADDR / 4 + 1],
      len: u32[w + SQE_LEN / 4], rwFlags: u32[w + SQE_RW_FLAGS / 4], udLo: u32[w + SQE_USER_DATA / 4], udHi: u32[w + SQE_USER_DATA / 4 + 1],
      bufIndex: u8[at + SQE_BUF_INDEX] | (u8[at + SQE_BUF_INDEX + 1] << 8), next: null, want: 0, pending: null,
    };
  }

  private queue(head: Request): void {
    if (this.deferred.length > 0 || ((head.flags & IOSQE_IO_DRAIN) !== 0 && this.chains > 0)) {
      this.deferred.push(head);
      return;
    }
    this.chains++;
    this.issue(head);
  }

  private runDeferred(): void {
    while (this.deferred.length > 0) {
      const head = this.deferred[0];
      if ((head.flags & IOSQE_IO_DRAIN) !== 0 && this.chains > 0) return;
      this.deferred.shift();
      this.chains++;
      this.issue(head);
    }
  }

  /** Starts one request: completes it at once (inline, or an error) or leaves it in flight. */
  private issue(req: Request): void {
    let res: number;
    try {
      const r = this.start(req);
      if (typeof r !== "number") {
        req.pending = r;
        this.active.push(req);
        return;
      }
      res = r;
    } catch (e) {
      res = errnoOf(e);
    }
    this.complete(req, res);
  }

  private start(req: Request): number | Pending {
    if ((req.flags & ~IOSQE_SUPPORTED) !== 0) throw new DmaBufError("EINVAL", "io_init_req", `sqe flags 0x${req.flags.toString(16)} include unsupported bits`);
    switch (req.opcode) {
      case IORING_OP_NOP:
        return 0;
      case IORING_OP_READ: case IORING_OP_WRITE: case IORING_OP_READV: case IORING_OP_WRITEV: case IORING_OP_READ_FIXED: case IORING_OP_WRITE_FIXED:
      case IORING_OP_READV_FIXED: case IORING_OP_WRITEV_FIXED:
        return this.startRw(req);
      default:
        throw new DmaBufError("EINVAL", "io_init_req", `opcode ${req.opcode} is not supported`);
    }
  }

  private startRw(req: Request): number | Pending {
    const write = req.opcode === IORING_OP_WRITE || req.opcode === IORING_OP_WRITEV || req.opcode === IORING_OP_WRITE_FIXED || req.opcode === IORING_OP_WRITEV_FIXED;
    const syscall = write ? "io_write" : "io_read";
    if (req.rwFlags !== 0) throw new DmaBufError("EOPNOTSUPP", syscall, `rw_flags 0x${req.rwFlags.toString(16)} (RWF_*) are not supported`);
    // The file: a registered slot, or an fd of the submitting thread.
    let target: IoTarget | undefined;
    let local: ReturnType<SubmitterFiles["lookup"]>;
    if ((req.flags & IOSQE_FIXED_FILE) !== 0) {
      target = readFileSlot(this.ring.u32, this.table(CTX_FILES, CTX_NR_FILES, RecordType.ioUringFiles, FILE_SLOT), this.ring.word(CTX_NR_FILES), req.fd);
    } else {
      local = this.files?.lookup(req.fd);
      if (local === undefined) {
        throw new DmaBufError("EBADF", syscall, this.files === undefined ? `fd ${req.fd}: the SQ thread reaches registered files only (IOSQE_FIXED_FILE)` : `fd ${req.fd} is not open`);
      }
      target = local.target;
    }
    const mode = target?.flags ?? 2;
    if (target !== undefined && (write ? mode === 0 : mode === 1)) throw new DmaBufError("EBADF", syscall, `fd ${req.fd} is not open for ${write ? "writing" : "reading"}`);
    // The position: offset -1 is the file position (IORING_FEAT_RW_CUR_POS).
    let pos: number | undefined;
    if (req.offLo === 0xffffffff && req.offHi === 0xffffffff) {
      if (local?.file === undefined && local?.rw === undefined) throw new DmaBufError("EINVAL", syscall, "offset -1 (the file position) needs an fd of the submitting thread");
      pos = local.file?.pos;
    } else {
      pos = req.offHi * U32 + req.offLo;
      if (!Number.isSafeInteger(pos) || req.offHi >= 0x80000000) throw new DmaBufError("EINVAL", syscall, `offset ${pos} is negative or too large`);
    }
    // The memory.
    let segs: Segment[];
    let fixedDmaBuf: FixedDmaBuf | undefined;
    if (req.opcode === IORING_OP_READ_FIXED || req.opcode === IORING_OP_WRITE_FIXED) {
      const buf = readBufSlot(this.ring.u32, this.table(CTX_BUFS, CTX_NR_BUFS, RecordType.ioUringBuffers, BUF_SLOT), this.ring.word(CTX_NR_BUFS), req.bufIndex);
      const base = buf.kind === BUF_DMABUF ? buf.uaddr : buf.addr;
      const addr = req.addrHi * U32 + req.addr;
      if (addr < base || addr + req.len > base + buf.len) {
        throw new DmaBufError("EFAULT", "io_import_fixed", `[${addr}, +${req.len}) is outside registered buffer ${req.bufIndex} [${base}, +${buf.len})`);
      }
      if (buf.kind === BUF_DMABUF) {
        fixedDmaBuf = { token: buf.addr, offset: addr - base, len: req.len };
        segs = [];
      } else {
        segs = [{ addr, len: req.len }];
      }
    } else if (req.opcode === IORING_OP_READV || req.opcode === IORING_OP_WRITEV) {
      segs = this.importIovec(req, syscall);
    } else if (req.opcode === IORING_OP_READV_FIXED || req.opcode === IORING_OP_WRITEV_FIXED) {
      // io_import_reg_vec: the iovecs must lie inside registered buffer buf_index.
      const buf = readBufSlot(this.ring.u32, this.table(CTX_BUFS, CTX_NR_BUFS, RecordType.ioUringBuffers, BUF_SLOT), this.ring.word(CTX_NR_BUFS), req.bufIndex);
      if (buf.kind === BUF_DMABUF) throw new DmaBufError("EOPNOTSUPP", syscall, `registered buffer ${req.bufIndex} is a dma-buf: vectored fixed I/O is not supported on it`);
      segs = this.importIovec(req, syscall);
      for (const [i, g] of segs.entries()) {
        if (g.addr < buf.addr || g.addr + g.len > buf.addr + buf.len) {
          throw new DmaBufError("EFAULT", "io_import_reg_vec", `iovec ${i} [${g.addr}, +${g.len}) is outside registered buffer ${req.bufIndex} [${buf.addr}, +${buf.len})`);
        }
      }
    } else {
      segs = [this.userRange(req.addrHi * U32 + req.addr, req.len, syscall, "buffer")];
    }
    req.want = fixedDmaBuf?.len ?? segs.reduce((s, g) => s + g.len, 0);
    // O_DIRECT: offset, lengths and addresses in logical blocks.
    const bs = target?.blockSize ?? 0;
    if (bs > 0) {
      if (pos === undefined || pos % bs !== 0) throw new DmaBufError("EINVAL", syscall, `O_DIRECT: offset ${pos} is not a multiple of the ${bs}-byte logical block`);
      for (const [i, g] of segs.entries()) {
        if (g.addr % bs !== 0 || g.len % bs !== 0) throw new DmaBufError("EINVAL", syscall, `O_DIRECT: segment ${i} (address ${g.addr}, ${g.len} bytes) is not in ${bs}-byte blocks`);
      }
      if (fixedDmaBuf !== undefined && (fixedDmaBuf.offset % bs !== 0 || fixedDmaBuf.len % bs !== 0)) {
        throw new DmaBufError("EINVAL", syscall, `O_DIRECT: dma-buf range ${fixedDmaBuf.offset}+${fixedDmaBuf.len} is not in ${bs}-byte blocks`);
      }
    }
    if (fixedDmaBuf !== undefined) {
      if (target?.kind !== TARGET_BLK) throw new DmaBufError("EINVAL", syscall, `a registered dma-buf takes fixed I/O against its storage device only (fd ${req.fd} is not one)`);
      if (fixedDmaBuf.len === 0) return 0;
      return dmaTokenIo(this.lab, fixedDmaBuf.token, target.handle, write, pos!, fixedDmaBuf.offset, fixedDmaBuf.len);
    }
    if (target?.kind === TARGET_BLK) return blockRw(this.lab, target.handle, write, pos!, segs);
    const views = segs.map((g) => this.lab.arena.view(g.addr, g.len));
    let n: number;
    if (target?.kind === TARGET_REG) {
      n = hostRw(target.handle, views, pos!, write, syscall, `fd ${req.fd}`);
      if (local?.file !== undefined && req.offLo === 0xffffffff && req.offHi === 0xffffffff) local.file.pos = pos! + n;
    } else if (local?.rw !== undefined) {
      n = local.rw(views, pos, write);
    } else {
      throw new DmaBufError("EINVAL", syscall, `fd ${req.fd} cannot be ${write ? "written" : "read"}`);
    }
    return n;
  }

  /**
   * A registered table's offset, checked: the words that name it sit in the
   * ring's block, which the application can write, so the offset must be a
   * live table of that type and hold `nr` slots (else EINVAL).
   */
  private table(word: number, nrWord: number, type: RecordTypeId, slot: number): number {
    const table = this.ring.word(word);
    const nr = this.ring.word(nrWord);
    if (table === 0 && nr === 0) return 0;
    const { arena } = this.lab;
    arena.records.check(table, type, "io_uring_rsrc", "EINVAL");
    if (nr * slot > arena.syncHeap.granuleBytes * 2 ** arena.syncHeap.orderAt(table)) {
      throw new DmaBufError("EINVAL", "io_uring_rsrc", `the ring names ${nr} slots, more than its table holds`);
    }
    return table;
  }

  /** [addr, addr + len) inside user memory, else EFAULT (access_ok). */
  private userRange(addr: number, len: number, syscall: string, what: string): Segment {
    const user = this.lab.arena.user;
    const end = user.base + user.granules * user.granuleBytes;
    if (!Number.isSafeInteger(addr) || addr < user.base || addr + len > end) {
      throw new DmaBufError("EFAULT", syscall, `${what} [${addr}, +${len}) is outside user memory [${user.base}, ${end})`);
    }
    return { addr, len };
  }

  /** READV/WRITEV: `len` struct iovecs at addr (io_import_iovec). */
  private importIovec(req: Request, syscall: string): Segment[] {
    if (req.len > UIO_MAXIOV) throw new DmaBufError("EINVAL", syscall, `${req.len} iovecs exceed UIO_MAXIOV (${UIO_MAXIOV})`);
    const table = this.userRange(req.addrHi * U32 + req.addr, req.len * IOVEC_SIZE, syscall, "the iovec array");
    const u32 = this.ring.u32;
    const segs: Segment[] = [];
    for (let i = 0; i < req.len; i++) {
      const w = (table.addr + i * IOVEC_SIZE) >>> 2;
      const base = u32[w + 1] * U32 + u32[w];
      const len = u32[w + 3] * U32 + u32[w + 2];
      segs.push(this.userRange(base, len, syscall, `iovec ${i}`));
    }
    return segs;
  }

  // ---- completion ----------------------------------------------------------

  /** Completes the in-flight requests whose devices are done; returns how many. */
  reap(): number {
    let done = 0;
    for (let i = 0; i < this.active.length;) {
      const req = this.active[i];
      if (!req.pending!.fences.every((f) => f.isSignaled())) {
        i++;
        continue;
      }
      this.active.splice(i, 1);
      const res = req.pending!.finish();
      req.pending = null;
      this.complete(req, res);
      done++;
    }
    this.publishInflight();
    return done;
  }

  /** Blocks until the oldest in-flight request's device is done or `ms` pass (0 without any). */
  waitSome(ms: number): void {
    const req = this.active[0];
    if (req === undefined) return;
    for (const f of req.pending!.fences) if (!f.isSignaled()) { f.wait(ms); return; }
  }

  /** Waits with Promises (a thread that may not block). */
  async waitSomeAsync(ms: number): Promise<void> {
    const req = this.active[0];
    if (req === undefined) return;
    for (const f of req.pending!.fences) if (!f.isSignaled()) { await f.waitAsync(ms); return; }
  }

  private complete(req: Request, res: number): void {
    this.post(req.udLo, req.udHi, res);
    const next = req.next;
    if (next === null) {
      this.chains--;
      this.runDeferred();
      return;
    }
    const hard = (req.flags & IOSQE_IO_HARDLINK) !== 0;
    const broken = !hard && (res < 0 || (req.opcode !== IORING_OP_NOP && res < req.want));
    if (!broken) {
      this.issue(next);
      return;
    }
    for (let r: Request | null = next; r !== null; r = r.next) this.post(r.udLo, r.udHi, -125 /* ECANCELED */);
    this.chains--;
    this.runDeferred();
  }

  private post(udLo: number, udHi: number, res: number): void {
    this.flushOverflow();
    if (this.overflow.length === 0 && this.ring.postCqe(udLo, udHi, res, 0)) return;
    this.overflow.push({ udLo, udHi, res });
    this.ring.countOverflow();
    this.ring.setSqFlag(IORING_SQ_CQ_OVERFLOW, true);
  }

  /** Moves overflowed CQEs into the CQ while it has room (io_cqring_overflow_flush). */
  flushOverflow(): void {
    while (this.overflow.length > 0) {
      const c = this.overflow[0];
      if (!this.ring.postCqe(c.udLo, c.udHi, c.res, 0)) return;
      this.overflow.shift();
    }
    this.ring.setSqFlag(IORING_SQ_CQ_OVERFLOW, false);
  }

  private publishInflight(): void {
    // Read by the application side of an SQPOLL ring to tell "nothing will come" from "wait".
    Atomics.store(this.ring.u32, this.ring.index(CTX_INFLIGHT), this.chains + this.deferred.length + this.overflow.length);
  }

  /** Cancels everything in flight or deferred (ring teardown): waits for devices up to `ms` each, then posts nothing more. */
  cancelAll(ms: number): void {
    for (const req of this.active.splice(0)) {
      for (const f of req.pending!.fences) f.wait(ms);
      req.pending!.finish();
    }
    this.deferred.length = 0;
    this.overflow.length = 0;
    this.chains = 0;
    this.publishInflight();
  }
}

/** A thrown error as a CQE res: -errno (EIO for anything that is not a DmaBufError). */
export function errnoOf(e: unknown): number {
  return e instanceof DmaBufError ? -e.errno : -5;
}

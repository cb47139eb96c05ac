/*
 * The sanitizer's agent: one per thread's lab view (a thread, or a device
 * worker), with its vector clock over the lab's agents, and the hooks the
 * layers that do the work call (sync/ for fences, dmabuf/ for copies and CPU
 * access, devices/ for jobs).
 *
 * Happens-before, as the sanitizer knows it, has exactly these edges:
 *   - program order within an agent;
 *   - release(fence) -> every acquire that saw the fence signalled: the
 *     signaller publishes its clock for the fence record before the signal
 *     (the record-clock table, one u32 per sync-heap granule: the REC_CLOCK
 *     of the signaller), and whoever sees the fence signalled (a wait that
 *     returned, a resv scan that skipped or dropped it, a poll, an explicit
 *     in-fence found signalled) joins that clock into its own;
 *   - publish(job) -> acquire(job): a job's submitter publishes its clock
 *     for the job record before the ring push, the device joins it when it
 *     takes the job (and consumes it);
 *   - retire(resv, fence) -> every later scan of that resv: a signalled
 *     fence that leaves a reservation object (dropped, or replaced in its
 *     slot) is folded into the object's retired clock (the table word of
 *     the resv record: a REC_CLOCK joining every fence that left), which
 *     each implicit-sync scan joins. Without it a reader that replaced a
 *     signalled writer would hide that writer from the next reader, which
 *     waits for no reader. Both happen under the resv lock.
 * A resv lock is not an edge: only fences order accesses.
 *
 * Contract:
 * - Off (a lab created without { sanitize: true }), every hook is guarded by
 *   `on`: one plain load of CTL_SANITIZE and one branch; nothing else runs.
 * - On, an agent writes only its own log chunks (log.ts) and, per fence or
 *   job it releases, that record's table word; nothing lab-global is written
 *   per access. Its clock lives in this thread (a plain array); every value
 *   another thread may read is a REC_CLOCK in its log, written before the
 *   table word that points at it.
 * - The clock has component `agent` = the number of releases so far + 1;
 *   an access records the clock when it began (a REC_CLOCK, shared by
 *   accesses while the clock does not change) and its own component when
 *   it ended: a HB b iff a.epoch <= b.clock[a.agent].
 * - A record that cannot be written (the log full) loses edges: the table
 *   word then holds LOST, and an agent that joins LOST marks its later
 *   accesses AF_UNSURE; no race is reported from those (check.ts).
 * - Two racing signallers of one fence: the first to publish its clock
 *   wins the table word (compareExchange from 0), which may be the loser of
 *   the signal itself; a double signal is a bug the lab reports anyway.
 */
import type { Arena } from "../memory/arena.js";
import { DmaBufError } from "../errno.js";
import { CTL_SAN_AGENTS, CTL_SAN_CHUNK_LIMIT, CTL_SAN_CLOCKS, CTL_SANITIZE, SYNC_GRANULE_SHIFT } from "../memory/layout.js";
import {
  ACC_BUFFER, ACC_CLOCK, ACC_EPOCH, ACC_FENCE_CTX, ACC_FENCE_SEQNO, ACC_FLAGS, ACC_GENERATION, ACC_KIND, ACC_LENGTH,
  ACC_OFFSET, ACC_T0, ACC_T1, ACC_WORDS, AF_MMAP, AF_UNBRACKETED, AF_UNSURE, AF_WRITE, AK_CPU, AK_MMAP, CHUNK_BYTES,
  DEFAULT_LOG_BYTES, LogWriter, REC_ACCESS, REC_CLOCK,
} from "./log.js";

/** Scratch for the two f64 times of an access record (they may sit at an odd word). */
const times = new Float64Array(2);
const timeWords = new Uint32Array(times.buffer);

/** A table word for a record whose clock could not be written. */
const LOST = 1;

export interface SanitizeOptions {
  /** The most log each thread may write, in bytes (default 8 MiB, about 100k accesses). */
  logBytes?: number;
}

/** An open SYNC START of this thread on one buffer. */
interface Bracket {
  clock: number;
  write: boolean;
  t0: number;
  generation: number;
  size: number;
}

export class Sanitizer {
  private readonly u32: Uint32Array;
  private readonly onIndex: number;
  private readonly syncBase: number;
  private agentId = 0;
  /** clock[i]: agent i+1's component as this agent knows it. */
  private readonly clock: number[] = [];
  /** The REC_CLOCK holding the current clock, 0 when it changed since. */
  private current = 0;
  /** Joined a LOST word: later accesses are AF_UNSURE. */
  private unsure = false;
  private readonly log: LogWriter;
  private readonly brackets = new Map<number, Bracket>();

  constructor(private readonly arena: Arena, readonly now: () => number) {
    this.u32 = arena.u32;
    this.onIndex = arena.control(CTL_SANITIZE) >>> 2;
    this.syncBase = arena.layout.syncBase;
    this.log = new LogWriter(arena, () => this.agent());
  }

  /**
   * Once per lab, when it is created with { sanitize }: the record-clock
   * table (user memory, one u32 per sync-heap granule) and the switch.
   */
  static init(arena: Arena, options: SanitizeOptions): void {
    const logBytes = options.logBytes ?? DEFAULT_LOG_BYTES;
    if (!Number.isSafeInteger(logBytes) || logBytes < CHUNK_BYTES) {
      throw new DmaBufError("EINVAL", "lab_create", `sanitize logBytes ${String(logBytes)} must be an integer of at least ${CHUNK_BYTES}`);
    }
    const bytes = (arena.layout.syncBytes >>> SYNC_GRANULE_SHIFT) * 4;
    const table = arena.user.alloc(arena.user.orderFor(bytes, 64), "sanitize_init");
    arena.u32.fill(0, table >>> 2, (table + bytes) >>> 2);
    const u32 = arena.u32;
    u32[arena.control(CTL_SAN_CLOCKS) >>> 2] = table;
    u32[arena.control(CTL_SAN_CHUNK_LIMIT) >>> 2] = Math.floor(logBytes / CHUNK_BYTES);
    // Set before the lab is shared: every thread sees it from its first look.
    Atomics.store(u32, arena.control(CTL_SANITIZE) >>> 2, 1);
  }

  /** Whether the lab sanitizes: the one check on every hook (a plain load). */
  get on(): boolean {
    return this.u32[this.onIndex] !== 0;
  }

  /** Names this agent in reports (the trace's thread name; a device's context). */
  setOwner(name: string, context: number): void {
    this.log.setOwner(name, context);
  }

  /** This thread's agent id (1-based), taken at its first use. */
  agent(): number {
    if (this.agentId === 0) {
      this.agentId = Atomics.add(this.u32, this.arena.control(CTL_SAN_AGENTS) >>> 2, 1) + 1;
      while (this.clock.length < this.agentId) this.clock.push(0);
      this.clock[this.agentId - 1] = 1;
    }
    return this.agentId;
  }

  private tableIndex(record: number): number {
    return (this.u32[this.arena.control(CTL_SAN_CLOCKS) >>> 2] >>> 2) + ((record - this.syncBase) >>> SYNC_GRANULE_SHIFT);
  }

  /** The REC_CLOCK of the current clock (written now if it changed), 0 when the log is full. */
  private snapshot(): number {
    if (this.current !== 0) return this.current;
    this.agent();
    const n = this.clock.length;
    const at = this.log.reserve(n + 1);
    if (at < 0) return 0;
    const u32 = this.u32;
    u32[at] = REC_CLOCK | (n << 8);
    for (let i = 0; i < n; i++) u32[at + 1 + i] = this.clock[i];
    this.log.publish(n + 1);
    this.current = at << 2;
    return this.current;
  }

  /** Joins the clock a table word points at (0: none published; LOST: an edge lost). */
  private join(ptr: number): void {
    if (ptr === 0) return;
    if (ptr === LOST) {
      this.unsure = true;
      return;
    }
    this.agent();
    const u32 = this.u32;
    const w = ptr >>> 2;
    const n = u32[w] >>> 8;
    const clock = this.clock;
    while (clock.length < n) clock.push(0);
    let changed = false;
    for (let i = 0; i < n; i++) {
      const c = u32[w + 1 + i];
      if (c > clock[i]) {
        clock[i] = c;
        changed = true;
      }
    }
    if (changed) this.current = 0;
  }

  /** After publishing: this agent's later accesses are not ordered before what acquires it. */
  private advance(): void {
    this.clock[this.agent() - 1]++;
    this.current = 0;
  }

  // ---- edges ------------------------------------------------------------------

  /** A fence record was made (or reused): no clock is published for it yet. */
  resetRecord(record: number): void {
    Atomics.store(this.u32, this.tableIndex(record), 0);
  }

  /** Before signalling the fence at `fence`: its waiters will join this clock. */
  release(fence: number): void {
    const ptr = this.snapshot();
    // Publish: the REC_CLOCK's words are written before this word; the
    // signal's status store (after it) is what a waiter acquires.
    Atomics.compareExchange(this.u32, this.tableIndex(fence), 0, ptr === 0 ? LOST : ptr);
    this.advance();
  }

  /** The leaf fence at `fence` was seen signalled: joins its signaller's clock. */
  acquire(fence: number): void {
    this.join(Atomics.load(this.u32, this.tableIndex(fence)));
  }

  /** A reservation object was made: nothing has left it yet. */
  resetResv(resv: number): void {
    this.resetRecord(resv);
  }

  /**
   * The signalled fence `fence` leaves the reservation object `resv` (under
   * its lock): the object's retired clock becomes the join of the two,
   * written as a new REC_CLOCK of this agent (its own clock unchanged).
   */
  retire(resv: number, fence: number): void {
    const u32 = this.u32;
    const r = this.tableIndex(resv);
    const old = Atomics.load(u32, r);
    const add = Atomics.load(u32, this.tableIndex(fence));
    if (add === 0 || add === old) return;
    if (old === LOST || add === LOST) {
      Atomics.store(u32, r, LOST);
      return;
    }
    const n = Math.max(add === 0 ? 0 : u32[add >>> 2] >>> 8, old === 0 ? 0 : u32[old >>> 2] >>> 8);
    const at = this.log.reserve(n + 1);
    if (at < 0) {
      Atomics.store(u32, r, LOST);
      return;
    }
    u32[at] = REC_CLOCK | (n << 8);
    for (let i = 1; i <= n; i++) u32[at + i] = Math.max(component(u32, old, i), component(u32, add, i));
    this.log.publish(n + 1);
    // Publish: the REC_CLOCK is written before the word (read under the same lock anyway).
    Atomics.store(u32, r, at << 2);
  }

  /** An implicit-sync scan of `resv` (under its lock): joins what left it. */
  scanResv(resv: number): void {
    this.join(Atomics.load(this.u32, this.tableIndex(resv)));
  }

  /** Before pushing the job record `job` to a device's ring. */
  publishJob(job: number): void {
    const ptr = this.snapshot();
    // Publish: ordered before the ring's HEAD store that hands the job over.
    Atomics.store(this.u32, this.tableIndex(job), ptr === 0 ? LOST : ptr);
    this.advance();
  }

  /** A device took the job `job`: joins its submitter's clock (and consumes it). */
  takeJob(job: number): void {
    this.join(Atomics.exchange(this.u32, this.tableIndex(job), 0));
  }

  // ---- accesses ---------------------------------------------------------------

  /**
   * One access to [offset, offset + length) of the dma-buf record `buffer`
   * (of `generation`), from `t0` to now. kind: AK_* | code << 8; the fence
   * that stands for it (context, seqno low words; 0 for none).
   */
  access(buffer: number, generation: number, offset: number, length: number, write: boolean, kind: number,
    fenceContext: number, fenceSeqno: number, t0: number, flags = 0): void {
    this.record(buffer, generation, offset, length, (write ? AF_WRITE : 0) | flags, kind, this.snapshot(), fenceContext, fenceSeqno, t0);
  }

  private record(buffer: number, generation: number, offset: number, length: number, flags: number, kind: number,
    clock: number, fenceContext: number, fenceSeqno: number, t0: number): void {
    if (length === 0) return;
    const id = this.agent();
    const at = this.log.reserve(ACC_WORDS);
    if (at < 0) return;
    const u32 = this.u32;
    u32[at] = REC_ACCESS | ((ACC_WORDS - 1) << 8);
    u32[at + ACC_BUFFER] = buffer;
    u32[at + ACC_GENERATION] = generation;
    u32[at + ACC_OFFSET] = offset;
    u32[at + ACC_LENGTH] = length;
    u32[at + ACC_FLAGS] = flags | (this.unsure || clock === 0 ? AF_UNSURE : 0);
    u32[at + ACC_KIND] = kind;
    u32[at + ACC_CLOCK] = clock;
    u32[at + ACC_EPOCH] = this.clock[id - 1];
    u32[at + ACC_FENCE_CTX] = fenceContext;
    u32[at + ACC_FENCE_SEQNO] = fenceSeqno;
    // The f64s sit at a word index that may be odd: written as two words.
    times[0] = t0;
    times[1] = this.now();
    u32[at + ACC_T0] = timeWords[0]; u32[at + ACC_T0 + 1] = timeWords[1];
    u32[at + ACC_T1] = timeWords[2]; u32[at + ACC_T1 + 1] = timeWords[3];
    this.log.publish(ACC_WORDS);
  }

  /** DMA_BUF_IOCTL_SYNC START (after its waits): the CPU may touch the buffer until END. */
  cpuBegin(buffer: number, generation: number, size: number, write: boolean): void {
    const open = this.brackets.get(buffer);
    if (open !== undefined && open.generation === generation) {
      open.write ||= write;
      return;
    }
    this.brackets.set(buffer, { clock: this.snapshot(), write, t0: this.now(), generation, size });
  }

  /** DMA_BUF_IOCTL_SYNC END: the bracket becomes one access of the whole buffer (an END without START: nothing). */
  cpuEnd(buffer: number, generation: number): void {
    const open = this.brackets.get(buffer);
    if (open === undefined) return;
    this.brackets.delete(buffer);
    if (open.generation !== generation) return;
    this.record(buffer, generation, 0, open.size, open.write ? AF_WRITE : 0, AK_CPU, open.clock, 0, 0, open.t0);
  }

  /**
   * A CPU access through an mmap of the buffer (declared: the lab cannot see
   * stores into a typed array). Inside an open bracket that allows it, the
   * bracket's access covers it; outside, it is recorded as AF_UNBRACKETED
   * (a finding of its own) and checked for races like any other.
   */
  mmapAccess(buffer: number, generation: number, offset: number, length: number, write: boolean, t0: number): void {
    const open = this.brackets.get(buffer);
    if (open !== undefined && open.generation === generation && (open.write || !write)) return;
    this.access(buffer, generation, offset, length, write, AK_MMAP, 0, 0, t0, AF_MMAP | AF_UNBRACKETED);
  }
}

/** Component `agent` (1-based) of the REC_CLOCK at byte offset `clock` (0: none). */
function component(u32: Uint32Array, clock: number, agent: number): number {
  if (clock === 0) return 0;
  const w = clock >>> 2;
  return agent <= u32[w] >>> 8 ? u32[w + agent] : 0;
}

/** The record-clock table word of a sync-heap record (for check.ts and tests). */
export function recordClock(arena: Arena, record: number): number {
  const table = arena.u32[arena.control(CTL_SAN_CLOCKS) >>> 2];
  return Atomics.load(arena.u32, (table >>> 2) + ((record - arena.layout.syncBase) >>> SYNC_GRANULE_SHIFT));
}

/*
 * The device record: what the host, the device's worker and the watchdog
 * share about one device, in the sync heap (DEV_*, 160 bytes).
 *
 *   DEV_STATE      i32: DEV_RUNNING, DEV_STOPPING (draining or cancelling),
 *                  DEV_DEAD (faulted or stopped: nothing more runs)
 *   DEV_ERRNO      i32: why it died (negative errno), 0 while alive
 *   DEV_RING       u32: the job ring (ring.ts)
 *   DEV_IOMMU      u32: the device's IOMMU page table (iommu.ts)
 *   DEV_TIMELINE   u32: the timeline of its out-fences (its fence context)
 *   DEV_TIMEOUT_MS u32: the job watchdog's limit for one job's execution
 *   DEV_CURRENT    u32: the job record being waited on or executed, 0 idle
 *   DEV_FLAGS      u32: DEV_FLAG_COHERENT
 *   DEV_LOCK       a Mutex: orders taking and completing a job against
 *                  fail(), so that fail() never reads a freed job record
 *   DEV_HEARTBEAT_MS f64: lab-clock ms of the device loop's last sign of life
 *   DEV_JOB_START_MS f64: when DEV_CURRENT started executing (0 while it
 *                  waits for its dependency: the watchdog times execution)
 *   DEV_JOBS_DONE, DEV_JOBS_FAILED, DEV_FAULTS u32; DEV_BYTES, DEV_BUSY_MS f64
 *   DEV_NAME       32 bytes, UTF-8
 *   DEV_REFS       i32: references on this record, its ring and its
 *                  timeline: the spawning Device holds one until it reaps,
 *                  each DeviceHandle (src/devices/handle.ts) one until it
 *                  closes, each share() token one until imported or dropped.
 *                  The last put() frees the jobs left in the ring, the ring,
 *                  the timeline reference and the record
 *   DEV_SUBMIT_TIMEOUT_MS f64: how long a submit may wait for room in a full
 *                  ring (the spawn option, for every submitter)
 *
 * Job ownership: a pushed job belongs to the device, which takes it under
 * DEV_LOCK (DEV_CURRENT = job, then the ring's TAIL advances), completes it
 * under DEV_LOCK (signals its fence, DEV_CURRENT = 0) and only then frees
 * it. fail() (the watchdog or the host, any thread) takes DEV_LOCK, marks
 * the device dead and signals the fences of DEV_CURRENT and of every queued
 * job with an error; it frees nothing. A fence is one-shot, so the device's
 * own later signal of a failed job is a no-op. Records of a dead device are
 * freed by the last put(): the host's, once its worker is gone, or a
 * DeviceHandle's after it. A submitter that pushes after the device died
 * signals its own fence (EIO); the job it left in the ring is freed with
 * the ring.
 *
 * Ordering: DEV_STATE changes with compareExchange and is notified (waiters:
 * the host's waitAsync on it); heartbeats are plain f64 stores read without
 * a lock: a stale read only delays the watchdog by one period.
 */
import { RecordType, RecordView, readName, writeName } from "../memory/record.js";
import { DmaBufError, errnoNumbers, hex } from "../errno.js";
import { DEFAULT_LOCK_TIMEOUT_MS, Mutex } from "../memory/mutex.js";
import type { Sync } from "../sync/sync.js";
import { TL_CONTEXT } from "../sync/records.js";
import { FENCE_SEQNO } from "../engine/abi.js";
import { CAT_RING, CAT_WATCHDOG, T_RING_POP, T_WATCHDOG, WD_OVERRUN, WD_SILENT } from "../trace/events.js";
import { JobRecord } from "./job.js";
import { JobRing, RING_SLOTS, RING_TAIL } from "./ring.js";

export const DEV_STATE = 0;
export const DEV_ERRNO = 4;
export const DEV_RING = 8;
export const DEV_IOMMU = 12;
export const DEV_TIMELINE = 16;
export const DEV_TIMEOUT_MS = 20;
export const DEV_CURRENT = 24;
export const DEV_FLAGS = 28;
export const DEV_LOCK = 32;
export const DEV_HEARTBEAT_MS = 64;
export const DEV_JOB_START_MS = 72;
export const DEV_JOBS_DONE = 80;
export const DEV_JOBS_FAILED = 84;
export const DEV_FAULTS = 88;
export const DEV_BYTES = 96;
export const DEV_BUSY_MS = 104;
export const DEV_NAME = 112;
export const DEV_REFS = 144;
export const DEV_SUBMIT_TIMEOUT_MS = 152;
export const DEV_RECORD_SIZE = 160;

export const DEV_RUNNING = 1;
export const DEV_STOPPING = 2;
export const DEV_DEAD = 3;
export const DEV_FLAG_COHERENT = 1;

/** The errors the device's fences carry when it fails (negative errnos, as fences hold them). */
export const FAIL_EIO = -errnoNumbers.EIO;
export const FAIL_ETIMEDOUT = -errnoNumbers.ETIMEDOUT;
export const FAIL_ECANCELED = -errnoNumbers.ECANCELED;
export const FAIL_EFAULT = -errnoNumbers.EFAULT;

export interface DeviceStats {
  name: string;
  state: "running" | "stopping" | "dead";
  error: number;
  jobsDone: number;
  jobsFailed: number;
  faults: number;
  bytes: number;
  busyMs: number;
  queued: number;
}

export class DeviceRecord {
  readonly lock: Mutex;
  readonly ring: JobRing;
  private readonly rec: RecordView;

  /** A view of the device record at `offset`, from any thread: EINVAL, nothing touched, unless a live one starts there. */
  constructor(readonly sync: Sync, readonly offset: number) {
    sync.arena.records.check(offset, RecordType.device, "device_get");
    this.rec = new RecordView(sync, offset);
    this.lock = new Mutex(sync.arena.buffer, offset + DEV_LOCK);
    this.ring = new JobRing(sync, this.rec.word(DEV_RING));
  }

  static create(sync: Sync, init: {
    name: string; ring: JobRing; iommu: number; timeline: number; timeoutMs: number; coherent: boolean; submitTimeoutMs: number;
  }): DeviceRecord {
    const offset = sync.allocRecord(RecordType.device, DEV_RECORD_SIZE, "device_create");
    const u32 = sync.u32;
    u32[(offset + DEV_RING) >>> 2] = init.ring.offset;
    u32[(offset + DEV_IOMMU) >>> 2] = init.iommu;
    u32[(offset + DEV_TIMELINE) >>> 2] = init.timeline;
    u32[(offset + DEV_TIMEOUT_MS) >>> 2] = init.timeoutMs;
    u32[(offset + DEV_FLAGS) >>> 2] = init.coherent ? DEV_FLAG_COHERENT : 0;
    writeName(sync.u8, offset + DEV_NAME, init.name, "device name", "device_create");
    new Mutex(sync.arena.buffer, offset + DEV_LOCK).init();
    sync.f64[(offset + DEV_HEARTBEAT_MS) >>> 3] = sync.clock.nowNs() / 1e6;
    sync.f64[(offset + DEV_SUBMIT_TIMEOUT_MS) >>> 3] = init.submitTimeoutMs;
    sync.i32[(offset + DEV_REFS) >>> 2] = 1;
    Atomics.store(sync.i32, (offset + DEV_STATE) >>> 2, DEV_RUNNING);
    return new DeviceRecord(sync, offset);
  }

  /** How long a submit may wait for room in the full ring, ms. */
  get submitTimeoutMs(): number {
    return this.rec.f64(DEV_SUBMIT_TIMEOUT_MS);
  }

  /** DEV_FLAGS (DEV_FLAG_COHERENT). */
  get flags(): number {
    return this.rec.word(DEV_FLAGS);
  }

  /** The device's IOMMU record. */
  get iommu(): number {
    return this.rec.word(DEV_IOMMU);
  }

  /** The timeline record of the device's out-fences. */
  get timeline(): number {
    return this.rec.word(DEV_TIMELINE);
  }

  get name(): string {
    return readName(this.sync.u8, this.offset + DEV_NAME);
  }

  get state(): number {
    return Atomics.load(this.sync.i32, (this.offset + DEV_STATE) >>> 2);
  }

  get errno(): number {
    return Atomics.load(this.sync.i32, (this.offset + DEV_ERRNO) >>> 2);
  }

  /** The index of DEV_STATE, for waiting on state changes. */
  get stateIndex(): number {
    return (this.offset + DEV_STATE) >>> 2;
  }

  nowMs(): number {
    return this.sync.clock.nowNs() / 1e6;
  }

  heartbeat(): void {
    this.rec.setF64(DEV_HEARTBEAT_MS, this.nowMs());
  }

  /** RUNNING -> STOPPING; false if it was not running. */
  stop(): boolean {
    const ok = Atomics.compareExchange(this.sync.i32, this.stateIndex, DEV_RUNNING, DEV_STOPPING) === DEV_RUNNING;
    Atomics.notify(this.sync.i32, this.stateIndex);
    return ok;
  }

  // ---- the device's side -----------------------------------------------

  /** Takes the next job (DEV_CURRENT), or 0: none queued, or the device is dead. */
  take(): number {
    if (this.state === DEV_DEAD) return 0;
    this.lock.lock();
    try {
      if (this.state === DEV_DEAD) return 0;
      let job: number;
      for (;;) {
        // Emptiness first: peek() of an empty ring is 0, and a job pushed between that peek and a
        // later look at `pending` would be taken for the 0 and skipped. Only this consumer (under
        // DEV_LOCK) moves the tail, so a ring seen non-empty stays so until advance().
        if (this.ring.pending === 0) return 0;
        job = this.ring.peek();
        if (this.isJob(job)) break;
        // A ring entry that names no job (a forged or stale offset, 0 included): skipped, counted as a fault.
        this.ring.advance();
        this.countFault();
      }
      this.rec.setF64(DEV_JOB_START_MS, 0);
      this.rec.setWord(DEV_CURRENT, job);
      this.ring.advance();
      if (this.sync.trace.on(CAT_RING)) this.traceRing(T_RING_POP, job);
      return job;
    } finally {
      this.lock.unlock();
    }
  }

  /** The low word of the device's fence context: what its trace events name it by. */
  get context(): number {
    return this.sync.u32[(this.timeline + TL_CONTEXT) >>> 2];
  }

  /** A ring push or pop of `job` (src/trace); the caller checks CAT_RING. */
  traceRing(type: number, job: number): void {
    const { sync } = this;
    const t = sync.trace.now();
    const fence = new JobRecord(sync.arena, job).fence;
    sync.trace.record(type, 0, t, t, this.context, this.ring.pending, sync.u32[(fence + FENCE_SEQNO) >>> 2]);
  }

  /** The current job's dependency is met: its execution time starts. */
  started(): void {
    this.rec.setF64(DEV_JOB_START_MS, this.nowMs());
  }

  /**
   * Completes DEV_CURRENT: counts it, signals its fence with `error` (a
   * no-op if fail() signalled it already) and clears DEV_CURRENT. The caller
   * then frees the record.
   */
  complete(job: number, error: number, bytes: number): void {
    this.lock.lock();
    try {
      const start = this.rec.f64(DEV_JOB_START_MS);
      if (start > 0) this.rec.setF64(DEV_BUSY_MS, this.rec.f64(DEV_BUSY_MS) + (this.nowMs() - start));
      if (error === 0) {
        this.rec.setWord(DEV_JOBS_DONE, this.rec.word(DEV_JOBS_DONE) + 1);
        this.rec.setF64(DEV_BYTES, this.rec.f64(DEV_BYTES) + bytes);
      } else {
        this.rec.setWord(DEV_JOBS_FAILED, this.rec.word(DEV_JOBS_FAILED) + 1);
      }
      // The counters first: whoever the signal wakes sees them.
      this.sync.view(new JobRecord(this.sync.arena, job).fence, false).checkAndSignal(error);
      this.rec.setWord(DEV_CURRENT, 0);
    } finally {
      this.lock.unlock();
    }
  }

  countFault(): void {
    Atomics.add(this.sync.u32, (this.offset + DEV_FAULTS) >>> 2, 1);
  }

  // ---- faults: any thread ------------------------------------------------

  /**
   * Marks the device dead with `error` (negative errno) and signals every
   * pending job's fence: the current one with `currentError` (ETIMEDOUT for
   * an overrun), the queued ones with `error`. False if it was dead already.
   * `lockTimeoutMs`: how long to wait for DEV_LOCK (a device that died
   * holding it is treated as gone: the fences are signalled regardless).
   */
  fail(error: number, currentError = error, lockTimeoutMs = DEFAULT_LOCK_TIMEOUT_MS): boolean {
    let locked = false;
    try {
      this.lock.lock(lockTimeoutMs);
      locked = true;
    } catch (e) {
      if (!(e instanceof DmaBufError && e.code === "EDEADLK")) throw e;
    }
    try {
      const i32 = this.sync.i32;
      const prev = Atomics.exchange(i32, this.stateIndex, DEV_DEAD);
      if (prev === DEV_DEAD) return false;
      Atomics.store(i32, (this.offset + DEV_ERRNO) >>> 2, error);
      const current = this.rec.word(DEV_CURRENT);
      if (current !== 0) this.signalJob(current, currentError);
      this.forQueued((job) => this.signalJob(job, error));
      Atomics.notify(i32, this.stateIndex);
      // Submitters waiting for room in the full ring: they see DEV_DEAD and give up (ENODEV).
      this.ring.wakeProducers();
      return true;
    } finally {
      if (locked) this.lock.unlock();
    }
  }

  private signalJob(job: number, error: number): void {
    const fence = this.sync.view(new JobRecord(this.sync.arena, job).fence, false);
    fence.checkAndSignal(error);
    this.rec.setWord(DEV_JOBS_FAILED, this.rec.word(DEV_JOBS_FAILED) + 1);
  }

  /** Every job still in the ring, oldest first (under DEV_LOCK or with the device gone); entries that name no job are skipped. */
  private forQueued(fn: (job: number) => void): void {
    const ring = this.ring;
    const u32 = this.sync.u32;
    const tail = u32[(ring.offset + RING_TAIL) >>> 2];
    for (let n = 0; n < ring.pending; n++) {
      const job = u32[((ring.offset + RING_SLOTS) >>> 2) + ((tail + n) & (ring.capacity - 1))];
      if (this.isJob(job)) fn(job);
    }
  }

  /** Whether a live job record starts at `offset` (ring entries are checked before they are trusted). */
  private isJob(offset: number): boolean {
    return this.sync.arena.records.typeAt(offset) === RecordType.job;
  }

  /**
   * The watchdog's check: an execution past DEV_TIMEOUT_MS fails the
   * device (ETIMEDOUT for that job, EIO for the queued ones); so does a
   * loop that has shown no sign of life for `silenceMs` (EIO). Returns
   * whether it failed the device now.
   */
  check(silenceMs: number): boolean {
    const state = this.state;
    if (state === DEV_DEAD) return false;
    const now = this.nowMs();
    const start = this.rec.f64(DEV_JOB_START_MS);
    if (this.rec.word(DEV_CURRENT) !== 0 && start > 0 && now - start > this.rec.word(DEV_TIMEOUT_MS)) {
      return this.watchdogFail(WD_OVERRUN, FAIL_ETIMEDOUT);
    }
    if (now - this.rec.f64(DEV_HEARTBEAT_MS) > silenceMs && (this.rec.word(DEV_CURRENT) === 0 || start === 0)) {
      return this.watchdogFail(WD_SILENT, FAIL_EIO);
    }
    return false;
  }

  private watchdogFail(action: number, currentError: number): boolean {
    const { trace } = this.sync;
    const context = this.context;
    const failed = this.fail(FAIL_EIO, currentError, 100);
    if (failed && trace.on(CAT_WATCHDOG)) {
      const t = trace.now();
      trace.record(T_WATCHDOG, action, t, t, context, -currentError);
    }
    return failed;
  }

  /** Takes a reference (a handle or a token); EBADF once the last one went (the record is being freed). */
  get(syscall: string): void {
    const i = (this.offset + DEV_REFS) >>> 2;
    for (let n = Atomics.load(this.sync.i32, i); ; ) {
      if (n <= 0) throw new DmaBufError("EBADF", syscall, `device ${hex(this.offset)} is gone`);
      const seen = Atomics.compareExchange(this.sync.i32, i, n, n + 1);
      if (seen === n) return;
      n = seen;
    }
  }

  /**
   * Drops a reference. The last one (the device is dead by then: the host
   * drops its own only after reaping) drops every job record left (the
   * current one and the queued ones, their fence and dependency references
   * with them), the ring, the timeline reference and this record.
   */
  put(): void {
    if (Atomics.sub(this.sync.i32, (this.offset + DEV_REFS) >>> 2, 1) !== 1) return;
    if (this.state !== DEV_DEAD) this.fail(FAIL_EIO);
    const { sync } = this;
    const current = this.rec.word(DEV_CURRENT);
    if (current !== 0) freeJob(sync, current);
    this.forQueued((job) => freeJob(sync, job));
    this.ring.destroy();
    sync.unrefTimeline(this.timeline);
    sync.freeRecord(this.offset, RecordType.device);
  }

  stats(): DeviceStats {
    const state = this.state;
    return {
      name: this.name,
      state: state === DEV_RUNNING ? "running" : state === DEV_STOPPING ? "stopping" : "dead",
      error: this.errno,
      jobsDone: this.rec.word(DEV_JOBS_DONE),
      jobsFailed: this.rec.word(DEV_JOBS_FAILED),
      faults: this.rec.word(DEV_FAULTS),
      bytes: this.rec.f64(DEV_BYTES),
      busyMs: this.rec.f64(DEV_BUSY_MS),
      queued: this.ring.pending,
    };
  }
}

/** Drops a job record: its fence and dependency references, then the record. */
export function freeJob(sync: Sync, job: number): void {
  const { fence, dep } = new JobRecord(sync.arena, job);
  sync.unref(fence);
  if (dep !== 0) sync.unref(dep);
  sync.freeRecord(job, RecordType.job);
}

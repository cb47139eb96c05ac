/*
 * The device side: the loop a device's worker runs (workers/device.ts).
 *
 * Loop: take the next job from the ring (DeviceRecord.take), wait for its
 * dependency, execute it through this worker's engine over the device
 * addresses it names (every range goes through the device's IOMMU: an
 * address outside its mappings is EFAULT for that job only; the execution
 * is bracketed by the IOMMU's dmaBegin/dmaEnd, which a revoke waits on), complete it
 * (signal its fence, with the error if it failed), free it. A dependency
 * that signalled an error skips the job: its fence carries that error.
 *
 * The loop shows it is alive (DEV_HEARTBEAT_MS) whenever it is between
 * jobs or waiting for a dependency, and it yields to the event loop when
 * idle and every YIELD_MS of work, so that the control plane (comlink) and
 * the importer's move_notify callbacks run. Idle, it sleeps on the ring's
 * HEAD: first briefly in Atomics.wait (low latency for back-to-back
 * submissions), then in Atomics.waitAsync. A coherent device in a
 * non-coherent lab snoops the CPU caches around each job (snoop()).
 *
 * Kernels: loadKernel(url) imports a module whose default export is
 * `(ctx: KernelContext) => void | Promise<void>`; a JOB_KERNEL job calls it
 * with Uint8Array views of its ranges (one view per physically contiguous
 * run) and its arguments. A kernel that throws fails its job with EIO (or
 * the DmaBufError code it threw); one that never returns is the watchdog's.
 */
import { DmaBufError, fenceError } from "../errno.js";
import type { SegmentList, SgTable } from "../engine/tables.js";
import type { LabCore } from "../lab.js";
import { zipRuns, type Run } from "../dmabuf/runs.js";
import {
  DEV_DEAD, DEV_FLAG_COHERENT, DEV_STOPPING, DeviceRecord, FAIL_ECANCELED, FAIL_EFAULT, freeJob,
} from "./device_record.js";
import { CpuCache, isCoherent } from "../dmabuf/coherence.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { IOMMU_WRITE, Iommu } from "../dmabuf/iommu.js";
import {
  JOB_CHECKSUM, JOB_COPY, JOB_FILL, JOB_KERNEL, JOB_NOP, JobRecord, jobAccessName, type JobAccess, type JobBuffer,
} from "./job.js";
import { FENCE_CONTEXT, FENCE_SEQNO } from "../engine/abi.js";
import { AK_JOB } from "../sanitize/log.js";
import { CAT_JOB, NOT_REACHED, T_JOB } from "../trace/events.js";

export interface KernelContext {
  /** Per range: Uint8Array views of its physically contiguous runs, in order. */
  buffers: Uint8Array[][];
  /** Per range: "read", "write" or "read-write", as the job declared. */
  access: JobAccess[];
  args: number[];
}
export type Kernel = (ctx: KernelContext) => void | Promise<void>;

/** How long the loop may go without showing life before the watchdog calls it dead. */
export const HEARTBEAT_MS = 20;
const SPIN_WAIT_MS = 0.5;
const YIELD_MS = 5;
/** One turn of the event loop: setImmediate where there is one (Node's setTimeout(0) sleeps 1 ms). */
const yieldTurn = (): Promise<void> =>
  new Promise((resolve) => (typeof setImmediate === "function" ? setImmediate(resolve) : setTimeout(resolve, 0)));

export class DeviceRuntime {
  readonly record: DeviceRecord;
  readonly iommu: Iommu;
  private readonly kernels: Kernel[] = [];
  private readonly runs: Run[][] = [];
  private readonly table: SgTable;
  private readonly list: SegmentList;

  /** A coherent device in a non-coherent lab: it snoops the CPU caches. */
  private readonly snoops: boolean;

  constructor(readonly lab: LabCore, offset: number) {
    this.record = new DeviceRecord(lab.sync, offset);
    this.snoops = (this.record.flags & DEV_FLAG_COHERENT) !== 0 && !isCoherent(lab.arena);
    this.iommu = new Iommu(lab.sync, this.record.iommu);
    this.table = lab.sgTable();
    this.list = lab.segmentList();
  }

  async loadKernel(url: string): Promise<number> {
    let mod: { default?: unknown };
    try {
      mod = await import(/* @vite-ignore */ url);
    } catch (cause) {
      throw new DmaBufError("ENOENT", "device_load_kernel", `cannot import kernel module ${url}`, { cause });
    }
    if (typeof mod.default !== "function") {
      throw new DmaBufError("EINVAL", "device_load_kernel", `kernel module ${url} has no default-exported function`);
    }
    this.kernels.push(mod.default as Kernel);
    return this.kernels.length;
  }

  /** Ends the loop: after the queued jobs (drain) or at once, failing them with ECANCELED. */
  stop(drain: boolean): void {
    this.record.stop();
    if (!drain) this.record.fail(FAIL_ECANCELED);
  }

  /** The loop; resolves when the device stops or dies. */
  async run(): Promise<void> {
    const { record } = this;
    let lastYield = performance.now();
    for (;;) {
      record.heartbeat();
      const state = record.state;
      if (state === DEV_DEAD) return;
      const job = record.take();
      if (job === 0) {
        if (state === DEV_STOPPING) {
          record.fail(0);
          return;
        }
        if (!record.ring.waitForWork(SPIN_WAIT_MS)) await record.ring.waitForWorkAsync(HEARTBEAT_MS);
        lastYield = performance.now();
        continue;
      }
      await this.runJob(job);
      if (performance.now() - lastYield > YIELD_MS) {
        await yieldTurn();
        lastYield = performance.now();
      }
    }
  }

  private async runJob(job: number): Promise<void> {
    const { record, lab } = this;
    const { sync } = lab;
    let error = 0;
    let bytes = 0;
    const rec = new JobRecord(lab.arena, job);
    const marks = sync.trace.on(CAT_JOB) ? new JobMarks(this, rec) : undefined;
    if (sync.san.on) sync.san.takeJob(job);
    if (rec.dep !== 0) error = await this.waitDependency(rec.dep);
    marks?.depsDone(error);
    if (error === 0) {
      marks?.running();
      record.started();
      try {
        if (this.snoops) this.snoop(rec, false);
        const t0 = sync.san.on ? sync.san.now() : 0;
        // The DMA bracket: a revoke that unmapped a range of this job after
        // its translate waits for dmaEnd (src/dmabuf/iommu.ts, dmaQuiesce).
        this.iommu.dmaBegin();
        try {
          bytes = await this.execute(rec);
        } finally {
          this.iommu.dmaEnd();
        }
        if (sync.san.on) this.recordAccesses(rec, t0);
        if (this.snoops) this.snoop(rec, true);
      } catch (e) {
        error = fenceError(e);
        if (error === FAIL_EFAULT) record.countFault();
      }
    }
    // The job's trace event first: whoever sees its fence signalled (and
    // stops the trace) finds the job recorded; the signal follows it.
    marks?.end(error, bytes);
    record.complete(job, error, bytes);
    freeJob(sync, job);
  }

  /**
   * The job's DMA as the sanitizer sees it (src/sanitize): one access per
   * range of a dma-buf, named by the job's out-fence, before it signals.
   */
  private recordAccesses(job: JobRecord, t0: number): void {
    const { sync } = this.lab;
    const u32 = sync.u32;
    const fence = job.fence;
    for (const range of job.buffers()) {
      if (range.buffer === 0) continue;
      sync.san.access(range.buffer, sync.arena.records.generationAt(range.buffer), range.offset, range.len,
        (range.access & IOMMU_WRITE) !== 0, AK_JOB | (job.kind << 8), u32[(fence + FENCE_CONTEXT) >>> 2], u32[(fence + FENCE_SEQNO) >>> 2], t0);
    }
  }

  /**
   * Waits for the dependency: briefly blocking (the common short wait),
   * then in waitAsync slices, so that the control plane and the event loop
   * run meanwhile and the heartbeat goes on. Its error, or 0.
   */
  private async waitDependency(dep: number): Promise<number> {
    const fence = this.lab.sync.view(dep, false);
    if (fence.wait(SPIN_WAIT_MS) === 0) {
      while ((await fence.waitAsync(HEARTBEAT_MS)) === 0) {
        this.record.heartbeat();
        if (this.record.state === DEV_DEAD) return FAIL_ECANCELED;
      }
    }
    return Math.min(0, fence.status);
  }

  /**
   * A coherent device in a non-coherent lab snoops the CPU caches of the
   * job's cached buffers: before the job, the CPU's dirty lines of every
   * range are written back (the device reads what the CPU wrote); after it,
   * the lines of the written ranges are refilled (the CPU reads what the
   * device wrote).
   */
  private snoop(job: JobRecord, after: boolean): void {
    const { sync } = this.lab;
    for (const range of job.buffers()) {
      if (after && (range.access & IOMMU_WRITE) === 0) continue;
      const buf = DmaBufRecord.attach(sync, range.buffer);
      try {
        const cache = CpuCache.of(buf);
        if (after) cache?.invalidate(range.offset, range.len, false);
        else cache?.cleanRange(range.offset, range.len, false);
      } finally {
        buf.put();
      }
    }
  }

  /** Translates the job's range i through the IOMMU into this.runs[i]; its length. */
  private translate(range: JobBuffer, i: number): number {
    const runs = (this.runs[i] ??= []);
    runs.length = 0;
    this.iommu.translate(range.iova, range.len, range.access, (addr, n) => { runs.push({ addr, len: n }); });
    return range.len;
  }

  /** Executes one job; returns the bytes it moved or produced. */
  private async execute(job: JobRecord): Promise<number> {
    const { engine, arena } = this.lab;
    const { kind } = job;
    const ranges = job.buffers();
    // Validate every range through the IOMMU before any byte moves.
    ranges.forEach((range, i) => this.translate(range, i));
    switch (kind) {
      case JOB_NOP:
        return 0;
      case JOB_COPY: {
        const table = this.table.clear();
        zipRuns(this.runs[0], this.runs[1], (src, sOff, dst, dOff, n) => { table.push(dst.addr + dOff, src.addr + sOff, n); });
        engine.sgCopy(table);
        return Math.min(ranges[0].len, ranges[1].len);
      }
      case JOB_FILL: {
        const value = job.args()[0] & 0xff;
        let n = 0;
        for (const r of this.runs[0]) { engine.fill(r.addr, value, r.len); n += r.len; }
        return n;
      }
      case JOB_CHECKSUM: {
        const list = this.list.clear();
        let n = 0;
        for (const r of this.runs[0]) { list.push(r.addr, r.len); n += r.len; }
        const sum = engine.checksum(list);
        // The result, little-endian, into the first 4 bytes of range 1.
        let b = 0;
        for (const r of this.runs[1]) {
          for (let k = 0; k < r.len && b < 4; k++, b++) arena.u8[r.addr + k] = (sum >>> (8 * b)) & 0xff;
        }
        return n;
      }
      case JOB_KERNEL: {
        const kernel = this.kernels[job.kernelId - 1];
        if (kernel === undefined) throw new DmaBufError("EINVAL", "device_run_job", `no kernel ${job.kernelId} is loaded`);
        const ctx: KernelContext = { buffers: [], access: [], args: job.args() };
        let n = 0;
        ranges.forEach((range, i) => {
          ctx.buffers.push(this.runs[i].map((r) => arena.view(r.addr, r.len)));
          ctx.access.push(jobAccessName(range.access));
          n += range.len;
        });
        await kernel(ctx);
        return n;
      }
      default:
        throw new DmaBufError("EINVAL", "device_run_job", `job kind ${kind} is unknown`);
    }
  }
}

/** A traced job's times (src/trace: one T_JOB event on the device's track when it completes). */
class JobMarks {
  private readonly t0: number;
  private readonly kind: number;
  private readonly context: number;
  private readonly seqno: number;
  private deps = NOT_REACHED;
  private ran = NOT_REACHED;

  constructor(private readonly runtime: DeviceRuntime, job: JobRecord) {
    const { sync } = runtime.lab;
    this.t0 = sync.trace.now();
    this.kind = job.kind;
    this.context = runtime.record.context;
    this.seqno = sync.u32[(job.fence + FENCE_SEQNO) >>> 2];
  }

  private since(): number {
    return Math.min(NOT_REACHED - 1, Math.max(0, this.runtime.lab.sync.trace.now() - this.t0));
  }

  depsDone(error: number): void {
    if (error === 0) this.deps = this.since();
  }

  running(): void {
    this.ran = this.since();
  }

  end(error: number, bytes: number): void {
    const { trace } = this.runtime.lab.sync;
    trace.record(T_JOB, this.kind, this.t0, trace.now(), this.context, this.seqno, error, bytes, this.deps, this.ran);
  }
}

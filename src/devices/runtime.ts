/*
 * The device side: the loop a device's worker runs (workers/device.ts).
 *
 * Loop: take the next job from the ring (DeviceRecord.take), wait for its
 * dependency, execute it through this worker's engine over the device
 * addresses it names (every range goes through the device's IOMMU: an
 * address outside its mappings is EFAULT for that job only), complete it
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
import type { Lab } from "../lab.js";
import { zipRuns, type Run } from "../dmabuf/runs.js";
import {
  DEV_DEAD, DEV_FLAG_COHERENT, DEV_FLAGS, DEV_IOMMU, DEV_STOPPING, DeviceRecord, FAIL_ECANCELED, FAIL_EFAULT, freeJob,
} from "./device_record.js";
import { CpuCache, isCoherent } from "../dmabuf/coherence.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { IOMMU_READ, IOMMU_WRITE, Iommu } from "../dmabuf/iommu.js";
import {
  JOB_ARGS, JOB_BUF_ACCESS, JOB_BUF_BUFFER, JOB_BUF_IOVA, JOB_BUF_OFFSET, JOB_BUF_LEN, JOB_BUF_SIZE, JOB_BUFS, JOB_CHECKSUM, JOB_COPY, JOB_DEP,
  JOB_FENCE, JOB_FILL, JOB_KERNEL, JOB_KERNEL_ID, JOB_KIND, JOB_NARGS, JOB_NBUFS, JOB_NOP,
} from "./job.js";
import { FENCE_SEQNO } from "../engine/abi.js";
import { CAT_JOB, NOT_REACHED, T_JOB } from "../trace/events.js";

export interface KernelContext {
  /** Per range: Uint8Array views of its physically contiguous runs, in order. */
  buffers: Uint8Array[][];
  /** Per range: "read", "write" or "read-write", as the job declared. */
  access: string[];
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

  constructor(readonly lab: Lab, offset: number) {
    this.record = new DeviceRecord(lab.sync, offset);
    this.snoops = (this.record.word(DEV_FLAGS) & DEV_FLAG_COHERENT) !== 0 && !isCoherent(lab.arena);
    this.iommu = new Iommu(lab.sync, this.record.word(DEV_IOMMU));
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
    const marks = sync.trace.on(CAT_JOB) ? new JobMarks(this, job) : undefined;
    let error = 0;
    let bytes = 0;
    const dep = sync.u32[(job + JOB_DEP) >>> 2];
    if (dep !== 0) error = await this.waitDependency(dep);
    marks?.depsDone(error);
    if (error === 0) {
      marks?.running();
      record.started();
      try {
        if (this.snoops) this.snoop(job, false);
        bytes = await this.execute(job);
        if (this.snoops) this.snoop(job, true);
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
  private snoop(job: number, after: boolean): void {
    const { sync } = this.lab;
    const u32 = sync.u32;
    for (let i = 0; i < u32[(job + JOB_NBUFS) >>> 2]; i++) {
      const at = job + JOB_BUFS + i * JOB_BUF_SIZE;
      if (after && (u32[(at + JOB_BUF_ACCESS) >>> 2] & IOMMU_WRITE) === 0) continue;
      const buf = DmaBufRecord.attach(sync, u32[(at + JOB_BUF_BUFFER) >>> 2]);
      try {
        const cache = CpuCache.of(buf);
        const pos = u32[(at + JOB_BUF_OFFSET) >>> 2];
        const len = u32[(at + JOB_BUF_LEN) >>> 2];
        if (after) cache?.invalidate(pos, len, false);
        else cache?.cleanRange(pos, len, false);
      } finally {
        buf.put();
      }
    }
  }

  /** Translates range i through the IOMMU into this.runs[i]; its length. */
  private translate(job: number, i: number): number {
    const u32 = this.lab.sync.u32;
    const at = job + JOB_BUFS + i * JOB_BUF_SIZE;
    const runs = (this.runs[i] ??= []);
    runs.length = 0;
    const len = u32[(at + JOB_BUF_LEN) >>> 2];
    this.iommu.translate(u32[(at + JOB_BUF_IOVA) >>> 2], len, u32[(at + JOB_BUF_ACCESS) >>> 2],
      (addr, n) => { runs.push({ addr, len: n }); });
    return len;
  }

  /** Executes one job; returns the bytes it moved or produced. */
  private async execute(job: number): Promise<number> {
    const { engine, arena } = this.lab;
    const u32 = this.lab.sync.u32;
    const kind = u32[(job + JOB_KIND) >>> 2];
    const nbufs = u32[(job + JOB_NBUFS) >>> 2];
    // Validate every range through the IOMMU before any byte moves.
    for (let i = 0; i < nbufs; i++) this.translate(job, i);
    switch (kind) {
      case JOB_NOP:
        return 0;
      case JOB_COPY: {
        const table = this.table.clear();
        zipRuns(this.runs[0], this.runs[1], (src, sOff, dst, dOff, n) => { table.push(dst.addr + dOff, src.addr + sOff, n); });
        engine.sgCopy(table);
        return Math.min(u32[(job + JOB_BUFS + JOB_BUF_LEN) >>> 2], u32[(job + JOB_BUFS + JOB_BUF_SIZE + JOB_BUF_LEN) >>> 2]);
      }
      case JOB_FILL: {
        const value = u32[(job + JOB_ARGS) >>> 2] & 0xff;
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
        const kernel = this.kernels[u32[(job + JOB_KERNEL_ID) >>> 2] - 1];
        if (kernel === undefined) throw new DmaBufError("EINVAL", "device_run_job", `no kernel ${u32[(job + JOB_KERNEL_ID) >>> 2]} is loaded`);
        const ctx: KernelContext = { buffers: [], access: [], args: [] };
        let n = 0;
        for (let i = 0; i < nbufs; i++) {
          ctx.buffers.push(this.runs[i].map((r) => arena.view(r.addr, r.len)));
          const access = u32[(job + JOB_BUFS + i * JOB_BUF_SIZE + JOB_BUF_ACCESS) >>> 2];
          ctx.access.push(access === (IOMMU_READ | IOMMU_WRITE) ? "read-write" : access === IOMMU_WRITE ? "write" : "read");
          n += u32[(job + JOB_BUFS + i * JOB_BUF_SIZE + JOB_BUF_LEN) >>> 2];
        }
        for (let i = 0; i < u32[(job + JOB_NARGS) >>> 2]; i++) ctx.args.push(u32[(job + JOB_ARGS + 4 * i) >>> 2]);
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

  constructor(private readonly runtime: DeviceRuntime, job: number) {
    const { sync } = runtime.lab;
    this.t0 = sync.trace.now();
    this.kind = sync.u32[(job + JOB_KIND) >>> 2];
    this.context = runtime.record.context;
    this.seqno = sync.u32[(sync.u32[(job + JOB_FENCE) >>> 2] + FENCE_SEQNO) >>> 2];
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

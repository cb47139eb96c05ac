/*
 * Devices, host side: spawnDevice() starts a worker that plays a device
 * (workers/device.ts: its own engine instance, IOMMU page table, job ring
 * and fence context), and Device is the driver's handle on it.
 *
 *   attach(buf, {dynamic})  the worker attaches (static: pinned and mapped
 *                           at attach; dynamic: mapped under the resv lock,
 *                           told of revocation by move_notify) and answers
 *                           the device-address range: a DeviceBuffer
 *   submit(job)             a job over DeviceBuffers; returns its out-fence
 *   loadKernel(url)         a user-defined kernel module for kernel jobs
 *   stats(), detach(), shutdown({drain}), kill() (a reset: EIO for all)
 *
 * Submission (any thread that has the Device; synchronous, never waits
 * for the device): validates the job entirely first (EINVAL, nothing
 * changed); creates the out-fence on the device's timeline; for each buffer
 * the job uses, in one resv critical section each (Resv.publishAccess),
 * collects the fences implicit sync makes it wait for (a written buffer
 * waits like a writer, a read one like a reader) and publishes the out-fence
 * with usage WRITE or READ; adds the explicit in-fences (Fence or SyncFile);
 * folds the dependencies into one fence (an array when several) and pushes
 * the job record (allocated before anything is published) into the ring. A
 * failure after a fence was published (a full ring: EAGAIN) signals the
 * out-fence with that error, so nothing waits on a job that never runs.
 *
 * Faults: a job whose range leaves the device's mappings fails with EFAULT
 * (its fence carries it) and nothing else is touched. The worker exiting,
 * throwing at top level or being terminated fails the device at once (EIO
 * for every pending fence); the lab's watchdog worker (workers/watchdog.ts)
 * fails it when a job overruns jobTimeoutMs (ETIMEDOUT for that job, EIO
 * for the queued ones) or the loop goes silent while this thread is
 * blocked. A failed device is then reaped here: the worker is terminated,
 * its attachments are released, its records freed. Submitting to it is
 * ENODEV; the rest of the lab is untouched.
 *
 * Contract: shutdown() every device (a live worker keeps Node alive); the
 * workers are unref'd, so a forgotten device does not hang the process.
 */
import { RecordType } from "../memory/record.js";
import * as Comlink from "comlink";
import { DmaBufError, fenceError } from "../errno.js";
import { describe, finiteTimeoutArg, intArg, objectArg, stringArg } from "../args.js";
import { DmaBufAttachment, dmaBufAttachments } from "../dmabuf/attachment.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import type { LabCore } from "../lab.js";
import { Fence } from "../sync/fence.js";
import { SyncFile } from "../sync/sync_file.js";
import type { Timeline } from "../sync/timeline.js";
import { installErrorTransfer } from "../thread/errors.js";
import { shippedWorker } from "../thread/host.js";
import { keepingAlive } from "../memory/futex.js";
import { spawnWorker, type SpawnedWorker } from "../thread/spawn.js";
import { DEV_DEAD, DeviceRecord, FAIL_EIO, freeJob, type DeviceStats } from "./device_record.js";
import { IOMMU_WRITE, Iommu, IOTLB_INVALIDATE_NS, type IommuOptions } from "../dmabuf/iommu.js";
import { JOB_MAX_ARGS, JOB_MAX_BUFS, JOB_RECORD_SIZE, JobRecord, jobAccessBits, jobKinds, type JobAccess } from "./job.js";
import type { DeviceApi } from "./protocol.js";
import { releaseWatchdog, watchdogFor } from "./watchdog.js";
import { DEFAULT_RING_ENTRIES, JobRing } from "./ring.js";
import { FENCE_SEQNO } from "../engine/abi.js";
import { CAT_JOB, CAT_RING, T_JOB_SUBMIT, T_RING_PUSH } from "../trace/events.js";

export interface DeviceOptions {
  name?: string;
  /**
   * Whether the device snoops the CPU caches (default true). In a
   * non-coherent lab a coherent device sees the CPU's dirty lines of the
   * ranges it reads, and the CPU sees its writes without a SYNC; a
   * non-coherent one sees only memory, as on ARM without dma-coherent.
   */
  coherent?: boolean;
  /** The watchdog's limit for one job's execution (default 5000 ms). */
  jobTimeoutMs?: number;
  /** Job ring entries, a power of two (default 256). */
  ringEntries?: number;
  /** Device address space (default 256 MiB). */
  iovaBytes?: number;
  /** The IOMMU's mode (strict, lazy, passthrough) and IOTLB invalidation latency: src/dmabuf/iommu.ts's cost model. */
  iommu?: Pick<IommuOptions, "mode" | "iotlbInvalidateNs">;
  /** How long submit() may wait for room in a full ring (default 1000 ms; 0: EAGAIN at once). */
  submitTimeoutMs?: number;
}

/** A buffer as one device sees it: an attachment and its device-address range. */
export interface DeviceBuffer {
  readonly device: Device;
  readonly attachment: number;
  readonly iova: number;
  readonly bytes: number;
  readonly dynamic: boolean;
  /** The buffer (a view owned by this DeviceBuffer until detach). */
  readonly buffer: DmaBufRecord;
}

/** A range of a DeviceBuffer: all of it by default. */
export type Range = DeviceBuffer | { buffer: DeviceBuffer; offset?: number; length?: number };

export type InFence = Fence | SyncFile;

/**
 * What every job may add: explicit in-fences (waited for besides the
 * implicit ones), and `bypassFences`, which skips implicit sync entirely
 * (the job neither waits on its buffers' fences nor publishes its own: the
 * contention experiment's switch to show what goes wrong without them).
 */
interface JobCommon { inFences?: InFence[]; bypassFences?: boolean }

export type Job = JobCommon & (
  | { kind: "nop" }
  | { kind: "copy"; src: Range; dst: Range }
  | { kind: "fill"; dst: Range; value: number }
  | { kind: "checksum"; src: Range; dst: Range }
  | { kind: "kernel"; kernel: number; buffers: { range: Range; access: JobAccess }[]; args?: number[] });

interface Use { iova: number; len: number; access: number; buffer: DeviceBuffer; offset: number }

const SUBMIT = "drm_sched_job_submit";
/** How long kill() lets a live device loop stop by itself before terminating it. */
const KILL_GRACE_MS = 500;
/** How long shutdown() waits for a drain by default before it cancels what is left. */
const SHUTDOWN_TIMEOUT_MS = 10_000;

/** Whether p settles within ms (true), or the time ran out first (false); p's rejection is passed on. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

let serial = 0;

function checkOptions(options: DeviceOptions | undefined): Required<DeviceOptions> {
  const syscall = "device_create";
  const o = objectArg<DeviceOptions>(options ?? {}, syscall, "the options");
  const name = stringArg(o.name ?? `device-${++serial}`, syscall, "name");
  const r = {
    name, coherent: o.coherent ?? true,
    jobTimeoutMs: intArg(o.jobTimeoutMs ?? 5000, syscall, "jobTimeoutMs", { min: 1, max: 2 ** 31 - 1 }),
    ringEntries: intArg(o.ringEntries ?? DEFAULT_RING_ENTRIES, syscall, "ringEntries", { min: 1, max: 2 ** 31 }),
    iovaBytes: intArg(o.iovaBytes ?? 256 * 1024 * 1024, syscall, "iovaBytes"),
    // Every wait is bounded: a submit into a full ring gives up after this (0: EAGAIN at once, Infinity: EINVAL).
    submitTimeoutMs: finiteTimeoutArg(o.submitTimeoutMs ?? 1000, syscall, "submitTimeoutMs"),
    iommu: objectArg<Required<DeviceOptions>["iommu"]>(o.iommu ?? { mode: "strict", iotlbInvalidateNs: IOTLB_INVALIDATE_NS }, syscall, "iommu"),
  };
  if (typeof r.coherent !== "boolean") throw new DmaBufError("EINVAL", syscall, `coherent ${describe(r.coherent)} is not a boolean`);
  if (new TextEncoder().encode(name).length > 31) throw new DmaBufError("EINVAL", "device_create", `device name '${name}' is longer than 31 bytes`);
  return r;
}

/** Starts a device worker; resolves once its loop runs. */
export function spawnDevice(lab: LabCore, options: DeviceOptions = {}): Promise<Device> {
  // The lab's other workers may all be unref'd: the process stays up until this settles.
  return keepingAlive(startDevice(lab, options));
}

async function startDevice(lab: LabCore, options: DeviceOptions): Promise<Device> {
  installErrorTransfer();
  const o = checkOptions(options);
  const { sync } = lab;
  const ring = JobRing.create(sync, o.ringEntries);
  let iommu: Iommu | undefined;
  let timeline: Timeline | undefined;
  let record: DeviceRecord | undefined;
  try {
    iommu = Iommu.create(sync, { ...o.iommu, iovaBytes: o.iovaBytes });
    timeline = sync.timeline({ driver: "dmabuf-lab-device", name: o.name });
    record = DeviceRecord.create(sync, { name: o.name, ring, iommu: iommu.offset, timeline: timeline.offset, timeoutMs: o.jobTimeoutMs, coherent: o.coherent });
  } catch (e) {
    timeline?.unref();
    iommu?.destroy();
    ring.destroy();
    throw e;
  }
  let worker: SpawnedWorker | undefined;
  let device: Device | undefined;
  let watched = false;
  try {
    const watchdog = await watchdogFor(lab);
    watched = true;
    worker = await spawnWorker(shippedWorker("device"), { handle: lab.share(), device: record.offset, name: o.name }, o.name);
    const api = Comlink.wrap<DeviceApi>(worker.endpoint);
    device = new Device(lab, record, iommu, timeline, worker, api, o);
    await device.call(() => api.hello());
    await keepingAlive(watchdog.api.watch(record.offset));
    worker.unref();
    return device;
  } catch (e) {
    if (device !== undefined) {
      await device.kill(); // releases everything, the watchdog reference included
    } else {
      record.fail(FAIL_EIO);
      await worker?.terminate();
      record.reap((job) => freeJob(sync, job));
      iommu.destroy();
      timeline.unref();
      if (watched) await releaseWatchdog(lab);
    }
    throw e;
  }
}

export class Device {
  readonly name: string;
  private readonly buffers = new Map<number, DeviceBuffer>();
  private reaped: Promise<void> | undefined;
  /** Set once the worker has detached everything itself (a clean stop). */
  private detachedByWorker = false;
  /** shutdown() is under way: it reaps when the worker has stopped. */
  private stopping = false;
  /** The counters when the device was reaped: its records are gone from then on. */
  private final: (DeviceStats & { faultsIommu: number }) | undefined;
  private readonly gone: Promise<never>;

  /** @internal spawnDevice() makes devices. */
  constructor(
    readonly lab: LabCore,
    readonly record: DeviceRecord,
    private readonly iommu: Iommu,
    private readonly timeline: Timeline,
    private readonly worker: SpawnedWorker,
    private readonly api: Comlink.Remote<DeviceApi>,
    private readonly options: Required<DeviceOptions>,
  ) {
    this.name = options.name;
    // The worker ending (exit, a top-level throw, terminate) fails every
    // pending fence with EIO at once, then the device is reaped.
    this.gone = worker.exited.then(({ error }) => {
      record.fail(FAIL_EIO);
      if (!this.stopping) void this.reap();
      throw new DmaBufError("ENODEV", "device", `device ${this.name} is gone` + (error ? `: ${String(error)}` : ""));
    });
    this.gone.catch(() => {});
    // A device failed by the watchdog is reaped once this thread sees it.
    void this.whenDead().then(() => { if (!this.stopping) return this.reap(); });
  }

  /** Resolves when the device is dead (failed or stopped). */
  async whenDead(): Promise<void> {
    const i32 = this.lab.sync.i32;
    const i = this.record.stateIndex;
    for (;;) {
      if (this.final !== undefined) return;
      const s = Atomics.load(i32, i);
      if (s === DEV_DEAD) return;
      const r = Atomics.waitAsync(i32, i, s, 1000);
      if (r.async) await r.value;
    }
  }

  get alive(): boolean {
    return this.final === undefined && this.record.state !== DEV_DEAD;
  }

  /** A control-plane call that fails with ENODEV instead of hanging when the worker is gone. */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    return keepingAlive(Promise.race([fn(), this.gone]));
  }

  private requireAlive(syscall: string): void {
    if (!this.alive) {
      const errno = this.stats().error;
      throw new DmaBufError("ENODEV", syscall, `device ${this.name} is dead (${errno === 0 ? "stopped" : `errno ${-errno}`})`);
    }
  }

  // ---- control plane -------------------------------------------------------

  /** dma_buf_attach of a DmaBufRecord, or of anything that holds one as `record` (a DmaBuf of src/api/). */
  async attach(buf: { readonly record: DmaBufRecord } | DmaBufRecord, options: { dynamic?: boolean } = {}): Promise<DeviceBuffer> {
    this.requireAlive("dma_buf_attach");
    const record = buf instanceof DmaBufRecord ? buf : typeof buf === "object" && buf !== null && "record" in buf ? buf.record : undefined;
    if (!(record instanceof DmaBufRecord)) throw new DmaBufError("EINVAL", "dma_buf_attach", `${describe(buf)} is not a DmaBuf or a DmaBufRecord`);
    const dynamic = objectArg<{ dynamic?: boolean }>(options, "dma_buf_attach", "the options").dynamic ?? false;
    if (typeof dynamic !== "boolean") throw new DmaBufError("EINVAL", "dma_buf_attach", `dynamic ${describe(dynamic)} is not a boolean`);
    const r = await this.call(() => this.api.attach(record.offset, dynamic));
    const b: DeviceBuffer = { device: this, attachment: r.attachment, iova: r.iova, bytes: r.bytes, dynamic, buffer: record.get() };
    this.buffers.set(r.attachment, b);
    return b;
  }

  async detach(b: DeviceBuffer): Promise<void> {
    if (!this.owns(b)) throw new DmaBufError("EINVAL", "dma_buf_detach", `not an attachment of device ${this.name}`);
    await this.call(() => this.api.detach(b.attachment));
    this.buffers.delete(b.attachment);
    b.buffer.put();
  }

  /** dma_buf_map_attachment: the sg table of device addresses. */
  async map(b: DeviceBuffer): Promise<{ iova: number; bytes: number; entries: { dmaAddress: number; length: number }[] }> {
    if (!this.owns(b)) throw new DmaBufError("EINVAL", "dma_buf_map_attachment", `not an attachment of device ${this.name}`);
    return this.call(() => this.api.map(b.attachment));
  }

  /** Whether b is one of this device's attachments (any value may be asked about). */
  private owns(b: unknown): b is DeviceBuffer {
    return typeof b === "object" && b !== null && this.buffers.get((b as DeviceBuffer).attachment) === b;
  }

  loadKernel(url: string | URL): Promise<number> {
    return this.call(() => this.api.loadKernel(String(url)));
  }

  /** Attachments whose buffer the exporter revoked (move_notify seen by the device). */
  async revoked(): Promise<DeviceBuffer[]> {
    const offsets = await this.call(() => this.api.revoked());
    return offsets.map((o) => this.buffers.get(o)).filter((b): b is DeviceBuffer => b !== undefined);
  }

  /** The counters (for a reaped device, as they were when it was reaped). */
  stats(): DeviceStats & { faultsIommu: number } {
    return this.final ?? { ...this.record.stats(), faultsIommu: this.iommu.faults().count };
  }

  /**
   * Stops the device: with drain (default) after its queued jobs, else at
   * once, their fences signalled ECANCELED. Then the worker ends and
   * everything it held is released. Bounded: a drain that has not finished
   * after `timeoutMs` (default 10 s; a job waiting on an in-fence that never
   * signals, say) ends as kill() does, every pending fence signalled EIO.
   */
  async shutdown(options: { drain?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const o = objectArg<{ drain?: boolean; timeoutMs?: number }>(options, "device_shutdown", "the options");
    const timeoutMs = finiteTimeoutArg(o.timeoutMs ?? SHUTDOWN_TIMEOUT_MS, "device_shutdown", "timeoutMs");
    this.stopping = true;
    if (this.alive) {
      const stopped = this.call(() => this.api.stop(o.drain ?? true)).then(() => { this.detachedByWorker = true; });
      try {
        if (!(await settlesWithin(stopped, timeoutMs))) await this.cancel(stopped);
      } catch (e) {
        if (!(e instanceof DmaBufError && e.code === "ENODEV")) {
          // The worker could not stop cleanly: it is ended all the same.
          await this.reap();
          throw e;
        }
      }
    }
    await this.reap();
  }

  /**
   * Ends the device at once, like a reset: every pending fence is signalled
   * with EIO, the worker is terminated, its attachments and records are
   * released. Idempotent; shutdown() is the orderly way.
   */
  async kill(): Promise<void> {
    if (this.alive && !this.stopping) {
      this.stopping = true;
      await this.cancel();
    }
    return this.reap();
  }

  /**
   * Fails every pending job (EIO); a live loop then stops at a safe point
   * (between jobs: nothing half freed) and detaches, answering `stopped` (a
   * stop(false) call unless one is under way); a hung one is terminated by
   * reap() after the grace time.
   */
  private async cancel(stopped?: Promise<void>): Promise<void> {
    this.record.fail(FAIL_EIO);
    const stop = stopped ?? this.call(() => this.api.stop(false)).then(() => { this.detachedByWorker = true; });
    await settlesWithin(stop, KILL_GRACE_MS).catch(() => {});
  }

  private reap(): Promise<void> {
    this.reaped ??= (async () => {
      this.record.fail(FAIL_EIO);
      await releaseWatchdog(this.lab);
      this.api[Comlink.releaseProxy]();
      await this.worker.terminate();
      // No DMA runs after terminate: a revoke waiting on a job cut short returns.
      this.iommu.dmaStopped();
      const { sync } = this.lab;
      // The worker is gone: its trace chunks can go to other threads.
      sync.trace.releaseContext(this.record.context);
      this.final = this.stats();
      this.record.reap((job) => freeJob(sync, job));
      // Attachments the worker did not detach (it died): released here.
      for (const b of this.buffers.values()) {
        if (!this.detachedByWorker && dmaBufAttachments(b.buffer).includes(b.attachment)) {
          DmaBufAttachment.at(sync, b.attachment).detach();
        }
        b.buffer.put();
      }
      this.buffers.clear();
      this.iommu.destroy();
      this.timeline.unref();
    })();
    return this.reaped;
  }

  // ---- data plane ----------------------------------------------------------

  /** Trace events of a submission (src/trace): the job, and the ring's depth after the push. */
  private traceSubmit(job: Job, fence: Fence, deps: number): void {
    const { trace, u32 } = this.lab.sync;
    const t = trace.now();
    const context = this.record.context;
    const seqno = u32[(fence.offset + FENCE_SEQNO) >>> 2];
    if (trace.on(CAT_JOB)) trace.record(T_JOB_SUBMIT, jobKinds[job.kind], t, t, context, seqno, deps);
    if (trace.on(CAT_RING)) trace.record(T_RING_PUSH, 0, t, t, context, this.record.ring.pending, seqno);
  }

  /** Submits a job; returns its out-fence (owned: put() it). */
  submit(job: Job): Fence {
    this.requireAlive(SUBMIT);
    const { sync } = this.lab;
    objectArg(job, SUBMIT, "the job");
    const uses = this.uses(job);
    const kernelId = job.kind === "kernel" ? job.kernel : 0;
    const args: unknown = job.kind === "kernel" ? job.args ?? [] : job.kind === "fill" ? [job.value] : [];
    if (job.kind === "fill") intArg(job.value, SUBMIT, "fill value", { max: 255 });
    if (!Array.isArray(args) || args.length > JOB_MAX_ARGS) {
      throw new DmaBufError("EINVAL", SUBMIT, `kernel arguments ${describe(args)}: at most ${JOB_MAX_ARGS} u32s`);
    }
    args.forEach((a, i) => intArg(a, SUBMIT, `kernel argument ${i}`, { max: 0xffffffff }));
    if (job.kind === "kernel") intArg(kernelId, SUBMIT, "kernel id (one loadKernel() returned)", { min: 1, max: 0xffffffff });
    const given: unknown = job.inFences ?? [];
    if (!Array.isArray(given)) throw new DmaBufError("EINVAL", SUBMIT, `inFences ${describe(given)} is not an array`);
    const inFences = (given as unknown[]).map((f, i) => {
      if (f instanceof SyncFile) return f.fence;
      if (f instanceof Fence) return f;
      throw new DmaBufError("EINVAL", SUBMIT, `in-fence ${i} is neither a Fence nor a SyncFile`);
    });

    const fence = this.timeline.createFence();
    const deps: Fence[] = [];
    let published = false;
    let rec = 0;
    let written = false;
    try {
      // The record first: the sync heap exhausted is ENOMEM with nothing published.
      rec = sync.allocRecord(RecordType.job, JOB_RECORD_SIZE, SUBMIT);
      // Implicit sync, once per buffer: a buffer written by any range waits like a writer.
      const perBuffer = new Map<number, { buf: DmaBufRecord; write: boolean }>();
      for (const u of uses) {
        const e = perBuffer.get(u.buffer.buffer.offset);
        const write = (u.access & IOMMU_WRITE) !== 0;
        if (e === undefined) perBuffer.set(u.buffer.buffer.offset, { buf: u.buffer.buffer, write });
        else e.write ||= write;
      }
      for (const { buf, write } of job.bypassFences === true ? [] : perBuffer.values()) {
        // Failed writers count too, signalled or not: the job inherits their error.
        deps.push(...buf.resv.publishAccess(fence, write, false, SUBMIT, true));
        published = true;
      }
      for (const f of inFences) if (!f.isSignaled()) deps.push(f.get());
      // One dependency: the fence itself, several: a dma_fence_array of them.
      if (deps.length > 1) {
        const array = sync.array(deps);
        for (const d of deps.splice(0)) d.put();
        deps.push(array);
      }
      this.writeJob(rec, job, uses, fence, deps[0] ?? null, kernelId, args);
      written = true;
      // The device's edge from this submission (src/sanitize), before the push hands the job over.
      if (sync.san.on) sync.san.publishJob(rec);
      this.record.ring.push(rec, this.options.submitTimeoutMs, () => this.record.state === DEV_DEAD);
      // Failed just before the push: fail() signalled the jobs queued then, not this one.
      if (this.record.state === DEV_DEAD) fence.checkAndSignal(FAIL_EIO);
      if (sync.trace.on(CAT_JOB | CAT_RING)) this.traceSubmit(job, fence, deps[0]?.leaves().length ?? 0);
      return fence;
    } catch (e) {
      if (written) freeJob(sync, rec);
      else if (rec !== 0) sync.freeRecord(rec, RecordType.job);
      // A fence already published (the ring full, say) must not stay pending.
      if (published) fence.checkAndSignal(fenceError(e));
      fence.put();
      throw e;
    } finally {
      for (const d of deps) d.put();
    }
  }

  /** The job's ranges as device addresses, validated (EINVAL names the bad one). */
  private uses(job: Job): Use[] {
    const range = (r: Range, access: number, what: string): Use => {
      objectArg(r, SUBMIT, what);
      const b = "attachment" in r ? r : r.buffer;
      if (!this.owns(b)) throw new DmaBufError("EINVAL", SUBMIT, `${what} is not a buffer attached to device ${this.name}`);
      const offset = "attachment" in r ? 0 : intArg(r.offset ?? 0, SUBMIT, `${what} offset`);
      const length = "attachment" in r ? b.bytes : intArg(r.length ?? b.bytes - offset, SUBMIT, `${what} length`);
      if (offset + length > b.bytes) {
        throw new DmaBufError("EINVAL", SUBMIT, `${what}: range ${offset}+${length} is outside the ${b.bytes}-byte buffer`);
      }
      return { iova: b.iova + offset, len: length, access, buffer: b, offset };
    };
    switch (job.kind) {
      case "nop": return [];
      case "copy": return [range(job.src, jobAccessBits.read, "src"), range(job.dst, jobAccessBits.write, "dst")];
      case "fill": return [range(job.dst, jobAccessBits.write, "dst")];
      case "checksum": {
        const uses = [range(job.src, jobAccessBits.read, "src"), range(job.dst, jobAccessBits.write, "dst")];
        if (uses[1].len < 4) throw new DmaBufError("EINVAL", SUBMIT, `checksum dst of ${uses[1].len} bytes cannot hold 4`);
        return uses;
      }
      case "kernel": {
        if (!Array.isArray(job.buffers) || job.buffers.length > JOB_MAX_BUFS) {
          throw new DmaBufError("EINVAL", SUBMIT, `a kernel job takes at most ${JOB_MAX_BUFS} buffers`);
        }
        return job.buffers.map((entry, i) => {
          const b = objectArg<{ range: Range; access: unknown }>(entry, SUBMIT, `buffer ${i}`);
          const access = typeof b.access === "string" && Object.hasOwn(jobAccessBits, b.access) ? jobAccessBits[b.access as keyof typeof jobAccessBits] : 0;
          if (access === 0) throw new DmaBufError("EINVAL", SUBMIT, `buffer ${i}: access ${describe(b.access)} is not read, write or read-write`);
          return range(b.range, access, `buffer ${i}`);
        });
      }
      default:
        throw new DmaBufError("EINVAL", SUBMIT, `job kind ${describe((job as { kind: unknown }).kind)} is not nop, copy, fill, checksum or kernel`);
    }
  }

  /** Fills the job record at `rec`; it takes references on the fence and the dependency. */
  private writeJob(rec: number, job: Job, uses: Use[], fence: Fence, dep: Fence | null, kernelId: number, args: number[]): void {
    const { sync } = this.lab;
    sync.ref(fence.offset);
    if (dep !== null) sync.ref(dep.offset);
    JobRecord.encode(sync.arena, rec, {
      kind: jobKinds[job.kind], fence: fence.offset, dep: dep?.offset ?? 0, kernelId, args, submitNs: sync.clock.nowNs(),
      buffers: uses.map((u) => ({ iova: u.iova, len: u.len, access: u.access, buffer: u.buffer.buffer.offset, offset: u.offset })),
    });
  }
}

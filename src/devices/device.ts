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
import * as Comlink from "comlink";
import { DmaBufError } from "../errno.js";
import { describe, finiteTimeoutArg, intArg, objectArg, stringArg } from "../args.js";
import { DmaBufAttachment, dmaBufAttachments } from "../dmabuf/attachment.js";
import type { LabCore } from "../lab.js";
import type { Fence } from "../sync/fence.js";
import { sendFlight, type ShareToken } from "../sync/flight.js";
import type { Timeline } from "../sync/timeline.js";
import { installErrorTransfer } from "../thread/errors.js";
import { shippedWorker } from "../thread/host.js";
import { keepingAlive } from "../memory/futex.js";
import { spawnWorker, type SpawnedWorker } from "../thread/spawn.js";
import { DEV_DEAD, DeviceRecord, FAIL_EIO, type DeviceStats } from "./device_record.js";
import { Iommu, IOTLB_INVALIDATE_NS, type IommuOptions } from "../dmabuf/iommu.js";
import type { DeviceApi } from "./protocol.js";
import { releaseWatchdog, watchdogFor } from "./watchdog.js";
import { DEFAULT_RING_ENTRIES, JobRing } from "./ring.js";
import { JobSubmitter, SUBMIT, bufferRecord, type BufferLike, type DeviceBuffer, type Job } from "./submit.js";

export interface DeviceOptions {
  /** The device's name (its timeline's, its worker's and its trace track's; at most 31 bytes of UTF-8; default device-N). */
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

export type { DeviceBuffer, InFence, Job, Range } from "./submit.js";

/** Device.attach's options. */
export interface AttachOptions {
  /**
   * A dynamic attachment (dma_buf_dynamic_attach): mapped under the
   * buffer's resv lock and told of the exporter's revocation (move_notify);
   * default false, a static attachment pinned and mapped at attach.
   */
  dynamic?: boolean;
}

/** Device.shutdown's options. */
export interface ShutdownOptions {
  /** Run the queued jobs first (default true); false: fail them with ECANCELED at once. */
  drain?: boolean;
  /** How long the drain may take (ms, finite; default 10 s): past it the device is killed, every pending fence EIO. */
  timeoutMs?: number;
}

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
    record = DeviceRecord.create(sync, {
      name: o.name, ring, iommu: iommu.offset, timeline: timeline.offset, timeoutMs: o.jobTimeoutMs, coherent: o.coherent, submitTimeoutMs: o.submitTimeoutMs,
    });
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
    device = new Device(lab, record, iommu, worker, api, o);
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
      iommu.destroy();
      record.put();
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
  private readonly submitter: JobSubmitter;

  /** @internal spawnDevice() makes devices. */
  constructor(
    readonly lab: LabCore,
    readonly record: DeviceRecord,
    private readonly iommu: Iommu,
    private readonly worker: SpawnedWorker,
    private readonly api: Comlink.Remote<DeviceApi>,
    options: Required<DeviceOptions>,
  ) {
    this.name = options.name;
    this.submitter = new JobSubmitter(lab.sync, record, this.name, (b): b is DeviceBuffer => this.owns(b));
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
  async attach(buf: BufferLike, options: AttachOptions = {}): Promise<DeviceBuffer> {
    this.requireAlive("dma_buf_attach");
    const record = bufferRecord(buf, "dma_buf_attach");
    const dynamic = objectArg<AttachOptions>(options, "dma_buf_attach", "the options").dynamic ?? false;
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
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    const o = objectArg<ShutdownOptions>(options, "device_shutdown", "the options");
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
      // Attachments the worker did not detach (it died): released here.
      for (const b of this.buffers.values()) {
        if (!this.detachedByWorker && dmaBufAttachments(b.buffer).includes(b.attachment)) {
          DmaBufAttachment.at(sync, b.attachment).detach();
        }
        b.buffer.put();
      }
      this.buffers.clear();
      this.iommu.destroy();
      // The records (ring, timeline, jobs left) go with the last reference: handles may hold some.
      this.record.put();
    })();
    return this.reaped;
  }

  // ---- data plane ----------------------------------------------------------

  /** Submits a job (src/devices/submit.ts); returns its out-fence (owned: put() it). */
  submit(job: Job): Fence {
    this.requireAlive(SUBMIT);
    return this.submitter.submit(job);
  }

  // ---- sharing -------------------------------------------------------------

  /**
   * A token for another thread: `lab.import(token)` (or
   * `DeviceHandle.import(lab, token)`) there gives a DeviceHandle that
   * submits jobs to this device over the buffers it attached. The token
   * holds a reference on the device's records until imported or dropped
   * (src/api/share.ts). ENODEV for a dead device.
   */
  share(): ShareToken<"device"> {
    this.requireAlive("device_share");
    return sendFlight(this.lab.sync, "device", this.record.offset, () => this.record.get("device_share"), { name: this.name });
  }
}

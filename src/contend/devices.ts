/*
 * The device side of the contention experiment. ContendDevice is the
 * host's (the driver's) side of one device worker: it spawns it, attaches
 * the buffers, and either gives a DeviceDriver over the Device (submitters
 * "host": the host thread drives every device) or the data for a submitter
 * thread of the device's own (submitters "own": workers/contend-submitter.ts
 * imports the device's token as a DeviceHandle and builds the same
 * DeviceDriver over it), so that the host thread does not cap the devices.
 *
 * DeviceDriver: start(k) submits job (device + k)
 * of the mix and answers its finish: wait for its out-fence with the run's
 * wait strategy (timed per job kind), check the result, count it.
 * driveDevices() starts a job on every device before it finishes any, so the devices work
 * at once (the host waits for one while the others run). Buffer src = (device + k) mod n, of the shared buffers or, for
 * the jobs that sharedAt() keeps off them (sharing < 1), of the device's
 * own two.
 *
 *   copy      the blitter: buffer src -> buffer src + 1 (whole buffers), a
 *             device writer and reader at once; it moves whole images
 *             unchanged, which the CPU readers of the destination check
 *   fill      buffer src <- one byte value (1..255): a device writer whose
 *             result is whole as a fill (stamp.ts)
 *   checksum  a device reader that checks what it read: it copies buffer
 *             src into the device's private snapshot, then xxHashes the
 *             snapshot's payload into its result buffer (two jobs, in ring
 *             order); the host reads the snapshot's header and the result:
 *             a stamp's checksum or the checksum of the fill the header
 *             claims must be the device's, else the device read a torn
 *             buffer (a tear of role device)
 * With bypassFences every job is submitted with bypassFences: true.
 *
 * Contract: ContendDevice.create() attaches the shared buffers (its own
 * references); shutdown() stops the device at once and frees the snapshot
 * and result buffers, whatever happened before. A DeviceDriver's release()
 * frees its host memory. A job that fails or whose fence times out throws
 * a DmaBufError (ETIMEDOUT or the fence's error).
 */
import { DmaBufError } from "../errno.js";
import type { Lab } from "../api/lab.js";
import type { Device } from "../devices/device.js";
import type { DeviceHandle } from "../devices/handle.js";
import type { DeviceBuffer, Job, SubmitTarget } from "../devices/submit.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import type { ShareToken } from "../sync/flight.js";
import { nowMs } from "../memory/futex.js";
import { preadv, type WaitStep } from "../dmabuf/rw.js";
import type { Fence } from "../sync/fence.js";
import { iovaBytes, sharedAt, type JobKind, type ResolvedOptions } from "./options.js";
import { HEADER_BYTES, headerOf } from "./stamp.js";
import { waitStep } from "./wait.js";

export interface JobCounters {
  ops: number;
  bytes: number;
  tears: number;
  /** Every wait for this kind's out-fences, ns. */
  waitsNs: number[];
}

/** A buffer of the device's own, with its attachment. */
interface Own {
  buf: DmaBufRecord;
  dev: DeviceBuffer;
}

/** The buffers a DeviceDriver submits over, as its device sees them. */
interface DriverBuffers {
  shared: DeviceBuffer[];
  /** The device's own two (sharing < 1). */
  mine: DeviceBuffer[];
  /** The checksum job's snapshot and result buffers (with the checksum job). */
  own: Own[];
}

/** What a device's own submitter thread is given (workers/contend-submitter.ts). */
export interface SubmitterData {
  device: ShareToken<"device">;
  /** Record offsets of the shared buffers, the device's own two, and the snapshot and result buffers. */
  shared: number[];
  mine: number[];
  own: number[];
}

/** One kind's counters as a submitter thread reports them. */
export interface SubmitterCounts {
  kind: JobKind;
  ops: number;
  bytes: number;
  tears: number;
  waitsNs: Float64Array;
}

/** The host's side of one device: spawned, with the run's buffers attached. */
export class ContendDevice {
  private readonly buffers: DriverBuffers = { shared: [], mine: [], own: [] };

  private constructor(readonly device: Device) {}

  static async create(lab: Lab, index: number, options: ResolvedOptions, buffers: DmaBufRecord[], own: DmaBufRecord[]): Promise<ContendDevice> {
    const device = await lab.spawnDevice({ name: `contend-${index}`, coherent: options.coherent, iovaBytes: iovaBytes(options) });
    const d = new ContendDevice(device);
    try {
      for (const b of buffers) d.buffers.shared.push(await device.attach(b));
      for (const b of own) d.buffers.mine.push(await device.attach(b));
      if (options.jobs.includes("checksum")) {
        for (const [heap, size] of [[options.heap, options.size], ["system", 4096]] as const) {
          const buf = lab.exporter(heap).alloc(size);
          d.buffers.own.push({ buf, dev: await device.attach(buf) });
        }
      }
    } catch (e) {
      await d.shutdown();
      throw e;
    }
    return d;
  }

  /** A driver over the Device itself, for the host thread. */
  driver(lab: Lab, index: number, options: ResolvedOptions): DeviceDriver {
    return new DeviceDriver(lab, index, options, this.device, this.buffers);
  }

  /** What a submitter thread of the device's own needs: a token of the device and the buffers' records. */
  submitterData(): SubmitterData {
    const { shared, mine, own } = this.buffers;
    return {
      device: this.device.share(),
      shared: shared.map((b) => b.buffer.offset), mine: mine.map((b) => b.buffer.offset), own: own.map((o) => o.buf.offset),
    };
  }

  /** Stops the device at once and frees the snapshot and result buffers. */
  async shutdown(): Promise<void> {
    try {
      await this.device.shutdown({ drain: false });
    } finally {
      for (const o of this.buffers.own.splice(0)) o.buf.put();
    }
  }
}

/**
 * A submitter thread's driver: the handle's view of the buffers that
 * `data` names (the records are attached afresh in this thread; the
 * DeviceBuffers are the driver's attachments, found by handle.attached()).
 * release() puts the records and closes nothing else: the handle is the
 * caller's.
 */
export function driverOverHandle(lab: Lab, index: number, options: ResolvedOptions, handle: DeviceHandle, data: SubmitterData): DeviceDriver {
  const views: DmaBufRecord[] = [];
  const take = (offset: number): { buf: DmaBufRecord; dev: DeviceBuffer } => {
    const buf = DmaBufRecord.attach(lab.sync, offset);
    views.push(buf);
    return { buf, dev: handle.attached(buf) };
  };
  try {
    const buffers: DriverBuffers = {
      shared: data.shared.map((o) => take(o).dev), mine: data.mine.map((o) => take(o).dev), own: data.own.map(take),
    };
    return new DeviceDriver(lab, index, options, handle, buffers, () => { for (const v of views) v.put(); });
  } catch (e) {
    for (const v of views) v.put();
    throw e;
  }
}

export class DeviceDriver {
  readonly counters = new Map<JobKind, JobCounters & { wait: WaitStep }>();
  private readonly fillSums = new Map<number, number>();
  private readonly shared: DeviceBuffer[];
  /** The device's own two buffers (sharing < 1), attached. */
  private readonly mine: DeviceBuffer[];
  private readonly own: Own[];
  /** Host memory (arena): the snapshot's header, the result, a scratch for fill checksums. */
  private readonly header: Uint8Array;
  private readonly sum: Uint8Array;
  private readonly scratch: Uint8Array;

  /** @internal ContendDevice.driver() and driverOverHandle() make drivers; `done` runs at release(). */
  constructor(private readonly lab: Lab, readonly index: number, private readonly options: ResolvedOptions,
    private readonly device: SubmitTarget, buffers: DriverBuffers, private readonly done = (): void => {}) {
    for (const kind of options.jobs) {
      const waitsNs: number[] = [];
      this.counters.set(kind, { ops: 0, bytes: 0, tears: 0, waitsNs, wait: waitStep(options.wait, (ns) => waitsNs.push(ns)).step });
    }
    ({ shared: this.shared, mine: this.mine, own: this.own } = buffers);
    this.header = lab.alloc(HEADER_BYTES);
    this.sum = lab.alloc(4);
    this.scratch = lab.alloc(options.size);
  }

  /** Jobs done and torn so far, over every kind. */
  totals(): { ops: number; tears: number } {
    let ops = 0;
    let tears = 0;
    for (const c of this.counters.values()) { ops += c.ops; tears += c.tears; }
    return { ops, tears };
  }

  /** The counters, for a submitter thread's answer. */
  report(): SubmitterCounts[] {
    return [...this.counters].map(([kind, c]) => ({ kind, ops: c.ops, bytes: c.bytes, tears: c.tears, waitsNs: Float64Array.from(c.waitsNs) }));
  }

  /** Frees the driver's host memory (and what driverOverHandle() attached). */
  release(): void {
    for (const v of [this.header, this.sum, this.scratch]) this.lab.free(v);
    this.done();
  }

  private submit(job: Job): Fence {
    return this.device.submit({ ...job, bypassFences: this.options.bypassFences });
  }

  /** Waits for a job's fence (timed by `wait`; without it, only looks) and checks it. */
  private async finish(fence: Fence, wait?: WaitStep): Promise<void> {
    try {
      if ((wait === undefined ? fence.wait(0) : await wait(fence, this.options.timeoutMs)) === 0) {
        throw new DmaBufError("ETIMEDOUT", "contend", `device ${this.device.name}: a job did not complete within ${this.options.timeoutMs} ms`);
      }
      if (fence.status < 0) {
        throw new DmaBufError(DmaBufError.codeOf(fence.status), "contend", `device ${this.device.name}: a job failed (${fence.status})`);
      }
    } finally {
      fence.put();
    }
  }

  /**
   * Submits the k-th job of the mix and answers how to finish it: wait for
   * it, check it and count it. The host submits one job to every device
   * before it waits for any (run.ts), so that the devices run at once
   * instead of in turn.
   */
  start(k: number): () => Promise<void> {
    const { jobs, size } = this.options;
    const kind = jobs[(this.index + k) % jobs.length];
    const c = this.counters.get(kind)!;
    const { wait } = c;
    const list = sharedAt(this.options.sharing, k) ? this.shared : this.mine;
    const n = list.length;
    const src = list[(this.index + k) % n];
    const count = (torn: boolean) => {
      c.ops++;
      c.bytes += size;
      if (torn) c.tears++;
    };
    switch (kind) {
      case "copy": {
        const fence = this.submit({ kind: "copy", src, dst: list[(this.index + k + 1) % n] });
        return async () => { await this.finish(fence, wait); count(false); };
      }
      case "fill": {
        const fence = this.submit({ kind: "fill", dst: src, value: 1 + ((this.index + k) % 255) });
        return async () => { await this.finish(fence, wait); count(false); };
      }
      case "checksum": {
        const [snap, result] = this.own;
        const copy = this.submit({ kind: "copy", src, dst: snap.dev });
        let sum: Fence;
        try {
          sum = this.submit({ kind: "checksum", src: { buffer: snap.dev, offset: HEADER_BYTES }, dst: result.dev });
        } catch (e) {
          copy.put();
          throw e;
        }
        return async () => {
          try {
            await this.finish(sum, wait);
          } catch (e) {
            copy.put();
            throw e;
          }
          // The ring runs in order: the copy is done when the checksum is.
          await this.finish(copy);
          count(!this.checkSnapshot(snap.buf, result.buf));
        };
      }
    }
  }

  /** Whether the device's checksum of the snapshot is the one its header claims. */
  private checkSnapshot(snap: DmaBufRecord, result: DmaBufRecord): boolean {
    preadv(snap, [this.header], 0);
    preadv(result, [this.sum], 0);
    const h = headerOf(this.header);
    const got = new DataView(this.sum.buffer, this.sum.byteOffset, 4).getUint32(0, true);
    if (h.kind === "stamp") return got === h.checksum;
    if (h.kind === "fill") return got === this.fillSum(h.value);
    return false;
  }

  /** xxHash32 of a payload that is all `value`. */
  private fillSum(value: number): number {
    let s = this.fillSums.get(value);
    if (s === undefined) {
      const { engine } = this.lab;
      const { byteOffset, byteLength } = this.scratch;
      engine.fill(byteOffset, value, byteLength);
      s = engine.checksumRange(byteOffset + HEADER_BYTES, byteLength - HEADER_BYTES);
      this.fillSums.set(value, s);
    }
    return s;
  }
}

/**
 * Drives devices: job k on every device, then each waited for, until the
 * duration is over (it runs the whole mix at least once) or the iterations
 * are done; `tick` after each round. The host runs it over every device
 * (submitters "host"), a submitter thread over its own one.
 */
export async function driveDevices(o: ResolvedOptions, drivers: DeviceDriver[], t0: number, tick: () => void = () => {}): Promise<void> {
  const end = o.durationMs === null ? Infinity : t0 + o.durationMs;
  // Each round submits one job to every device before waiting for any, so
  // that the devices run at once: the thread does not make them take turns.
  for (let k = 0; o.iterations === null ? k < o.jobs.length || nowMs() < end : k < o.iterations; k++) {
    const finishes: (() => Promise<void>)[] = [];
    let failure: unknown;
    for (const d of drivers) {
      try {
        finishes.push(d.start(k));
      } catch (e) {
        failure = e;
        break;
      }
    }
    // Every started job is finished (its fence put) before a failure is thrown.
    for (const f of finishes) {
      try {
        await f();
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== undefined) throw failure;
    tick();
  }
}

/*
 * The device side of the contention experiment: one DeviceDriver per device
 * worker, driven from the host thread. start(k) submits job (device + k)
 * of the mix and answers its finish: wait for its out-fence with the run's
 * wait strategy (timed per job kind), check the result, count it. The host
 * starts a job on every device before it finishes any, so the devices work
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
 * Contract: create() attaches the shared buffers (its own references);
 * shutdown() stops the device at once and frees the snapshot and result
 * buffers, whatever happened before. A job that fails or whose fence times
 * out throws a DmaBufError (ETIMEDOUT or the fence's error).
 */
import { DmaBufError } from "../errno.js";
import type { Lab } from "../api/lab.js";
import type { Device, DeviceBuffer, Job } from "../devices/device.js";
import type { DmaBufRecord } from "../dmabuf/dma_buf.js";
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

export class DeviceDriver {
  readonly counters = new Map<JobKind, JobCounters & { wait: WaitStep }>();
  private readonly fillSums = new Map<number, number>();
  private readonly shared: DeviceBuffer[] = [];
  /** The device's own two buffers (sharing < 1), attached. */
  private readonly mine: DeviceBuffer[] = [];
  private readonly own: Own[] = [];
  /** Host memory (arena): the snapshot's header, the result, a scratch for fill checksums. */
  private readonly header: Uint8Array;
  private readonly sum: Uint8Array;
  private readonly scratch: Uint8Array;

  private constructor(private readonly lab: Lab, readonly index: number, private readonly options: ResolvedOptions,
    private readonly device: Device) {
    for (const kind of options.jobs) {
      const waitsNs: number[] = [];
      this.counters.set(kind, { ops: 0, bytes: 0, tears: 0, waitsNs, wait: waitStep(options.wait, (ns) => waitsNs.push(ns)).step });
    }
    this.header = lab.alloc(HEADER_BYTES);
    this.sum = lab.alloc(4);
    this.scratch = lab.alloc(options.size);
  }

  static async create(lab: Lab, index: number, options: ResolvedOptions, buffers: DmaBufRecord[], own: DmaBufRecord[]): Promise<DeviceDriver> {
    const device = await lab.spawnDevice({ name: `contend-${index}`, coherent: options.coherent, iovaBytes: iovaBytes(options) });
    const d = new DeviceDriver(lab, index, options, device);
    try {
      for (const b of buffers) d.shared.push(await device.attach(b));
      for (const b of own) d.mine.push(await device.attach(b));
      if (options.jobs.includes("checksum")) {
        for (const [heap, size] of [[options.heap, options.size], ["system", 4096]] as const) {
          const buf = lab.exporter(heap).alloc(size);
          d.own.push({ buf, dev: await device.attach(buf) });
        }
      }
    } catch (e) {
      await d.shutdown();
      throw e;
    }
    return d;
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

  /** Stops the device at once and frees what this driver holds. */
  async shutdown(): Promise<void> {
    try {
      await this.device.shutdown({ drain: false });
    } finally {
      for (const o of this.own.splice(0)) o.buf.put();
      for (const v of [this.header, this.sum, this.scratch]) this.lab.free(v);
    }
  }
}

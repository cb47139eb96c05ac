/*
 * A device seen from another thread: DeviceHandle, what `lab.import(token)`
 * gives for a `device.share()` token (THE SHARING RULE, src/sync/flight.ts).
 *
 * The spawning thread's Device is the driver: it attaches buffers, loads
 * kernels, stops and kills the device. A handle is a submitter: it looks up
 * the attachments the driver made (`attached(buf)`: the buffer's mapped
 * attachment through this device's IOMMU, ENOENT when there is none) and
 * submits jobs over them from its own thread, with the same rules and
 * fences as the Device's submit (src/devices/submit.ts), so that each
 * device can be fed by a thread of its own. Jobs, fences and completions
 * still go through the ring and the arena; no message reaches the device.
 *
 * Lifetime: the handle holds a reference on the device record (DEV_REFS),
 * which keeps the ring, the timeline and the record alive after the device
 * dies, so a submission racing with the death fails cleanly (ENODEV, or its
 * fence signalled EIO) instead of touching freed memory. close() drops the
 * DeviceBuffers it looked up and the reference; every method of a closed
 * handle is EBADF, close() itself is idempotent.
 *
 * Checks (the token and the attachments come from other threads): the token
 * like every token (its flight record, its kind, a live device record at its
 * offset: EINVAL/EBADF); a DeviceBuffer is submitted only if this handle
 * looked it up and its attachment still maps the same buffer at the same
 * device address through this device's IOMMU (EINVAL otherwise: a detached
 * buffer is never written through a stale address).
 */
import { DmaBufError } from "../errno.js";
import { dmaBufAttachmentVia, isAttachmentOf } from "../dmabuf/attachment.js";
import type { LabCore } from "../lab.js";
import type { Fence } from "../sync/fence.js";
import { receiveFlight, sendFlight, type ShareToken } from "../sync/flight.js";
import { DEV_DEAD, DeviceRecord, type DeviceStats } from "./device_record.js";
import { JobSubmitter, bufferRecord, type BufferLike, type DeviceBuffer, type Job, type SubmitTarget } from "./submit.js";

/**
 * A device seen from another thread (`lab.import(device.share())`): looks up
 * the attachments the spawning thread made and submits jobs over them.
 */
export class DeviceHandle implements SubmitTarget {
  /** The device's name, as given to `lab.spawnDevice`. */
  readonly name: string;
  private readonly submitter: JobSubmitter;
  /** The DeviceBuffers attached() gave, by attachment record. */
  private readonly buffers = new Map<number, DeviceBuffer>();
  private closed = false;

  /**
   * Use `lab.import(token)` or `DeviceHandle.import(lab, token)`.
   * @param lab The lab of this thread.
   */
  private constructor(readonly lab: LabCore, private readonly record: DeviceRecord) {
    this.name = record.name;
    this.submitter = new JobSubmitter(lab.sync, record, this.name, (b): b is DeviceBuffer => this.owns(b));
  }

  /** This thread's handle for a device.share() token (EINVAL/EBADF for a bad or spent token). */
  static import(lab: LabCore, token: ShareToken<"device">): DeviceHandle {
    return receiveFlight(lab.sync, token, "device", "device_import", (t) => new DeviceHandle(lab, new DeviceRecord(lab.sync, t.offset)));
  }

  private check(syscall: string): void {
    if (this.closed) throw new DmaBufError("EBADF", syscall, `the handle of device ${this.name} is closed`);
  }

  private requireAlive(syscall: string): void {
    this.check(syscall);
    if (this.record.state === DEV_DEAD) throw new DmaBufError("ENODEV", syscall, `device ${this.name} is dead`);
  }

  /** Whether the device still runs (false once it died or this handle closed). */
  get alive(): boolean {
    return !this.closed && this.record.state !== DEV_DEAD;
  }

  /**
   * The buffer as this device sees it: the attachment its driver made and
   * mapped (ENOENT when the buffer is not attached to this device). The
   * DeviceBuffer holds a reference on the buffer until release() or close().
   */
  attached(buf: BufferLike): DeviceBuffer {
    const syscall = "dma_buf_attachment";
    this.requireAlive(syscall);
    const record = bufferRecord(buf, syscall);
    const ref = dmaBufAttachmentVia(record, this.record.iommu);
    if (ref === undefined) throw new DmaBufError("ENOENT", syscall, `the dma-buf at ${record.offset} is not attached to device ${this.name}`);
    const known = this.buffers.get(ref.attachment);
    if (known !== undefined && known.iova === ref.iova && known.buffer.offset === record.offset) return known;
    if (known !== undefined) this.release(known);
    const b: DeviceBuffer = { device: this, ...ref, buffer: record.get() };
    this.buffers.set(ref.attachment, b);
    return b;
  }

  /** Drops a DeviceBuffer attached() gave (EINVAL for any other value). */
  release(b: DeviceBuffer): void {
    this.check("dma_buf_attachment_release");
    if (typeof b !== "object" || b === null || this.buffers.get(b.attachment) !== b) {
      throw new DmaBufError("EINVAL", "dma_buf_attachment_release", `not a buffer of this handle of device ${this.name}`);
    }
    this.buffers.delete(b.attachment);
    b.buffer.put();
  }

  /** Whether b is one of this handle's DeviceBuffers whose attachment still maps it where it did. */
  private owns(b: unknown): b is DeviceBuffer {
    if (typeof b !== "object" || b === null) return false;
    const d = b as DeviceBuffer;
    return this.buffers.get(d.attachment) === d && isAttachmentOf(this.lab.sync, d, d.buffer, this.record.iommu);
  }

  /** Submits a job to the device (src/devices/submit.ts); returns its out-fence (owned: put() it). */
  submit(job: Job): Fence {
    this.check("drm_sched_job_submit");
    return this.submitter.submit(job);
  }

  /** The device's counters. */
  stats(): DeviceStats {
    this.check("device_stats");
    return this.record.stats();
  }

  /** Another token for the same device (ENODEV once it died). */
  share(): ShareToken<"device"> {
    this.requireAlive("device_share");
    return sendFlight(this.lab.sync, "device", this.record.offset, () => this.record.get("device_share"), { name: this.name });
  }

  /** Drops the DeviceBuffers and the reference on the device's records; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const b of this.buffers.values()) b.buffer.put();
    this.buffers.clear();
    this.record.put();
  }

  /** close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/*
 * Job submission: what a Device (the spawning thread's driver handle) and a
 * DeviceHandle (any other thread's, src/devices/handle.ts) share. Both hold
 * a JobSubmitter over the device record; it never waits for the device.
 *
 * submit(job), in any thread that holds a reference on the device record:
 * validates the job entirely first (EINVAL, nothing changed); creates the
 * out-fence on the device's timeline; for each buffer the job uses, in one
 * resv critical section each (Resv.publishAccess), collects the fences
 * implicit sync makes it wait for (a written buffer waits like a writer, a
 * read one like a reader) and publishes the out-fence with usage WRITE or
 * READ; adds the explicit in-fences (Fence or SyncFile); folds the
 * dependencies into one fence (an array when several) and pushes the job
 * record (allocated before anything is published) into the ring. A failure
 * after a fence was published (a full ring: EAGAIN) signals the out-fence
 * with that error, so nothing waits on a job that never runs. A device
 * that died before the push: ENODEV, or (died during it) the fence
 * signalled EIO.
 *
 * Which buffers a submitter may name is its owner's rule (`owns`): the
 * Device's own attachments, or for a handle the attachments it looked up
 * and that still map the same buffer at the same device address.
 */
import { RecordType } from "../memory/record.js";
import { DmaBufError, fenceError } from "../errno.js";
import { describe, intArg, objectArg } from "../args.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { IOMMU_WRITE } from "../dmabuf/iommu.js";
import { Fence } from "../sync/fence.js";
import { SyncFile } from "../sync/sync_file.js";
import { Timeline } from "../sync/timeline.js";
import type { Sync } from "../sync/sync.js";
import { FENCE_SEQNO } from "../engine/abi.js";
import { CAT_JOB, CAT_RING, T_JOB_SUBMIT, T_RING_PUSH } from "../trace/events.js";
import { DEV_DEAD, freeJob, FAIL_EIO, type DeviceRecord } from "./device_record.js";
import { JOB_MAX_ARGS, JOB_MAX_BUFS, JOB_RECORD_SIZE, JobRecord, jobAccessBits, jobKinds, type JobAccess } from "./job.js";

export const SUBMIT = "drm_sched_job_submit";

/** Whoever a DeviceBuffer belongs to: a Device or a DeviceHandle. */
export interface SubmitTarget {
  /** The device's name, as given to `lab.spawnDevice` (unique in the lab). */
  readonly name: string;
  /**
   * Validates `job` entirely (EINVAL, nothing changed), publishes its
   * out-fence on the buffers it uses and pushes it into the device's ring;
   * returns the out-fence, signalled when the job is done (with the job's
   * error if it failed). EAGAIN: the ring is full; ENODEV: the device died.
   */
  submit(job: Job): Fence;
}

/** A buffer as one device sees it: an attachment and its device-address range. */
export interface DeviceBuffer {
  /** The Device or DeviceHandle it was attached or looked up through: only that one submits it. */
  readonly device: SubmitTarget;
  /** The attachment record (src/dmabuf/attachment.ts) in the arena. */
  readonly attachment: number;
  /** The buffer's first device address in the device's IOMMU. */
  readonly iova: number;
  /** The buffer's size: the mapping covers [iova, iova + bytes). */
  readonly bytes: number;
  /** Whether it is a dynamic attachment (mapped under the resv lock, told of revocation by move_notify). */
  readonly dynamic: boolean;
  /** The buffer (a view owned by this DeviceBuffer until detach or release). */
  readonly buffer: DmaBufRecord;
}

/** A range of a DeviceBuffer: all of it by default. */
export type Range = DeviceBuffer | {
  /** The attached buffer the range lies in (from `device.attach` or `handle.attached`). */
  buffer: DeviceBuffer;
  /** Bytes from the buffer's start (default 0). */
  offset?: number;
  /** Bytes (default: to the buffer's end). */
  length?: number;
};

/** An explicit in-fence: a job waits for it besides its buffers' implicit fences. */
export type InFence = Fence | SyncFile;

/**
 * What every job may add: explicit in-fences (waited for besides the
 * implicit ones), and `bypassFences`, which skips implicit sync entirely
 * (the job neither waits on its buffers' fences nor publishes its own: the
 * contention experiment's switch to show what goes wrong without them).
 */
export interface JobCommon {
  /** Fences the job waits for besides its buffers' implicit ones. */
  inFences?: InFence[];
  /** Skip implicit sync: neither wait on the buffers' fences nor publish this job's. */
  bypassFences?: boolean;
}

export type Job = JobCommon & (
  | {
    /** Does nothing: its fence signals once its dependencies have. */
    kind: "nop";
  }
  | {
    /** Copies `src` into `dst` (as many bytes as the shorter of the two holds). */
    kind: "copy";
    /** The range read (the job waits like a reader on its buffer's fences). */
    src: Range;
    /** The range written (the job waits like a writer). */
    dst: Range;
  }
  | {
    /** Sets every byte of `dst` to `value`. */
    kind: "fill";
    /** The range written. */
    dst: Range;
    /** The byte value: its low 8 bits (an unsigned 32-bit integer, EINVAL otherwise). */
    value: number;
  }
  | {
    /** Hashes `src` (xxHash32) and writes the 32-bit digest, little-endian, into the first 4 bytes of `dst`. */
    kind: "checksum";
    /** The range summed. */
    src: Range;
    /** Where the sum goes: at least 4 bytes (EINVAL otherwise). */
    dst: Range;
  }
  | {
    /** Runs a kernel loaded by `device.loadKernel`. */
    kind: "kernel";
    /** The kernel id `device.loadKernel` returned (none loaded: the job fails, its fence signalled EINVAL). */
    kernel: number;
    /** The buffers the kernel may touch, at most JOB_MAX_BUFS (EINVAL otherwise), in the kernel's argument order. */
    buffers: {
      /** The range the kernel sees as this buffer. */
      range: Range;
      /** What the kernel does to it: "read", "write" or "read-write" (its implicit-sync role and its IOMMU permission). */
      access: JobAccess;
    }[];
    /** Up to JOB_MAX_ARGS unsigned 32-bit integers passed to the kernel (default none). */
    args?: number[];
  });

interface Use { iova: number; len: number; access: number; buffer: DeviceBuffer; offset: number }

/** A dma-buf as the device APIs take it: a DmaBufRecord, or anything that holds one (a DmaBuf of the object API). */
export type BufferLike = DmaBufRecord | {
  /** The buffer's record (DmaBuf.record). */
  readonly record: DmaBufRecord;
};

/** The DmaBufRecord of a DmaBufRecord, or of anything that holds one as `record` (a DmaBuf of src/api/); else EINVAL. */
export function bufferRecord(buf: unknown, syscall: string): DmaBufRecord {
  const record = buf instanceof DmaBufRecord ? buf
    : typeof buf === "object" && buf !== null && "record" in buf ? (buf as { record: unknown }).record : undefined;
  if (!(record instanceof DmaBufRecord)) throw new DmaBufError("EINVAL", syscall, `${describe(buf)} is not a DmaBuf or a DmaBufRecord`);
  return record;
}

export class JobSubmitter {
  private readonly timeline: Timeline;

  /**
   * `owns(b)`: whether b is a DeviceBuffer this submitter may name (any
   * value may be asked about).
   */
  constructor(
    private readonly sync: Sync,
    private readonly record: DeviceRecord,
    private readonly name: string,
    private readonly owns: (b: unknown) => b is DeviceBuffer,
  ) {
    this.timeline = new Timeline(sync, record.timeline);
  }

  /** Submits a job; returns its out-fence (owned: put() it). */
  submit(job: Job): Fence {
    const { sync, record } = this;
    if (record.state === DEV_DEAD) {
      const errno = record.errno;
      throw new DmaBufError("ENODEV", SUBMIT, `device ${this.name} is dead (${errno === 0 ? "stopped" : `errno ${-errno}`})`);
    }
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
      // Publish: the ring's HEAD store (seq-cst) hands the record, written above, to the device.
      record.ring.push(rec, record.submitTimeoutMs, () => record.state === DEV_DEAD);
      // Failed just before the push: fail() signalled the jobs queued then, not this one.
      if (record.state === DEV_DEAD) fence.checkAndSignal(FAIL_EIO);
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

  /** Trace events of a submission (src/trace): the job, and the ring's depth after the push. */
  private traceSubmit(job: Job, fence: Fence, deps: number): void {
    const { trace, u32 } = this.sync;
    const t = trace.now();
    const context = this.record.context;
    const seqno = u32[(fence.offset + FENCE_SEQNO) >>> 2];
    if (trace.on(CAT_JOB)) trace.record(T_JOB_SUBMIT, jobKinds[job.kind], t, t, context, seqno, deps);
    if (trace.on(CAT_RING)) trace.record(T_RING_PUSH, 0, t, t, context, this.record.ring.pending, seqno);
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
    const { sync } = this;
    sync.ref(fence.offset);
    if (dep !== null) sync.ref(dep.offset);
    JobRecord.encode(sync.arena, rec, {
      kind: jobKinds[job.kind], fence: fence.offset, dep: dep?.offset ?? 0, kernelId, args, submitNs: sync.clock.nowNs(),
      buffers: uses.map((u) => ({ iova: u.iova, len: u.len, access: u.access, buffer: u.buffer.buffer.offset, offset: u.offset })),
    });
  }
}

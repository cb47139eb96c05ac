/*
 * Device jobs: the record a submitter writes and a device executes, and
 * JobRecord, its one codec: encode() is the only writer of a job record and
 * JobRecord's accessors the only readers (the host's submit, the device
 * runtime, the device record's fail and reap paths).
 *
 * A job is a record in the sync heap (JOB_*, 128 bytes); the ring carries
 * its offset. The submitter fills every word before pushing it (the ring's
 * HEAD store publishes the record); after that only the device touches it,
 * until the device (or, for a dead device, the host that reaps it) frees it.
 *
 *   JOB_KIND     u32: JOB_NOP, JOB_COPY, JOB_FILL, JOB_CHECKSUM, JOB_KERNEL
 *   JOB_FENCE    u32: the out-fence (the job holds one reference)
 *   JOB_DEP      u32: the one fence to wait for first (a fence array when
 *                there were several dependencies; a reference), 0 for none
 *   JOB_NBUFS    u32: buffer ranges used (0..JOB_MAX_BUFS)
 *   JOB_KERNEL_ID u32: JOB_KERNEL: the kernel the device loaded
 *   JOB_NARGS    u32, JOB_ARGS u32[JOB_MAX_ARGS]: JOB_FILL: the byte value;
 *                JOB_KERNEL: the kernel's arguments
 *   JOB_SUBMIT_NS f64: lab clock at submission (latency statistics)
 *   JOB_BUFS     {iova, len, access, buffer, offset}[JOB_MAX_BUFS]: device
 *                address ranges; access is IOMMU_READ and/or IOMMU_WRITE;
 *                buffer and offset name the dma-buf record and the range's
 *                start in it, for a coherent device's cache snooping (the
 *                DMA itself goes by iova only)
 *
 * Buffer roles: COPY reads buffer 0 and writes buffer 1 (the shorter
 * length); FILL writes buffer 0; CHECKSUM reads buffer 0 and writes the
 * xxHash32 of it, little-endian, into the first 4 bytes of buffer 1;
 * KERNEL gives the kernel every range with the access it declared.
 *
 * Access: the host API names it "read", "write" or "read-write"; the record
 * holds IOMMU_READ | IOMMU_WRITE bits. jobAccessBits and jobAccessName are
 * the one mapping between the two.
 */
import { DmaBufError } from "../errno.js";
import { IOMMU_READ, IOMMU_WRITE } from "../dmabuf/iommu.js";
import type { Arena } from "../memory/arena.js";
import { RecordView } from "../memory/record.js";

const JOB_KIND = 0;
const JOB_FENCE = 4;
const JOB_DEP = 8;
const JOB_NBUFS = 12;
const JOB_KERNEL_ID = 16;
const JOB_NARGS = 20;
const JOB_ARGS = 24;
export const JOB_MAX_ARGS = 4;
const JOB_SUBMIT_NS = 40;
const JOB_BUFS = 48;
const JOB_BUF_SIZE = 20;
const JOB_BUF_IOVA = 0;
const JOB_BUF_LEN = 4;
const JOB_BUF_ACCESS = 8;
const JOB_BUF_BUFFER = 12;
const JOB_BUF_OFFSET = 16;
export const JOB_MAX_BUFS = 4;
export const JOB_RECORD_SIZE = JOB_BUFS + JOB_MAX_BUFS * JOB_BUF_SIZE;

export const JOB_NOP = 0;
export const JOB_COPY = 1;
export const JOB_FILL = 2;
export const JOB_CHECKSUM = 3;
export const JOB_KERNEL = 4;

/** JOB_KIND by the kind's name in the host API. */
export const jobKinds = { nop: JOB_NOP, copy: JOB_COPY, fill: JOB_FILL, checksum: JOB_CHECKSUM, kernel: JOB_KERNEL } as const;

/** How a job uses a buffer range, as the host API names it. */
export type JobAccess = "read" | "write" | "read-write";

/** The one map from access names to the IOMMU bits a job record holds. */
export const jobAccessBits: Readonly<Record<JobAccess, number>> = { read: IOMMU_READ, write: IOMMU_WRITE, "read-write": IOMMU_READ | IOMMU_WRITE };

/** The access name of a job record's bits (the inverse of jobAccessBits). */
export function jobAccessName(bits: number): JobAccess {
  for (const [name, b] of Object.entries(jobAccessBits)) if (b === bits) return name as JobAccess;
  throw new DmaBufError("EINVAL", "device_run_job", `access bits ${bits} name no access`);
}

/** One buffer range of a job. */
export interface JobBuffer {
  /** Device address of the range's first byte. */
  iova: number;
  len: number;
  /** IOMMU_READ and/or IOMMU_WRITE. */
  access: number;
  /** The dma-buf record, and the range's start in it (for snooping). */
  buffer: number;
  offset: number;
}

/** Everything a job record holds. */
export interface JobFields {
  kind: number;
  /** The out-fence's record (the job holds a reference, taken by the caller). */
  fence: number;
  /** The dependency's record, 0 for none (a reference, taken by the caller). */
  dep: number;
  kernelId: number;
  args: readonly number[];
  submitNs: number;
  buffers: readonly JobBuffer[];
}

/** A view of the job record at `offset`. */
export class JobRecord {
  private readonly rec: RecordView;

  constructor(arena: Arena, readonly offset: number) {
    this.rec = new RecordView(arena, offset);
  }

  /** Writes every word of a fresh (zeroed) job record; the ring's HEAD store publishes it. */
  static encode(arena: Arena, offset: number, job: JobFields): JobRecord {
    if (job.args.length > JOB_MAX_ARGS || job.buffers.length > JOB_MAX_BUFS) {
      throw new DmaBufError("EINVAL", "device_submit", `a job holds at most ${JOB_MAX_ARGS} arguments and ${JOB_MAX_BUFS} buffers`);
    }
    const r = new RecordView(arena, offset);
    r.setWord(JOB_KIND, job.kind);
    r.setWord(JOB_FENCE, job.fence);
    r.setWord(JOB_DEP, job.dep);
    r.setWord(JOB_KERNEL_ID, job.kernelId);
    r.setWord(JOB_NARGS, job.args.length);
    job.args.forEach((a, i) => r.setWord(JOB_ARGS + 4 * i, a));
    r.setF64(JOB_SUBMIT_NS, job.submitNs);
    r.setWord(JOB_NBUFS, job.buffers.length);
    job.buffers.forEach((b, i) => {
      const at = JOB_BUFS + i * JOB_BUF_SIZE;
      r.setWord(at + JOB_BUF_IOVA, b.iova);
      r.setWord(at + JOB_BUF_LEN, b.len);
      r.setWord(at + JOB_BUF_ACCESS, b.access);
      r.setWord(at + JOB_BUF_BUFFER, b.buffer);
      r.setWord(at + JOB_BUF_OFFSET, b.offset);
    });
    return new JobRecord(arena, offset);
  }

  get kind(): number {
    return this.rec.word(JOB_KIND);
  }

  get fence(): number {
    return this.rec.word(JOB_FENCE);
  }

  get dep(): number {
    return this.rec.word(JOB_DEP);
  }

  get kernelId(): number {
    return this.rec.word(JOB_KERNEL_ID);
  }

  get submitNs(): number {
    return this.rec.f64(JOB_SUBMIT_NS);
  }

  args(): number[] {
    return Array.from({ length: Math.min(this.rec.word(JOB_NARGS), JOB_MAX_ARGS) }, (_, i) => this.rec.word(JOB_ARGS + 4 * i));
  }

  /** Buffer ranges used (at most JOB_MAX_BUFS). */
  get nbufs(): number {
    return Math.min(this.rec.word(JOB_NBUFS), JOB_MAX_BUFS);
  }

  buffer(i: number): JobBuffer {
    const at = JOB_BUFS + i * JOB_BUF_SIZE;
    return {
      iova: this.rec.word(at + JOB_BUF_IOVA),
      len: this.rec.word(at + JOB_BUF_LEN),
      access: this.rec.word(at + JOB_BUF_ACCESS),
      buffer: this.rec.word(at + JOB_BUF_BUFFER),
      offset: this.rec.word(at + JOB_BUF_OFFSET),
    };
  }

  buffers(): JobBuffer[] {
    return Array.from({ length: this.nbufs }, (_, i) => this.buffer(i));
  }

  /** Everything, decoded (what encode() wrote). */
  decode(): JobFields {
    return { kind: this.kind, fence: this.fence, dep: this.dep, kernelId: this.kernelId, args: this.args(), submitNs: this.submitNs, buffers: this.buffers() };
  }
}

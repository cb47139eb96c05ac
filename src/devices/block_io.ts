/*
 * The storage device's record and its I/O path, usable from any thread that
 * has the lab (the submitting thread, or an io_uring SQ thread): a request
 * becomes device jobs whose DMA goes through the device's IOMMU, and the
 * device worker's kernel (workers/kernel-nvme.ts) moves the bytes between
 * the backing file and the pages the IOMMU translates to, with no copy in
 * between (fs.readSync into a view of the shared memory).
 *
 * Record (STOR_*, in the sync heap; src/devices/storage.ts makes it):
 *   STOR_MAGIC       STOR_MAGIC_VALUE while the device can take I/O; 0 once
 *                    it is shut down (I/O then fails with ENODEV)
 *   STOR_REFS        i32: the StorageDevice's reference plus one per open
 *                    file of it; the last frees the record
 *   STOR_DEVICE      the device record (device_record.ts)
 *   STOR_HOST_FD     the backing file's host fd (Node's fds belong to the
 *                    process: the device worker uses the same number)
 *   STOR_BLOCK_SIZE  the logical block size, 512 or 4096
 *   STOR_KERNEL      the id of the nvme kernel the device worker loaded
 *   STOR_SUBMIT_MS   how long a submission may wait for room in the job ring
 *   STOR_FAILED      set once the device crashed (before its records go):
 *                    I/O then fails with EIO
 *   STOR_CAPACITY    f64: bytes, a whole number of blocks
 *
 * blockRw(lab, storage, write, pos, segments): per-I/O mapping (the path of
 * a plain read into user memory): the pages under the segments are mapped
 * into the device's IOMMU (iommu_map, as dma_map_sg does for each request),
 * one job per JOB_MAX_BUFS segments is pushed, and finish() unmaps them once
 * every job's fence has signalled (with the IOTLB cost of the IOMMU's mode;
 * a passthrough IOMMU maps nothing: the segments' 1:1 device addresses). The I/O is clipped at the
 * device's end (a read there returns 0; a write there is ENOSPC). A dead
 * device is EIO; its queued jobs' fences carry its error to the CQEs.
 */
import { DmaBufError, hex } from "../errno.js";
import type { LabCore } from "../lab.js";
import { RecordType } from "../memory/record.js";
import { PAGE_SIZE } from "../memory/layout.js";
import { IOMMU_READ, IOMMU_WRITE, Iommu } from "../dmabuf/iommu.js";
import type { Fence } from "../sync/fence.js";
import { Timeline } from "../sync/timeline.js";
import { DEV_DEAD, DeviceRecord, freeJob } from "./device_record.js";
import { JOB_KERNEL, JOB_MAX_BUFS, JOB_RECORD_SIZE, JobRecord, jobAccessBits } from "./job.js";

export const STOR_MAGIC = 0;
export const STOR_REFS = 4;
export const STOR_DEVICE = 8;
export const STOR_HOST_FD = 12;
export const STOR_BLOCK_SIZE = 16;
export const STOR_KERNEL = 20;
export const STOR_SUBMIT_MS = 24;
export const STOR_FAILED = 28;
export const STOR_CAPACITY = 32;
export const STOR_RECORD_SIZE = 40;
export const STOR_MAGIC_VALUE = 0x454d564e; // the bytes "NVME"

/** The nvme kernel's arguments: [host fd, position low, position high, NVME_READ or NVME_WRITE]. */
export const NVME_READ = 0;
export const NVME_WRITE = 1;

/** A device-address range of one job. */
/** A device-address range of one job; `buffer` and `offset` name the dma-buf range it is (0 for user memory). */
export interface DeviceRange { iova: number; len: number; buffer?: number; offset?: number }

/** What an I/O in flight holds: its jobs' fences; finish() releases them and the per-I/O mapping, and gives res. */
export interface BlockPending {
  fences: Fence[];
  finish(): number;
}

export class StorageRecord {
  private readonly u32: Uint32Array;

  constructor(readonly lab: LabCore, readonly offset: number, syscall = "blkdev") {
    const { sync } = lab;
    sync.arena.records.check(offset, RecordType.storage, syscall, "EINVAL");
    if (Atomics.load(sync.u32, (offset + STOR_MAGIC) >>> 2) !== STOR_MAGIC_VALUE) {
      throw new DmaBufError("ENODEV", syscall, `no storage device at ${hex(offset)} (shut down?)`);
    }
    this.u32 = sync.u32;
    if (Atomics.load(this.u32, (offset + STOR_FAILED) >>> 2) !== 0) throw new DmaBufError("EIO", syscall, "the storage device crashed");
  }

  word(off: number): number {
    return this.u32[(this.offset + off) >>> 2];
  }

  get blockSize(): number { return this.word(STOR_BLOCK_SIZE); }
  get capacity(): number { return this.lab.sync.f64[(this.offset + STOR_CAPACITY) >>> 3]; }
  get device(): DeviceRecord { return new DeviceRecord(this.lab.sync, this.word(STOR_DEVICE)); }
  get iommu(): Iommu { return new Iommu(this.lab.sync, this.device.iommu); }
}

/**
 * Pushes one nvme kernel job over `ranges` (device addresses) at file
 * position `pos`; returns its out-fence (owned). No implicit sync: the I/O
 * adds no fence to any buffer's reservation object (the series' rule).
 */
export function pushNvmeJob(st: StorageRecord, write: boolean, pos: number, ranges: readonly DeviceRange[], hostFd = st.word(STOR_HOST_FD)): Fence {
  const { sync } = st.lab;
  const dev = st.device;
  if (dev.state === DEV_DEAD) throw new DmaBufError("EIO", "nvme_queue_rq", `storage device ${dev.name} is dead`);
  const timeline = new Timeline(sync, dev.timeline);
  const rec = sync.allocRecord(RecordType.job, JOB_RECORD_SIZE, "nvme_queue_rq");
  let fence: Fence | undefined;
  try {
    fence = timeline.createFence();
  } catch (e) {
    sync.freeRecord(rec, RecordType.job);
    throw e;
  }
  sync.ref(fence.offset);
  JobRecord.encode(sync.arena, rec, {
    kind: JOB_KERNEL, fence: fence.offset, dep: 0, kernelId: st.word(STOR_KERNEL),
    args: [hostFd, pos % 2 ** 32, Math.floor(pos / 2 ** 32), write ? NVME_WRITE : NVME_READ],
    submitNs: sync.clock.nowNs(),
    // A read from the file writes memory; a write to the file reads it.
    buffers: ranges.map((r) => ({ iova: r.iova, len: r.len, access: write ? jobAccessBits.read : jobAccessBits.write, buffer: r.buffer ?? 0, offset: r.offset ?? 0 })),
  });
  // The device's edge from this submission (src/sanitize), before the push hands the job over.
  if (sync.san.on) sync.san.publishJob(rec);
  try {
    dev.ring.push(rec, st.word(STOR_SUBMIT_MS));
  } catch (e) {
    freeJob(sync, rec); // drops the job's fence reference
    fence.checkAndSignal(-(e as DmaBufError).errno);
    fence.put();
    throw e;
  }
  return fence;
}

/** Clips `len` bytes at `pos` to the device's end: the bytes to move (0 for a read at the end); ENOSPC for a write there. */
export function clipToDevice(st: StorageRecord, write: boolean, pos: number, len: number): number {
  const cap = st.capacity;
  if (pos >= cap) {
    if (write && len > 0) throw new DmaBufError("ENOSPC", "blkdev_write_iter", `offset ${pos} is at or past the device's ${cap} bytes`);
    return 0;
  }
  return Math.min(len, cap - pos);
}

/**
 * Pushes jobs of up to JOB_MAX_BUFS ranges each, the file position advancing
 * with them; returns their fences. A failure after some were pushed waits
 * for those (bounded by the device's watchdog) before it throws.
 */
export function pushRanges(st: StorageRecord, write: boolean, pos: number, ranges: readonly DeviceRange[], hostFd = st.word(STOR_HOST_FD)): Fence[] {
  const fences: Fence[] = [];
  try {
    for (let i = 0; i < ranges.length; i += JOB_MAX_BUFS) {
      const part = ranges.slice(i, i + JOB_MAX_BUFS);
      fences.push(pushNvmeJob(st, write, pos, part, hostFd));
      pos += part.reduce((s, r) => s + r.len, 0);
    }
  } catch (e) {
    for (const f of fences) { f.wait(); f.put(); }
    throw e;
  }
  return fences;
}

/** The first error of the fences, else `bytes`; puts them. */
export function settle(fences: Fence[], bytes: number): number {
  let res = bytes;
  for (const f of fences) {
    const s = f.status;
    if (s < 0 && res >= 0) res = s;
    f.put();
  }
  return res;
}

/** A read or write of `segs` (arena memory) at `pos` through a per-I/O IOMMU mapping. */
export function blockRw(lab: LabCore, storage: number, write: boolean, pos: number, segs: readonly { addr: number; len: number }[]): BlockPending {
  const st = new StorageRecord(lab, storage, write ? "blkdev_write_iter" : "blkdev_read_iter");
  let left = clipToDevice(st, write, pos, segs.reduce((s, g) => s + g.len, 0));
  const clipped: { addr: number; len: number }[] = [];
  for (const g of segs) {
    if (left === 0) break;
    const len = Math.min(g.len, left);
    if (len > 0) clipped.push({ addr: g.addr, len });
    left -= len;
  }
  return mappedRw(st, write, pos, clipped);
}

/**
 * The device's DMA over `segs` (arena memory) at `pos` of a file, through a
 * per-I/O IOMMU mapping: the backing file's (blockRw), or with `hostFd`
 * another host file the device moves bytes for (a regular file's direct
 * I/O into a dma-buf: src/uapi/dma_buf_rw_file.ts). Nothing is clipped.
 */
export function mappedRw(st: StorageRecord, write: boolean, pos: number, clipped: readonly { addr: number; len: number }[], hostFd = st.word(STOR_HOST_FD)): BlockPending {
  const bytes = clipped.reduce((s, g) => s + g.len, 0);
  if (bytes === 0) return { fences: [], finish: () => 0 };
  const iommu = st.iommu;
  if (iommu.mode === "passthrough") {
    // Physical addresses: the 1:1 window, no mapping per I/O and nothing to invalidate.
    const fences = pushRanges(st, write, pos, clipped.map((g) => ({ iova: iommu.dmaAddress(g.addr), len: g.len })), hostFd);
    return { fences, finish: () => settle(fences, bytes) };
  }
  // dma_map_sg: the pages under the segments, in order, at one IOVA range.
  const runs = clipped.map((g) => {
    const first = Math.floor(g.addr / PAGE_SIZE) * PAGE_SIZE;
    return { addr: first, len: Math.ceil((g.addr + g.len) / PAGE_SIZE) * PAGE_SIZE - first };
  });
  const mapped = runs.reduce((s, r) => s + r.len, 0);
  const iova = iommu.map(runs, write ? IOMMU_READ : IOMMU_WRITE);
  const ranges: DeviceRange[] = [];
  let at = iova;
  clipped.forEach((g, i) => {
    ranges.push({ iova: at + (g.addr - runs[i].addr), len: g.len });
    at += runs[i].len;
  });
  let fences: Fence[];
  try {
    fences = pushRanges(st, write, pos, ranges, hostFd);
  } catch (e) {
    iommu.unmap(iova, mapped);
    throw e;
  }
  return {
    fences,
    finish: () => {
      // dma_unmap_sg once the device is done with every job.
      iommu.unmap(iova, mapped);
      return settle(fences, bytes);
    },
  };
}

/** One more reference on a storage record (an open file of it). */
export function storageRef(lab: LabCore, offset: number): void {
  new StorageRecord(lab, offset, "blkdev_open");
  Atomics.add(lab.sync.i32, (offset + STOR_REFS) >>> 2, 1);
}

/** Drops a reference; the last frees the record. */
export function storageUnref(lab: LabCore, offset: number): void {
  if (Atomics.sub(lab.sync.i32, (offset + STOR_REFS) >>> 2, 1) === 1) lab.sync.freeRecord(offset, RecordType.storage);
}

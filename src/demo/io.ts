/*
 * `dmabuf-lab demo io`: a file streamed into a ring of dma-bufs by a
 * storage device and consumed by a gpu device, ordered by fences, each block
 * checked.
 *
 *   storage   spawnStorage (src/devices/storage.ts): a device worker whose
 *             DMA reads the backing file straight into the dma-buf's pages
 *             through its IOMMU. The file is the device's temporary backing
 *             file, filled with a pattern first, or the caller's `file`.
 *   ring      `buffers` dma-bufs of `blockBytes`, registered with the
 *             io_uring as fixed buffers with the storage device as their
 *             target (IORING_REGISTER_BUFFERS_UPDATE with
 *             IORING_RSRC_F_EXTENDED_UPDATE: the io_uring dma-buf series'
 *             registration); block k goes into slot k mod buffers by
 *             READ_FIXED (O_DIRECT, whole logical blocks)
 *   gpu       lab.spawnDevice: when block k's completion is reaped, a
 *             checksum job (xxHash32) reads its slot and writes the sum into
 *             a result dma-buf at 4 x slot
 *   ordering  the series' rule: fixed I/O adds no fence to the dma-buf, so
 *             the host orders the stages itself, with the fences it has:
 *             the gpu job is submitted once the read's CQE is seen (the
 *             read's DMA is over), and slot i is read into again only after
 *             the gpu job's out-fence of its previous block signalled; the
 *             result is read through the read/write path, whose implicit
 *             sync waits for the gpu's write fence
 *   check     every block's sum against xxHash32 of the file's block,
 *             computed on the CPU from the file itself
 *
 * runIoDemo(lab, options, onProgress) returns the figures (MB/s, per-stage
 * latency from the fences' timestamps and the host's clock, the verdict)
 * and prints nothing. It runs in Node and in browsers (the storage device's
 * file is then an Origin Private File System file, src/devices/backing.ts;
 * `file` is Node only), blocking where the thread may, else polling between
 * turns of the event loop.
 * Contract: options are checked before anything starts (EINVAL; EFAULT for
 * a file name that is not a string; the file's own errors: ENOENT, EACCES,
 * EISDIR for one that is not a regular file, EINVAL for one too short);
 * however it
 * ends, the ring, the registered buffers, the devices and the file
 * descriptors are released (the temporary file is removed by the storage
 * device). Every wait is bounded by timeoutMs.
 */
import { DmaBufError } from "../errno.js";
import { intArg, objectArg, stringArg } from "../args.js";
import { hostError, hostFs } from "../host_fs.js";
import type { Lab } from "../api/lab.js";
import type { DmaBuf } from "../api/dma_buf.js";
import { spawnStorage, type StorageDevice } from "../devices/storage.js";
import type { Device } from "../devices/device.js";
import type { DeviceBuffer } from "../devices/submit.js";
import type { DmaBufFile } from "../uapi/dma_buf_file.js";
import type { Fence } from "../sync/fence.js";
import { Process } from "../uapi/process.js";
import { DMA_HEAP_IOCTL_ALLOC, O_DIRECT, O_RDONLY, O_RDWR } from "../uapi/uapi.js";
import { IORING_REGISTER_BUFFERS_UPDATE, IORING_RSRC_F_EXTENDED_UPDATE } from "../io_uring/io_uring.js";
import {
  io_uring_cqe_seen, io_uring_get_sqe, io_uring_peek_cqe, io_uring_prep_read_fixed, io_uring_queue_exit, io_uring_queue_init,
  io_uring_register_buffers, io_uring_sqe_set_data, io_uring_submit, io_uring_wait_cqe_timeout, type IoUring,
} from "../io_uring/liburing.js";
import { canBlock, nowMs } from "../memory/futex.js";
import { summarize, type SampleStats } from "../report/stats.js";

export interface IoDemoOptions {
  /** Bytes to stream (a whole number of blocks; default 8 MiB); with `file`, at most its size (default: all of it, whole blocks). */
  sizeBytes?: number;
  /** Bytes per read and per dma-buf: a multiple of 4 KiB, 4 KiB to 16 MiB (default 64 KiB). */
  blockBytes?: number;
  /** Dma-bufs in the ring, the reads and gpu jobs in flight: 1 to 64 (default 4). */
  buffers?: number;
  /** A file to stream instead of a temporary one with a pattern (read only, never written). */
  file?: string;
  /** The bound of every wait, ms (default 10 s). */
  timeoutMs?: number;
}

export interface IoDemoResult {
  blocks: number;
  blockBytes: number;
  buffers: number;
  bytes: number;
  /** The file streamed ("a temporary file" or the caller's path). */
  file: string;
  elapsedMs: number;
  /** bytes / elapsed, MB/s (10^6 bytes). */
  mbPerSec: number;
  /** Per block, ns: submission of the read to its CQE seen; submission of the gpu job to its fence's signal; the read's submission to the sum checked. */
  read: SampleStats;
  gpu: SampleStats;
  endToEnd: SampleStats;
  /** Blocks whose gpu sum matched the file's; the blocks that did not. */
  checked: number;
  mismatched: number[];
  devices: { name: string; jobsDone: number; jobsFailed: number }[];
  ok: boolean;
}

const KiB = 1024;
const MiB = KiB * KiB;
const UADDR = 0x2000_0000;
/** The pattern is written to the file in chunks of at most this many bytes (whole blocks). */
const FILL_BYTES = 16 * MiB;
/** The logical block size of the demo's storage device (O_DIRECT alignment). */
const LBA = 4096;

interface Resolved { sizeBytes: number; blockBytes: number; buffers: number; file: string | undefined; timeoutMs: number }

/**
 * The options, checked before anything starts (EINVAL naming the value);
 * with `file`, the file too (ENOENT, EACCES; EISDIR for one that is not a
 * regular file; EINVAL when it holds no whole block or fewer bytes than
 * sizeBytes), and sizeBytes resolved to the whole blocks streamed.
 */
export function checkIoDemoOptions(options: IoDemoOptions = {}): Resolved {
  const syscall = "demo_io";
  const o = objectArg<IoDemoOptions>(options, syscall, "the options");
  const blockBytes = intArg(o.blockBytes ?? 64 * KiB, syscall, "blockBytes", { min: 4 * KiB, max: 16 * MiB });
  if (blockBytes % LBA !== 0) throw new DmaBufError("EINVAL", syscall, `blockBytes ${blockBytes} is not a multiple of ${LBA}`);
  let sizeBytes = o.sizeBytes === undefined ? (o.file === undefined ? 8 * MiB : undefined) : intArg(o.sizeBytes, syscall, "sizeBytes", { min: blockBytes, max: 1024 * MiB });
  if (sizeBytes !== undefined && sizeBytes % blockBytes !== 0) throw new DmaBufError("EINVAL", syscall, `sizeBytes ${sizeBytes} is not a whole number of ${blockBytes}-byte blocks`);
  const buffers = intArg(o.buffers ?? 4, syscall, "buffers", { min: 1, max: 64 });
  const file = o.file === undefined ? undefined : stringArg(o.file, syscall, "file");
  const timeoutMs = intArg(o.timeoutMs ?? 10_000, syscall, "timeoutMs", { min: 1, max: 600_000 });
  if (file !== undefined) {
    let stat;
    try {
      stat = hostFs(syscall).statSync(file);
    } catch (e) {
      throw hostError(e, syscall, `file '${file}'`);
    }
    if (!stat.isFile()) throw new DmaBufError("EISDIR", syscall, `file '${file}' is not a regular file`);
    const whole = Math.floor(stat.size / blockBytes) * blockBytes;
    if (whole === 0) throw new DmaBufError("EINVAL", syscall, `file '${file}' (${stat.size} bytes) holds no whole ${blockBytes}-byte block`);
    if (sizeBytes !== undefined && sizeBytes > whole) throw new DmaBufError("EINVAL", syscall, `sizeBytes ${sizeBytes} exceeds the ${whole} bytes of whole blocks in '${file}'`);
    sizeBytes ??= whole;
  }
  return { sizeBytes: sizeBytes!, blockBytes, buffers, file, timeoutMs };
}

/** Word i of block k of the demo's pattern: every block differs, so a block read into the wrong place fails its check. */
function fillBlock(words: Uint32Array, k: number): void {
  for (let i = 0; i < words.length; i++) words[i] = (Math.imul(k + 1, 0x9e3779b1) ^ Math.imul(i, 0x85ebca6b)) >>> 0;
}

/** One block on its way: read submitted, gpu job submitted, checked. */
interface InFlight { k: number; readAt: number; readNs: number; gpu: Fence | null; gpuAtNs: number }

export async function runIoDemo(lab: Lab, options: IoDemoOptions = {}, onProgress: (text: string) => void = () => {}): Promise<IoDemoResult> {
  const o = checkIoDemoOptions(options);
  const total = o.sizeBytes;
  const blocks = total / o.blockBytes;
  const N = Math.min(o.buffers, blocks);

  let storage: StorageDevice | undefined;
  let gpu: Device | undefined;
  let ring: IoUring | undefined;
  const proc = new Process(lab);
  const results: DmaBuf[] = [];
  const inFlight: (InFlight | undefined)[] = new Array(N);
  const scratch = lab.alloc(o.blockBytes, { zero: false });
  try {
    onProgress(`starting the storage device (${o.file ?? "a temporary file"}) and the gpu`);
    // With the caller's file, size is its whole blocks streamed: no larger than the file, which therefore stays as it is.
    storage = await spawnStorage(lab, { name: "nvme0n1", size: total, path: o.file, blockSize: LBA, queueDepth: 256 });
    // The expected sums: xxHash32 of each block of the file, on the CPU. A
    // temporary file gets the pattern first, written into the device's own
    // backing file (a host file, or an OPFS file in a browser) before any read.
    const expected = new Uint32Array(blocks);
    const words = new Uint32Array(scratch.buffer, scratch.byteOffset, o.blockBytes >>> 2);
    const fs = o.file === undefined ? undefined : hostFs("demo_io");
    const hostFd = fs?.openSync(o.file!, "r");
    // The pattern goes to the file in chunks of up to FILL_BYTES (one OPFS writable each).
    const chunk = new Uint8Array(fs === undefined ? Math.floor(Math.min(total, FILL_BYTES) / o.blockBytes) * o.blockBytes : 0);
    try {
      for (let k = 0; k < blocks; k++) {
        if (fs === undefined) {
          fillBlock(words, k);
          const at = (k * o.blockBytes) % chunk.length;
          chunk.set(scratch, at);
          if (at + o.blockBytes === chunk.length || k === blocks - 1) {
            await storage.fill((k + 1) * o.blockBytes - (at + o.blockBytes), chunk.subarray(0, at + o.blockBytes));
          }
        } else {
          fs.readSync(hostFd!, scratch, 0, o.blockBytes, k * o.blockBytes);
        }
        expected[k] = lab.engine.checksumRange(scratch.byteOffset, o.blockBytes);
      }
    } finally {
      if (hostFd !== undefined) fs!.closeSync(hostFd);
    }
    gpu = await lab.spawnDevice({ name: "gpu" });
    const disk = proc.open(`/dev/${storage.node.split("/").pop()}`, O_RDONLY | O_DIRECT);
    ring = io_uring_queue_init(proc, Math.max(8, 2 * N));
    // The ring of dma-bufs: allocated, registered as fixed buffers targeting the disk, attached to the gpu.
    const heap = proc.open("/dev/dma_heap/system", O_RDWR);
    const slots: { fd: number; dev: DeviceBuffer }[] = [];
    try {
      for (let i = 0; i < N; i++) {
        const alloc = { len: o.blockBytes, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
        proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
        slots.push({ fd: alloc.fd, dev: await gpu.attach((proc.file(alloc.fd) as DmaBufFile).buf) });
      }
    } finally {
      proc.close(heap);
    }
    if (io_uring_register_buffers(ring, slots.map(() => ({ iov_base: 0, iov_len: 0 }))) !== 0) {
      throw new DmaBufError("EIO", "demo_io", "io_uring_register_buffers failed");
    }
    proc.io_uring_register(ring.fd, IORING_REGISTER_BUFFERS_UPDATE, {
      offset: 0, flags: IORING_RSRC_F_EXTENDED_UPDATE, nr: N,
      data: slots.map((s, i) => ({ iov_uaddr: UADDR + i * o.blockBytes, target_fd: disk, dmabuf_fd: s.fd })),
    }, N);
    const result = lab.heap("system").alloc(Math.max(4096, 4 * N));
    results.push(result);
    const sums = await gpu.attach(result);


    const readNs: number[] = [];
    const gpuNs: number[] = [];
    const endNs: number[] = [];
    const mismatched: number[] = [];
    const sum = new Uint8Array(4);
    let submitted = 0;
    let checked = 0;
    const every = Math.max(1, Math.ceil(blocks / 4));
    const t0 = nowMs();

    const submitRead = (k: number) => {
      const i = k % N;
      const sqe = io_uring_get_sqe(ring!);
      if (sqe === null) throw new DmaBufError("EBUSY", "demo_io", "the submission queue is full");
      io_uring_prep_read_fixed(sqe, disk, UADDR + i * o.blockBytes, o.blockBytes, k * o.blockBytes, i);
      io_uring_sqe_set_data(sqe, k);
      inFlight[i] = { k, readAt: nowMs(), readNs: 0, gpu: null, gpuAtNs: 0 };
      io_uring_submit(ring!);
    };
    /** A read completed: its DMA is over, so the gpu may read the slot. */
    const completed = (k: number, res: number) => {
      const b = inFlight[k % N]!;
      if (res !== o.blockBytes) throw new DmaBufError(res < 0 ? DmaBufError.codeOf(res) : "EIO", "demo_io", `the read of block ${k} completed with ${res}`);
      b.readNs = (nowMs() - b.readAt) * 1e6;
      b.gpuAtNs = lab.sync.clock.nowNs();
      b.gpu = gpu!.submit({ kind: "checksum", src: slots[k % N].dev, dst: { buffer: sums, offset: 4 * (k % N), length: 4 } });
    };
    /** Reaps the completions there are; none is an error only past the deadline (`waitUntil`). */
    const reapSome = () => {
      for (;;) {
        const { cqe } = io_uring_peek_cqe(ring!);
        if (cqe === undefined) return;
        const { user_data: k, res } = cqe;
        io_uring_cqe_seen(ring!, cqe);
        completed(k, res);
      }
    };
    /**
     * Reaps until block k's read completed: blocking in io_uring_enter where
     * this thread may block, else polling between turns of the event loop (a
     * browser's main thread). Bounded by timeoutMs.
     */
    const reapUntil = async (b: InFlight, k: number) => {
      const deadline = nowMs() + o.timeoutMs;
      for (reapSome(); b.gpu === null; reapSome()) {
        const left = deadline - nowMs();
        if (left <= 0) throw new DmaBufError("ETIMEDOUT", "demo_io", `the read of block ${k} did not complete within ${o.timeoutMs} ms`);
        if (canBlock()) {
          const { cqe } = io_uring_wait_cqe_timeout(ring!, left);
          if (cqe !== undefined) continue; // reapSome() takes it
        } else {
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      }
    };
    /** Block k's gpu job done: its sum checked against the file's. */
    const finish = async (k: number) => {
      const b = inFlight[k % N]!;
      await reapUntil(b, k);
      const fence = b.gpu!;
      try {
        if ((canBlock() ? fence.wait(o.timeoutMs) : await fence.waitAsync(o.timeoutMs)) <= 0) {
          throw new DmaBufError("ETIMEDOUT", "demo_io", `the gpu's checksum of block ${k} did not signal within ${o.timeoutMs} ms`);
        }
        if (fence.status < 0) throw new DmaBufError(DmaBufError.codeOf(fence.status), "demo_io", `the gpu's checksum of block ${k} failed (${fence.status})`);
        gpuNs.push(Math.max(0, fence.timestampNs - b.gpuAtNs));
      } finally {
        fence.put();
        b.gpu = null;
      }
      // Implicit sync: this read waits for the gpu's write fence on the result buffer.
      if (canBlock()) result.read(sum, 4 * (k % N), { timeoutMs: o.timeoutMs });
      else await result.readAsync(sum, 4 * (k % N), { timeoutMs: o.timeoutMs });
      if (new DataView(sum.buffer).getUint32(0, true) !== expected[k]) mismatched.push(k);
      checked++;
      readNs.push(b.readNs);
      endNs.push((nowMs() - b.readAt) * 1e6);
      inFlight[k % N] = undefined;
      if ((k + 1) % every === 0 || k + 1 === blocks) onProgress(`${k + 1}/${blocks} blocks read, summed and checked`);
    };

    for (let k = 0; k < blocks; k++) {
      // Slot k mod N is free again once its previous block's gpu job signalled.
      if (k >= N) await finish(k - N);
      submitRead(k);
      submitted++;
      reapSome();
    }
    for (let k = Math.max(0, blocks - N); k < blocks; k++) await finish(k);
    const elapsedMs = nowMs() - t0;
    const devices = [storage.device, gpu].map((d) => { const s = d.stats(); return { name: s.name, jobsDone: s.jobsDone, jobsFailed: s.jobsFailed }; });
    return {
      blocks, blockBytes: o.blockBytes, buffers: N, bytes: total, file: o.file ?? "a temporary file", elapsedMs,
      mbPerSec: total / 1e6 / (elapsedMs / 1000),
      read: summarize(readNs), gpu: summarize(gpuNs), endToEnd: summarize(endNs),
      checked, mismatched, devices, ok: checked === blocks && mismatched.length === 0 && submitted === blocks,
    };
  } finally {
    // Fences still held (a failed run), then the ring (which waits for reads in flight), the fds, the devices.
    for (const b of inFlight) b?.gpu?.put();
    if (ring !== undefined) io_uring_queue_exit(ring);
    proc.closeAll();
    for (const r of results) r.close();
    await gpu?.shutdown({ drain: false });
    await storage?.shutdown();
    lab.free(scratch);
  }
}

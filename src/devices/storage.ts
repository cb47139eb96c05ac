/*
 * The storage device, host side: spawnStorage() starts a device worker (the
 * device machinery of device.ts: its own IOMMU page table, job ring, fence
 * context and the lab's watchdog) that loads the nvme kernel
 * (workers/kernel-nvme.ts), backs it with a real file, and adds
 * /dev/<name> (default nvme0n1) to the lab's device nodes, so that
 * Process.open() gives a BlockDevFile for it. The first live storage device
 * of a lab also holds the lab's directory: regular files' direct I/O to
 * and from dma-bufs (copy_file_range, DMA_BUF_IOCTL_RW_FILE) is its DMA.
 *
 *   backing   `path`: a host file the caller names (its size, rounded down
 *             to whole blocks, is the capacity; `size` grows it when larger),
 *             or a new temporary file of `size` bytes (default 64 MiB),
 *             deleted at shutdown. In a browser `path` names a file of the
 *             Origin Private File System (backing.ts: the device's worker
 *             opens a sync access handle on it)
 *   blockSize the logical block size, 512 or 4096 (EINVAL otherwise)
 *
 * I/O goes through block_io.ts from any thread. shutdown() drains the
 * device, removes the node and closes the backing file; open files of the
 * device then get ENODEV. A device that dies fails its queued requests and
 * every later one with EIO; crash() is that crash.
 */
import { DmaBufError } from "../errno.js";
import { openBacking, type HostBacking } from "./backing.js";
import type { LabCore } from "../lab.js";
import type { IommuOptions } from "../dmabuf/iommu.js";
import { RecordType } from "../memory/record.js";
import { workerUrl } from "../thread/host.js";
import { registerBlockDevice, registerDevNode } from "../uapi/dev_nodes.js";
import { BlockDevFile } from "../uapi/blockdev_file.js";
import {
  STOR_BLOCK_SIZE, STOR_CAPACITY, STOR_DEVICE, STOR_FAILED, STOR_HOST_FD, STOR_KERNEL, STOR_MAGIC, STOR_MAGIC_VALUE, STOR_RECORD_SIZE, STOR_REFS, STOR_SUBMIT_MS,
  StorageRecord, storageUnref,
} from "./block_io.js";
import { spawnDevice, type Device } from "./device.js";

export interface StorageOptions {
  /** The device's name: its node is /dev/<name> (default nvme0n1). */
  name?: string;
  /** A host file to back the device (default: a new temporary file). */
  path?: string;
  /** Capacity in bytes for a temporary file, or the least size of `path` (default 64 MiB). */
  size?: number;
  /** Logical block size: 512 or 4096 (default 512). */
  blockSize?: number;
  /** The device's job ring entries (its queue depth; default 256). */
  queueDepth?: number;
  /** The watchdog's limit for one job (default 5000 ms). */
  jobTimeoutMs?: number;
  /** The device's IOMMU: mode strict (default), lazy or passthrough, and the IOTLB invalidation latency (iommu.ts). */
  iommu?: Pick<IommuOptions, "mode" | "iotlbInvalidateNs">;
}

export class StorageDevice {
  private closed = false;

  /** @internal spawnStorage() makes them. */
  constructor(
    readonly lab: LabCore,
    readonly device: Device,
    readonly record: StorageRecord,
    private readonly backing: HostBacking,
    readonly node: string,
    private readonly removeNode: () => void,
  ) {}

  /** The backing file: its host path, or in a browser its name in the Origin Private File System. */
  get path(): string { return this.backing.path; }

  /**
   * Writes bytes into the backing file at `at` from the host side, as a tool
   * writing a disk image before the device is used: not through the device,
   * no I/O ordering with requests in flight (EBADF after shutdown). In a
   * browser only before the first request (the device's worker then holds
   * the OPFS file's lock: EIO).
   */
  async fill(at: number, bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new DmaBufError("EBADF", "nvme_fill", `storage device ${this.node} was shut down`);
    await this.backing.write(at, bytes);
  }

  get blockSize(): number { return this.record.blockSize; }
  get capacity(): number { return this.record.capacity; }
  get offset(): number { return this.record.offset; }

  /** Stops the device after its queued jobs, removes its node and closes the backing file. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { lab } = this;
    Atomics.store(lab.sync.u32, (this.record.offset + STOR_MAGIC) >>> 2, 0);
    this.removeNode();
    try {
      await this.device.shutdown();
    } finally {
      await this.backing.close();
      storageUnref(lab, this.record.offset);
    }
  }

  /** A crash: every pending request fails with EIO, later ones too; the node stays until shutdown(). */
  async crash(): Promise<void> {
    markFailed(this.lab, this.record.offset);
    await this.device.kill();
  }
}

function markFailed(lab: LabCore, record: number): void {
  Atomics.store(lab.sync.u32, (record + STOR_FAILED) >>> 2, 1);
}

export async function spawnStorage(lab: LabCore, options: StorageOptions = {}): Promise<StorageDevice> {
  const syscall = "nvme_probe";
  const name = options.name ?? "nvme0n1";
  const blockSize = options.blockSize ?? 512;
  if (blockSize !== 512 && blockSize !== 4096) throw new DmaBufError("EINVAL", syscall, `logical block size ${blockSize} is not 512 or 4096`);
  if (!/^[A-Za-z0-9_-]{1,31}$/.test(name)) throw new DmaBufError("EINVAL", syscall, `device name '${name}' is not 1-31 letters, digits, '-' or '_'`);
  const size = options.size ?? 64 * 1024 * 1024;
  if (!Number.isSafeInteger(size) || size < blockSize || size > 2 ** 40) throw new DmaBufError("EINVAL", syscall, `size ${size} is not from one block to 1 TiB`);
  if (options.path !== undefined && typeof options.path !== "string") throw new DmaBufError("EINVAL", syscall, "path is not a string");
  const backing = await openBacking(name, options.path, size, syscall);
  let device: Device | undefined;
  let record = 0;
  try {
    const capacity = Math.floor(backing.size / blockSize) * blockSize;
    device = await spawnDevice(lab, { name, coherent: false, ringEntries: options.queueDepth ?? 256, jobTimeoutMs: options.jobTimeoutMs, iommu: options.iommu });
    const kernel = await device.loadKernel(backing.kernelUrl(workerUrl("kernel-nvme")));
    const { sync } = lab;
    record = sync.allocRecord(RecordType.storage, STOR_RECORD_SIZE, syscall);
    const u32 = sync.u32;
    u32[(record + STOR_REFS) >>> 2] = 1;
    u32[(record + STOR_DEVICE) >>> 2] = device.record.offset;
    u32[(record + STOR_HOST_FD) >>> 2] = backing.fd;
    u32[(record + STOR_BLOCK_SIZE) >>> 2] = blockSize;
    u32[(record + STOR_KERNEL) >>> 2] = kernel;
    u32[(record + STOR_SUBMIT_MS) >>> 2] = 1000;
    sync.f64[(record + STOR_CAPACITY) >>> 3] = capacity;
    // Publish: a thread that sees the magic sees the words above.
    Atomics.store(u32, (record + STOR_MAGIC) >>> 2, STOR_MAGIC_VALUE);
  } catch (e) {
    if (record !== 0) lab.sync.freeRecord(record, RecordType.storage);
    await device?.shutdown();
    await backing.close();
    throw e;
  }
  // A device that dies (a crash, the watchdog) fails later I/O with EIO before its records go.
  void device.whenDead().then(() => markFailed(lab, record));
  const node = `/dev/${name}`;
  const st = new StorageRecord(lab, record);
  const removeNode = registerDevNode(lab, node, (flags) => new BlockDevFile(lab, record, node, flags));
  const removeBlock = registerBlockDevice(lab, record);
  return new StorageDevice(lab, device, st, backing, node, () => { removeNode(); removeBlock(); });
}

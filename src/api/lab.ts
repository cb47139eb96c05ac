/*
 * Lab: the object users start from. The core (src/lab.ts: the arena, this
 * thread's engine and sync, alloc/copy/share, the exporters) plus the
 * object API on top of the uapi:
 *
 *   const lab = await Lab.create();           // creating thread
 *   const lab = await Lab.attach(handle);     // any other thread
 *   lab.heap("system").alloc(4096)            // a DmaBuf, calls of lab.process
 *
 * Contract: as LabCore's (a per-thread view; lab.share() crosses threads).
 * lab.process is this thread's Process, made on first use and closed with
 * the lab; lab.heap(name) is one DmaHeap per name, holding one heap fd.
 */
import { DmaBufError } from "../errno.js";
import { describe } from "../args.js";
import { heapNames, type HeapName } from "../dmabuf/heap.js";
import { LabCore } from "../lab.js";
import type { ShareKind, ShareToken } from "../sync/flight.js";
import { Process } from "../uapi/process.js";
import { spawnDevice, type Device, type DeviceOptions } from "../devices/device.js";
import { DmaHeap, type ObjectLab } from "./dma_buf.js";
import { BufferQueue, type QueueOptions } from "./queue.js";
import { dropToken, importToken, type Shared } from "./share.js";

export class Lab extends LabCore implements ObjectLab {
  private proc: Process | undefined;

  /** This thread's Process (fd table) for the object API; made on first use. */
  get process(): Process {
    this.proc ??= new Process(this);
    return this.proc;
  }

  /** A dma-heap as the object API sees it: lab.heap("system").alloc(size) gives a DmaBuf. */
  heap(name: HeapName): DmaHeap {
    if (!heapNames.includes(name)) {
      throw new DmaBufError("ENOENT", "open", `no heap ${describe(name)} (heaps: ${heapNames.join(", ")})`);
    }
    let heap = this.heaps.get(name);
    if (heap === undefined) this.heaps.set(name, (heap = new DmaHeap(this.process, name)));
    return heap;
  }

  /** lab.heap()'s answers, one per name: each holds one heap fd of this thread's Process. */
  private readonly heaps = new Map<HeapName, DmaHeap>();

  /**
   * A buffer queue (src/api/queue.ts): `buffers` dma-bufs of `size` bytes
   * from `heap` cycling between a producer (dequeue/queue) and a consumer
   * (acquire/release) in any two threads. close() it when done.
   */
  queue(options: QueueOptions): BufferQueue {
    return BufferQueue.create(this, options);
  }

  /**
   * This thread's object for a token another thread's share() gave (a
   * DmaBuf, Fence, SyncFile, SwSyncTimeline, Resv or BufferQueue): it adopts
   * the reference the token carries. Each token imports once (EBADF after).
   */
  import<K extends ShareKind>(token: ShareToken<K>): Shared[K] {
    return importToken(this, token);
  }

  /** Releases the reference of a share() token that will not be imported (any thread). */
  dropToken(token: ShareToken): void {
    dropToken(this, token);
  }

  /**
   * Starts a device: a worker with its own engine, IOMMU, job ring and
   * fence context (src/devices/device.ts). shutdown() it when done.
   */
  spawnDevice(options?: DeviceOptions): Promise<Device> {
    return spawnDevice(this, options);
  }

  /** Closes this thread's Process (every fd), then frees what the core holds in this thread. */
  override close(): void {
    this.proc?.closeAll();
    this.proc = undefined;
    super.close();
  }
}

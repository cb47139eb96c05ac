/*
 * BufferQueue: the object API of a buffer queue (src/dmabuf/buffer_queue.ts),
 * a fixed set of dma-bufs cycling between a producer and a consumer in any
 * two threads.
 *
 *   const q = lab.queue({ buffers: 3, size: 1 << 20 });     // creating thread
 *   worker.postMessage(q.share());                        // THE SHARING RULE (src/sync/flight.ts)
 *   const q = lab.import(token);                          // the other thread
 *
 *   producer: const b = q.dequeue(); b.view.set(...); q.queue(b, fence?);
 *   consumer: const b = q.acquire(); check(b.view); q.release(b, fence?);
 *
 * Contract: one producer side and one consumer side at a time, in any
 * threads (each side may also be a device: its job's out-fence is the fence
 * given to queue() or release(), and the fence a QueueBuffer carries is the
 * job's in-fence). dequeue()/acquire() wait at most timeoutMs (default: no
 * limit) and have Async twins that never block. A QueueBuffer is this
 * thread's handle on buffer `index` (the same object every time: nothing is
 * allocated per call when no fence travels); its `buf` is a DmaBuf of this
 * thread's Process and `view`/`views` a mapping made once per thread.
 * The fence a taken QueueBuffer carries (`fence`) is owned by it and put
 * when the buffer goes back (queue() or release()); get() it to keep it.
 * Implicit sync: a fence given to queue() joins the buffer's reservation
 * object as a writer, one given to release() as a reader (as
 * DMA_BUF_IOCTL_IMPORT_SYNC_FILE does), so read()/write(), SYNC
 * (beginCpuAccess) and device jobs on the buffer wait for them.
 * CPU threads that hand buffers over without fences are ordered by the queue
 * itself (its publish points are seq-cst). close() releases this thread's
 * fds, mappings and reference; the buffers go with the last reference.
 */
import { DmaBufError } from "../errno.js";
import { BufferQueueRecord } from "../dmabuf/buffer_queue.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import type { HeapName } from "../dmabuf/heap.js";
import { Fence } from "../sync/fence.js";
import { receiveFlight, sendFlight, type ShareToken } from "../sync/flight.js";
import { SyncFile } from "../sync/sync_file.js";
import { DmaBufFile } from "../uapi/dma_buf_file.js";
import type { DmaBufMapping } from "../uapi/mapping.js";
import { O_RDWR } from "../uapi/uapi.js";
import { DmaBuf, type ObjectLab } from "./dma_buf.js";

export interface QueueOptions {
  /** How many buffers cycle (1..64; default 3). */
  buffers?: number;
  /** Each buffer's size in bytes (rounded up to whole pages). */
  size: number;
  /** The dma-heap the buffers come from (default "system"; "cma" gives physically contiguous ones). */
  heap?: HeapName;
}

export interface WaitOptions {
  /** Give up after this many ms: ETIMEDOUT (0: EAGAIN at once when nothing is there). Default: no limit. */
  timeoutMs?: number;
}

/** A fence that travels with a buffer: a Fence or a SyncFile (its fence). */
export type QueueFence = Fence | SyncFile;

/** One buffer of a queue as this thread sees it (the same object every time it is taken). */
export class QueueBuffer {
  /** The fence that came with the buffer (owned by this handle until the buffer goes back), or null. */
  fence: Fence | null = null;
  private mapping: DmaBufMapping | undefined;

  /** @internal BufferQueue makes these. */
  constructor(readonly index: number, readonly buf: DmaBuf) {}

  /** The buffer mapped (mmap, once per thread): one view per physically contiguous chunk. */
  get views(): Uint8Array[] {
    this.mapping ??= this.buf.map();
    return this.mapping.views;
  }

  /** The buffer as one view; EINVAL when its pages are not contiguous (use `views`, or heap "cma"). */
  get view(): Uint8Array {
    this.mapping ??= this.buf.map();
    return this.mapping.view;
  }

  /** Puts the fence this handle carries. */
  dropFence(): void {
    this.fence?.put();
    this.fence = null;
  }

  /** @internal */
  close(): void {
    this.dropFence();
    if (this.mapping?.mapped) this.buf.unmap(this.mapping);
    this.buf.close();
  }
}

export class BufferQueue {
  private readonly handles: (QueueBuffer | undefined)[];
  private open = true;

  private constructor(readonly lab: ObjectLab, private readonly record: BufferQueueRecord) {
    this.handles = new Array(record.count);
  }

  /** lab.queue(): `buffers` new dma-bufs of `size` bytes from `heap`, all free. */
  static create(lab: ObjectLab, options: QueueOptions): BufferQueue {
    const { buffers = 3, size, heap = "system" } = options ?? ({} as QueueOptions);
    if (!Number.isInteger(buffers) || buffers < 1 || buffers > 64) {
      throw new DmaBufError("EINVAL", "buffer_queue_create", `buffers ${String(buffers)} is not in 1..64`);
    }
    const made: DmaBuf[] = [];
    try {
      const dmaHeap = lab.heap(heap);
      for (let i = 0; i < buffers; i++) made.push(dmaHeap.alloc(size));
      return new BufferQueue(lab, BufferQueueRecord.create(lab.sync, made.map((b) => b.record)));
    } finally {
      for (const b of made) b.close(); // the queue holds its own references
    }
  }

  /** The number of buffers. */
  get buffers(): number {
    return this.record.count;
  }

  /** Each buffer's size in bytes. */
  get size(): number {
    return this.record.bytes;
  }

  /** Buffers queued and not yet acquired (a snapshot, stale at once). */
  get queued(): number {
    return this.record.queued;
  }

  /** Buffers released and not yet dequeued (a snapshot). */
  get free(): number {
    return this.record.free;
  }

  /** Buffer i's state: "free", "dequeued", "queued" or "acquired" (a snapshot). */
  state(i: number): string {
    return this.record.state(i);
  }

  /**
   * VIDIOC_QUERYBUF: this thread's handle on buffer i without taking it, to
   * attach it to a device or map it before streaming. EINVAL for an index
   * outside 0..buffers-1.
   */
  querybuf(i: number): QueueBuffer {
    const q = this.q;
    if (!Number.isInteger(i) || i < 0 || i >= q.count) {
      throw new DmaBufError("EINVAL", "buffer_queue_querybuf", `buffer index ${String(i)} is not in 0..${q.count - 1}`);
    }
    return this.handles[i] ?? this.handle(i, 0);
  }

  private get q(): BufferQueueRecord {
    if (!this.open) throw new DmaBufError("EBADF", "buffer_queue", "this BufferQueue is closed");
    return this.record;
  }

  /** This thread's handle on buffer i (a DmaBuf over an fd of this thread's Process, made at first use), carrying `fence`. */
  private handle(i: number, fence: number): QueueBuffer {
    let h = this.handles[i];
    if (h === undefined) {
      const { process } = this.lab;
      const fd = process.installNew(() => {
        const rec = DmaBufRecord.attach(this.lab.sync, this.record.buffer(i));
        try {
          return new DmaBufFile(rec, O_RDWR);
        } finally {
          rec.put();
        }
      }, true, "buffer_queue");
      h = this.handles[i] = new QueueBuffer(i, new DmaBuf(process, fd));
    }
    h.fence = fence === 0 ? null : this.lab.sync.view(fence, true);
    return h;
  }

  /** A fence to travel with a buffer: its offset with a new reference, 0 for none; added to the buffer's resv. */
  private carry(b: QueueBuffer, fence: QueueFence | undefined, write: boolean, syscall: string): number {
    if (fence === undefined || fence === null) return 0;
    const f = fence instanceof SyncFile ? fence.fence : fence;
    if (!(f instanceof Fence)) throw new DmaBufError("EINVAL", syscall, `fence ${String(fence)} is neither a Fence nor a SyncFile`);
    using file = fence instanceof SyncFile ? null : this.lab.sync.syncFile(f);
    b.buf.importSyncFile(file ?? (fence as SyncFile), write ? "write" : "read");
    this.lab.sync.ref(f.offset);
    return f.offset;
  }

  // ---- producer -------------------------------------------------------------------

  /** VIDIOC_DQBUF: a free buffer (oldest released first); its `fence` is the consumer's release fence, if any. */
  dequeue(options?: WaitOptions): QueueBuffer {
    const q = this.q;
    q.dequeue(options?.timeoutMs ?? Infinity);
    return this.handle(q.taken.index, q.taken.fence);
  }

  /** dequeue() as a Promise: waits with Atomics.waitAsync, never blocks (a browser's main thread). */
  async dequeueAsync(options: WaitOptions = {}): Promise<QueueBuffer> {
    const t = await this.q.dequeueAsync(options.timeoutMs ?? Infinity);
    return this.handle(t.index, t.fence);
  }

  /**
   * VIDIOC_QBUF / present: hands a dequeued buffer to the consumer. `fence`
   * (optional): when its content is ready (a device job's out-fence); the
   * queue takes its own reference. EINVAL for a buffer that is not dequeued.
   */
  queue(b: QueueBuffer, fence?: QueueFence): void {
    this.handOver(b, fence, true);
  }

  // ---- consumer -------------------------------------------------------------------

  /** Acquire: the oldest queued buffer; its `fence` is the producer's (wait for it, or make it a job's in-fence). */
  acquire(options?: WaitOptions): QueueBuffer {
    const q = this.q;
    q.acquire(options?.timeoutMs ?? Infinity);
    return this.handle(q.taken.index, q.taken.fence);
  }

  /** acquire() as a Promise: never blocks. */
  async acquireAsync(options: WaitOptions = {}): Promise<QueueBuffer> {
    const t = await this.q.acquireAsync(options.timeoutMs ?? Infinity);
    return this.handle(t.index, t.fence);
  }

  /**
   * Returns an acquired buffer to the producer. `fence` (optional): when the
   * consumer's reads are done (a device job's out-fence). EINVAL for a
   * buffer that is not acquired.
   */
  release(b: QueueBuffer, fence?: QueueFence): void {
    this.handOver(b, fence, false);
  }

  /**
   * queue() (toConsumer) or release(): checks the buffer and its state
   * before anything changes, carries the fence, pushes, and puts the fence
   * the handle carried.
   */
  private handOver(b: QueueBuffer, fence: QueueFence | undefined, toConsumer: boolean): void {
    const q = this.q;
    const [syscall, want] = toConsumer ? ["buffer_queue_queue", "dequeued"] : ["buffer_queue_release", "acquired"];
    if (!(b instanceof QueueBuffer) || this.handles[b.index] !== b) {
      throw new DmaBufError("EINVAL", syscall, `${String(b)} is not a buffer this BufferQueue handed out`);
    }
    const i = b.index;
    if (q.state(i) !== want) throw new DmaBufError("EINVAL", syscall, `buffer ${i} is ${q.state(i)}, not ${want}`);
    const f = this.carry(b, fence, toConsumer, syscall);
    try {
      if (toConsumer) q.queue(i, f);
      else q.release(i, f);
    } catch (e) {
      if (f !== 0) this.lab.sync.unref(f);
      throw e;
    }
    b.dropFence();
  }

  // ---- sharing and teardown ---------------------------------------------------------

  /** A token for another thread: BufferQueue.import (or lab.import) there (src/sync/flight.ts). */
  share(): ShareToken<"queue"> {
    const q = this.q;
    return sendFlight(this.lab.sync, "queue", q.offset, () => q.ref());
  }

  /** This thread's BufferQueue for a shared one (EINVAL/EBADF for a bad or spent token). */
  static import(lab: ObjectLab, token: ShareToken<"queue">): BufferQueue {
    return receiveFlight(lab.sync, token, "queue", "buffer_queue_import", (t) => new BufferQueue(lab, BufferQueueRecord.adopt(lab.sync, t.offset)));
  }

  get closed(): boolean {
    return !this.open;
  }

  /** Closes this thread's fds and mappings and drops its reference. A second close is harmless. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    for (const h of this.handles) h?.close();
    this.record.put();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

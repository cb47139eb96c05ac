/*
 * The buffer queue (src/dmabuf/buffer_queue.ts, src/api/queue.ts): buffers
 * cycle producer -> consumer -> producer in FIFO order between real threads
 * (test/workers/share-peer.ts), whole and in order; a device job can be the
 * producer, its out-fence travelling with the buffer; fences given to
 * queue()/release() join the buffer's reservation object, so implicit sync
 * stays correct (a CPU writer waits for a reader's release fence, as at
 * dma_resv usage READ); wrong-state calls are EINVAL and change nothing;
 * waits are bounded (EAGAIN at timeoutMs 0, ETIMEDOUT after).
 */
import { describe, expect, test } from "vitest";
import { type BufferQueue, Lab, type QueueBuffer } from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach, heapBalanced } from "./helpers/lab.js";
import { WorkerSet } from "./helpers/workers.js";
import { checkFrame, fillFrame, type SharePeerData, type SharePeerReport } from "./workers/share-peer.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const FRAMES = 60;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
const workers = new WorkerSet();
const devices = new DeviceSet();
cleanUpAfterEach({ workers, devices, labs });

const words = (v: Uint8Array): Int32Array => new Int32Array(v.buffer, v.byteOffset, v.length >> 2);

function peer(lab: Lab, q: BufferQueue, action: "consume" | "produce") {
  const data: SharePeerData = { handle: lab.share(), action, tokens: { queue: q.share() }, frames: FRAMES, timeoutMs: WAIT_MS };
  return workers.start("share-peer", `queue-${action}r`, data).next<SharePeerReport>("done", 4 * WAIT_MS);
}

describe("BufferQueue between threads", () => {
  test("QBUF/DQBUF: a worker acquires every frame the main thread queues, whole and in order", async () => {
    const lab = await labs.create();
    const pagesBefore = lab.stats().pages.freeBytes;
    const q = lab.queue({ buffers: 3, size: 3 * PAGE_SIZE, heap: "cma" });
    const done = peer(lab, q, "consume");
    for (let k = 0; k < FRAMES; k++) {
      const b = await q.dequeueAsync({ timeoutMs: WAIT_MS });
      fillFrame(words(b.view), k);
      q.queue(b);
    }
    const report = await done;
    expect(report.frames).toEqual(Array.from({ length: FRAMES }, (_, k) => k));
    expect(report.bad).toEqual([]);
    expect(report.canariesIntact).toBe(true);
    q.close();
    expect(lab.stats().pages.freeBytes).toBe(pagesBefore); // the worker's reference went with it
  });

  test("a worker produces, the main thread consumes with acquireAsync (never blocking)", async () => {
    const lab = await labs.create();
    using q = lab.queue({ buffers: 2, size: 64 * 1024, heap: "cma" });
    const done = peer(lab, q, "produce");
    const seen: number[] = [];
    for (let k = 0; k < FRAMES; k++) {
      const b = await q.acquireAsync({ timeoutMs: WAIT_MS });
      expect(b.fence).toBeNull(); // a CPU producer queues without a fence
      seen.push(checkFrame(words(b.view)));
      q.release(b);
    }
    await done;
    expect(seen).toEqual(Array.from({ length: FRAMES }, (_, k) => k));
  });
});

describe("BufferQueue with a device and fences", () => {
  test("a device job is the producer: its out-fence travels with the buffer and a read() waits for it (implicit sync)", async () => {
    const lab = await labs.create();
    const dev = await devices.spawn(lab, { name: "producer" });
    using q = lab.queue({ buffers: 2, size: PAGE_SIZE });
    const out = new Uint8Array(PAGE_SIZE);
    for (let k = 1; k <= 4; k++) {
      const b = q.dequeue({ timeoutMs: WAIT_MS });
      const target = await dev.attach(b.buf);
      const fence = dev.submit({ kind: "fill", dst: target, value: k });
      q.queue(b, fence);
      const got = q.acquire({ timeoutMs: WAIT_MS });
      expect(got).toBe(b); // the same handle object every time
      expect(got.fence?.is(fence)).toBe(true);
      fence.put();
      // read() waits for the device's fence, which queue() added to the buffer's resv as a writer.
      expect(got.buf.read(out, 0, { timeoutMs: WAIT_MS })).toBe(PAGE_SIZE);
      expect(out.every((x) => x === k)).toBe(true);
      q.release(got);
      await dev.detach(target);
    }
  });

  test("a device job is the consumer: the acquired fence is its in-fence, its out-fence the release fence the producer waits on", async () => {
    const lab = await labs.create();
    const dev = await devices.spawn(lab, { name: "consumer" });
    using q = lab.queue({ buffers: 1, size: PAGE_SIZE });
    const sums = lab.heap("system").alloc(PAGE_SIZE);
    const sumsOnDev = await dev.attach(sums);
    const b = q.dequeue();
    const onDev = await dev.attach(b.buf);
    const gate = lab.sync.swSync("producer");
    for (let k = 1; k <= 3; k++) {
      const ready = gate.createFence(k); // the producer's content is ready at gate value k
      b.buf.write(new Uint8Array(PAGE_SIZE).fill(k), 0, { timeoutMs: WAIT_MS });
      q.queue(b, ready);
      const got = q.acquire({ timeoutMs: 0 });
      const job = dev.submit({ kind: "checksum", src: onDev, dst: { buffer: sumsOnDev, offset: 4 * k, length: 4 }, inFences: got.fence ? [got.fence] : [] });
      q.release(got, job);
      const again = q.dequeue({ timeoutMs: 0 });
      expect(again.fence?.is(job)).toBe(true);
      expect(job.isSignaled()).toBe(false); // the device waits for the producer's fence
      gate.inc(1);
      // The next write waits for the device's read (the release fence is in the buffer's resv as a reader).
      expect(job.wait(WAIT_MS)).toBeGreaterThan(0);
      expect(job.status).toBe(1);
      job.put();
      ready.close();
    }
    const out = new Uint32Array(4);
    sums.read(new Uint8Array(out.buffer), 0, { timeoutMs: WAIT_MS });
    expect(new Set(out.subarray(1)).size).toBe(3); // three different payloads, three different checksums
    q.queue(b);
    gate.close();
    await dev.detach(onDev);
    await dev.detach(sumsOnDev);
    sums.close();
  });

  test("a writer waits for the consumer's release fence (dma_resv usage READ), then proceeds", async () => {
    const lab = await labs.create();
    using q = lab.queue({ buffers: 1, size: PAGE_SIZE });
    q.queue(q.dequeue());
    const b = q.acquire({ timeoutMs: 0 });
    const reader = lab.sync.swSync("reader");
    using readDone = reader.createFence(1);
    q.release(b, readDone);
    const again = q.dequeue({ timeoutMs: 0 });
    expect(again.fence?.is(readDone.fence)).toBe(true);
    // The consumer still "reads": a CPU write through the read/write path must wait.
    expectErrno(() => again.buf.write(new Uint8Array([1]), 0, { timeoutMs: 20 }), "ETIMEDOUT");
    reader.inc(1);
    expect(again.buf.write(new Uint8Array([1]), 0, { timeoutMs: WAIT_MS })).toBe(1);
    q.queue(again);
    reader.close();
  });
});

describe("BufferQueue rules", () => {
  test("wrong-state calls are EINVAL and change nothing; empty sides are EAGAIN (timeoutMs 0) or ETIMEDOUT", async () => {
    const lab = await labs.create();
    await heapBalanced(() => lab)(async () => {
      const pagesBefore = lab.stats().pages.freeBytes;
      const q = lab.queue({ buffers: 2, size: PAGE_SIZE });
      expect([q.buffers, q.size, q.free, q.queued]).toEqual([2, PAGE_SIZE, 2, 0]);
      expectErrno(() => q.acquire({ timeoutMs: 0 }), "EAGAIN");
      expectErrno(() => q.acquire({ timeoutMs: 10 }), "ETIMEDOUT");
      await expectErrnoAsync(() => q.acquireAsync({ timeoutMs: 10 }), "ETIMEDOUT");
      const a = q.dequeue();
      const b = q.dequeue();
      expect([a.index, b.index]).toEqual([0, 1]);
      expectErrno(() => q.dequeue({ timeoutMs: 0 }), "EAGAIN");
      expectErrno(() => q.release(a), "EINVAL"); // dequeued, not acquired
      q.queue(b);
      expectErrno(() => q.queue(b), "EINVAL"); // queued already
      expect([q.state(0), q.state(1), q.queued]).toEqual(["dequeued", "queued", 1]);
      const other = lab.queue({ buffers: 1, size: PAGE_SIZE });
      const foreign: QueueBuffer = other.dequeue();
      expectErrno(() => q.queue(foreign), "EINVAL");
      expectErrno(() => q.queue(a, {} as never), "EINVAL"); // not a fence
      expect(q.state(0)).toBe("dequeued");
      expectErrno(() => q.dequeue({ timeoutMs: -1 }), "EINVAL");
      q.queue(a);
      expect(q.acquire().index).toBe(1); // FIFO: b was queued first
      other.close();
      q.close();
      expectErrno(() => q.dequeue(), "EBADF");
      q.close(); // harmless
      expect(lab.stats().pages.freeBytes).toBe(pagesBefore);
    })();
  });

  test("options are checked: buffers in 1..64, a size the heap can give, a known heap", async () => {
    const lab = await labs.create();
    const sync = lab.stats().sync.freeBytes;
    expectErrno(() => lab.queue({ buffers: 0, size: PAGE_SIZE }), "EINVAL");
    expectErrno(() => lab.queue({ buffers: 65, size: PAGE_SIZE }), "EINVAL");
    expectErrno(() => lab.queue({ size: 0 }), "EINVAL");
    expectErrno(() => lab.queue({ size: PAGE_SIZE, heap: "nope" as never }), "ENOENT");
    expectErrno(() => lab.queue({ buffers: 64, size: 1024 * MiB }), "ENOMEM");
    expect(lab.stats().sync.freeBytes).toBe(sync);
  });
});

/*
 * The conformance subset in a real browser (served at
 * /test/conformance.html?seed=N, cross-origin isolated). The page imports
 * the browser bundle (dist/browser/index.js, through its import map) and
 * starts module Web Workers with spawnLabThread: the shipped lab thread and
 * two test agents (test-browser/workers/agent.ts), which block where the
 * main thread may not. Checks, each reported on its own (protocol.ts):
 *   environment     isolation, and that this thread may not block
 *   labThread       the shipped worker loads from dist/browser/workers/ and
 *                   works on the page's memory
 *   fenceWake       agent A signals a fence while the main thread awaits
 *                   waitAsync and agent B blocks in wait
 *   uapiRw          pwrite/pread through agent A's Process against the
 *                   main thread's readAsync/writeAsync on one dma-buf
 *   implicitSync    agent B's pread and the main thread's readAsync both
 *                   wait for a write fence that the main thread signals
 *   blockingOnMain  the blocking forms on this thread with a fence pending
 *                   (EPERM), and again once it is signalled
 *   nonCoherent     the read/write path of a lab with the simulated CPU cache
 *   resvLockAsync   withLockAsync on this thread waits for a resv lock agent
 *                   A holds, and takes it once released
 *   missingWorker   spawnLabThread on a worker URL that does not exist
 *   sqpollClose     an IORING_SETUP_SQPOLL ring (its SQ thread a Web Worker)
 *                   completes a NOP and, closed, releases everything: the SQ
 *                   thread ends itself and says so (a Web Worker has no exit
 *                   event), so closed() settles
 *   storageOpfs     a storage device backed by an Origin Private File System
 *                   file: io_uring WRITE then READ (per-I/O mapped) and
 *                   READ_FIXED into a registered dma-buf, bytes and canaries
 *                   checked, a misaligned offset -EINVAL; the temporary file
 *                   is gone after shutdown
 * Every wait has a timeout; every worker is terminated at the end.
 */
import type { Remote } from "comlink";
import {
  DMA_HEAP_IOCTL_ALLOC, DMA_RESV_USAGE_WRITE, IORING_REGISTER_BUFFERS_UPDATE, IORING_RSRC_F_EXTENDED_UPDATE, Lab, O_DIRECT, O_RDWR, Process,
  canBlock, io_uring_cqe_seen, io_uring_get_sqe, io_uring_peek_cqe, io_uring_prep_read, io_uring_prep_read_fixed, io_uring_prep_write,
  io_uring_queue_exit, io_uring_queue_init, io_uring_register_buffers, io_uring_submit, spawnLabThread, spawnStorage,
  IORING_SETUP_SQPOLL, IoUringFile, io_uring_prep_nop, type DmaBuf, type IoUring, type LabThread, type Sqe,
} from "../../src/index.js";
import { brokenCanary, guard } from "../../test/helpers/canary.js";
import { firstDifference } from "../../test/helpers/bytes.js";
import { prng } from "../../test/helpers/prng.js";
import { xxh32 } from "../../test/helpers/xxh32.js";
import { outcome, outcomeAsync, report, type Check, type ConformanceResults } from "../protocol.js";
import type { AgentApi } from "../workers/agent.js";

const WAIT_MS = 10_000;
const seed = Number(new URLSearchParams(location.search).get("seed") ?? "1") >>> 0;

/** Rejects when the promise has not settled within ms (a worker that died never answers). */
function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Asks agent A how many threads wait on the fence until `count` do; throws after WAIT_MS. */
async function waitersReach(agent: Remote<AgentApi>, fence: number, count: number): Promise<number> {
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    const n = await bounded(agent.waiters(fence), WAIT_MS, "agent.waiters");
    if (n >= count) return n;
    if (performance.now() > deadline) throw new Error(`${count} waiters on fence ${fence}: only ${n} within ${WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** One io_uring request from this thread, which may not block: submit, then poll the CQ (bounded); its res. */
async function oneIo(ring: IoUring, prep: (sqe: Sqe) => void): Promise<number> {
  prep(io_uring_get_sqe(ring)!);
  io_uring_submit(ring);
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    const { cqe } = io_uring_peek_cqe(ring);
    if (cqe !== undefined) {
      io_uring_cqe_seen(ring, cqe);
      return cqe.res;
    }
    if (performance.now() > deadline) throw new Error(`no completion within ${WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function check<T>(run: () => Promise<T>): Promise<Check<T>> {
  try {
    return await run();
  } catch (e) {
    return { error: e instanceof Error ? e.stack ?? e.message : String(e) };
  }
}

report(async (): Promise<ConformanceResults> => {
  const lab = await Lab.create({ memoryBytes: 64 << 20 });
  const threads: LabThread[] = [];
  const agent = async (name: string) => {
    const entry = new URL("./workers/agent.mjs", import.meta.url);
    const thread = await bounded(spawnLabThread(lab, { entry, name }), WAIT_MS, `spawnLabThread ${name}`);
    threads.push(thread);
    return thread.api as unknown as Remote<AgentApi>;
  };
  const buffers: DmaBuf[] = [];
  try {
    const a = await agent("agent-a");
    const b = await agent("agent-b");
    const timeline = lab.sync.timeline({ driver: "browser-test", name: "main" });

    const environment = await check(async () => ({
      crossOriginIsolated, canBlock: canBlock(), userAgent: navigator.userAgent,
    }));

    const labThread = await check(async () => {
      const thread = await bounded(spawnLabThread(lab), WAIT_MS, "spawnLabThread lab-thread");
      threads.push(thread);
      const view = lab.alloc(4096);
      try {
        await bounded(thread.api.fill(lab.offsetOf(view), 0x5a, view.length), WAIT_MS, "lab thread fill");
        const checksum = await bounded(thread.api.checksumRange(lab.offsetOf(view), view.length, 0), WAIT_MS, "lab thread checksum");
        return { filledBytes: view.filter((x) => x === 0x5a).length, length: view.length, checksum, expectedChecksum: xxh32(view) };
      } finally {
        lab.free(view);
      }
    });

    const fenceWake = await check(async () => {
      using fence = timeline.createFence();
      const mainWait = fence.waitAsync(WAIT_MS);
      const workerWait = b.wait(fence.offset, WAIT_MS);
      const waitersAtSignal = await waitersReach(a, fence.offset, 2);
      const signalledBefore = await bounded(a.signal(fence.offset), WAIT_MS, "agent A signal");
      const [mainLeft, worker] = await bounded(Promise.all([mainWait, workerWait]), WAIT_MS, "both waits");
      return {
        waitersAtSignal, signalledBefore, mainLeft, workerLeft: worker.left, workerStatus: worker.status,
        status: fence.status, waitersAfter: await a.waiters(fence.offset),
      };
    });

    const buf = lab.heap("system").alloc(64 * 1024);
    buffers.push(buf);
    const len = 10_000;
    const pos = 100;
    const uapiRw = await check(async () => {
      const fd = await a.importFd(buf.share());
      try {
        const workerWrote = await bounded(a.pwrite(fd, seed, len, pos, WAIT_MS), WAIT_MS, "agent pwrite");
        const got = lab.alloc(len);
        const workerData = prng(seed).bytes(new Uint8Array(len));
        const mainData = prng(seed + 1).bytes(new Uint8Array(5000));
        try {
          const mainRead = await buf.readAsync(got, pos, { timeoutMs: WAIT_MS });
          const mainWrote = await buf.writeAsync(mainData, 30_000, { timeoutMs: WAIT_MS });
          const back = await bounded(a.pread(fd, mainData.length, 30_000, WAIT_MS), WAIT_MS, "agent pread");
          return {
            workerWrote, mainRead, mainReadDigest: xxh32(got), workerDataDigest: xxh32(workerData),
            firstDifference: firstDifference(got, workerData),
            mainWrote, workerRead: back.bytes, workerReadDigest: back.digest, mainDataDigest: xxh32(mainData),
          };
        } finally {
          lab.free(got);
        }
      } finally {
        await a.close(fd);
      }
    });

    const implicitSync = await check(async () => {
      using fence = timeline.createFence();
      using syncFile = lab.sync.syncFile(fence);
      buf.importSyncFile(syncFile, "write");
      const fd = await b.importFd(buf.share());
      const out = new Uint8Array(len);
      let mainSettled = false;
      const mainRead = buf.readAsync(out, pos, { timeoutMs: WAIT_MS }).finally(() => { mainSettled = true; });
      const workerRead = b.pread(fd, len, pos, WAIT_MS);
      const waitersAtSignal = await waitersReach(a, fence.offset, 2);
      const mainSettledBeforeSignal = mainSettled;
      fence.signal();
      const [n, worker] = await bounded(Promise.all([mainRead, workerRead]), WAIT_MS, "both reads");
      await b.close(fd);
      return {
        waitersAtSignal, mainSettledBeforeSignal, mainRead: n, mainDigest: xxh32(out),
        workerRead: worker.bytes, workerDigest: worker.digest, expectedDigest: xxh32(prng(seed).bytes(new Uint8Array(len))),
      };
    });

    const blockingOnMain = await check(async () => {
      using fence = timeline.createFence();
      using syncFile = lab.sync.syncFile(fence);
      const resv = lab.sync.resv();
      const small = lab.heap("system").alloc(4096);
      buffers.push(small);
      try {
        resv.withLock(() => {
          resv.reserveFences(1);
          resv.addFence(fence, DMA_RESV_USAGE_WRITE);
        });
        small.importSyncFile(syncFile, "write");
        const into = new Uint8Array(16);
        const pending = {
          fenceWait: outcome(() => fence.wait(WAIT_MS)),
          syncFileWait: outcome(() => syncFile.wait(WAIT_MS)),
          resvWait: outcome(() => resv.wait(DMA_RESV_USAGE_WRITE, WAIT_MS)),
          read: outcome(() => small.read(into, 0)),
          beginCpuAccess: outcome(() => small.beginCpuAccess("read", WAIT_MS)),
          waitersAfterFailures: await a.waiters(fence.offset),
        };
        fence.signal();
        return {
          ...pending,
          fenceWaitSignalled: outcome(() => fence.wait(WAIT_MS)),
          readSignalled: outcome(() => small.read(into, 0)),
        };
      } finally {
        resv.put();
      }
    });

    const nonCoherent = await check(async () => {
      using other = await Lab.create({ memoryBytes: 16 << 20, coherent: false });
      const cached = other.heap("system").alloc(8192);
      try {
        const data = prng(seed + 2).bytes(new Uint8Array(3000));
        const wrote = await cached.writeAsync(data, 100, { timeoutMs: WAIT_MS });
        const back = new Uint8Array(data.length);
        const read = await cached.readAsync(back, 100, { timeoutMs: WAIT_MS });
        return { coherent: other.coherent, wrote, read, digest: xxh32(back), expectedDigest: xxh32(data) };
      } finally {
        cached.close();
      }
    });

    const resvLockAsync = await check(async () => {
      const buf = lab.heap("system").alloc(4096);
      buffers.push(buf);
      const resv = buf.record.resv;
      const before = resv.lockStats();
      const release = lab.alloc(4);
      const word = new Int32Array(release.buffer, release.byteOffset, 1);
      const held = bounded(a.holdResvLock(resv.offset, release.byteOffset, WAIT_MS), WAIT_MS, "agent.holdResvLock");
      // Until the agent holds it: its acquisition is counted.
      const deadline = performance.now() + WAIT_MS;
      while (resv.lockStats().acquisitions === before.acquisitions) {
        if (performance.now() > deadline) throw new Error("the agent never took the resv lock");
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      // Asked while the agent holds it (so it must wait), released after.
      const acquired = resv.withLockAsync(() => lab.sync.clock.nowNs(), WAIT_MS);
      Atomics.store(word, 0, 1);
      Atomics.notify(word, 0);
      const acquiredNs = await acquired;
      lab.free(release);
      const agentReleasedNs = await held;
      const after = resv.lockStats();
      return {
        acquiredAfterRelease: acquiredNs >= agentReleasedNs, agentReleasedNs,
        contended: after.contended - before.contended, acquisitions: after.acquisitions - before.acquisitions,
      };
    });

    const missingWorker = await check(() => outcomeAsync(async () => {
      const entry = new URL("./workers/no-such-worker.mjs", import.meta.url);
      threads.push(await bounded(spawnLabThread(lab, { entry, name: "missing" }), WAIT_MS, "spawnLabThread of a missing worker"));
      return "spawned";
    }));

    const sqpollClose = await check(async () => {
      using other = await Lab.create({ memoryBytes: 16 << 20 });
      const proc = new Process(other);
      const ring = io_uring_queue_init(proc, 8, { flags: IORING_SETUP_SQPOLL, sq_thread_idle: 20 });
      const file = proc.file(ring.fd) as IoUringFile;
      await bounded(file.started, WAIT_MS, "the SQ thread's start");
      const nop = await oneIo(ring, (sqe) => io_uring_prep_nop(sqe));
      const before = other.stats().user.freeBytes;
      io_uring_queue_exit(ring);
      await bounded(file.closed(), WAIT_MS, "closed() of an SQPOLL ring");
      return { nop, closed: true, userBytesFreed: other.stats().user.freeBytes - before };
    });

    const storageOpfs = await check(async () => {
      using other = await Lab.create({ memoryBytes: 32 << 20 });
      const KiB = 1024;
      const storage = await spawnStorage(other, { name: "nvme0n1", size: 256 * KiB, blockSize: 4096 });
      const name = storage.path;
      let ring: IoUring | undefined;
      const proc = new Process(other);
      try {
        const disk = proc.open("/dev/nvme0n1", O_RDWR | O_DIRECT);
        ring = io_uring_queue_init(proc, 8);
        const data = prng(seed + 3).bytes(new Uint8Array(16 * KiB));
        // User memory, 4 KiB aligned (O_DIRECT), a page of canaries either side of each destination.
        const area = other.alloc(3 * 16 * KiB, { align: 4096 });
        const src = area.subarray(16 * KiB, 32 * KiB);
        src.set(data);
        const wrote = await oneIo(ring, (sqe) => io_uring_prep_write(sqe, disk, src, src.length, 32 * KiB));
        const back = other.alloc(16 * KiB + 8 * KiB, { align: 4096 });
        const g = guard(back, 4 * KiB, 16 * KiB, 4 * KiB);
        const read = await oneIo(ring, (sqe) => io_uring_prep_read(sqe, disk, back.subarray(4 * KiB, 20 * KiB), 16 * KiB, 32 * KiB));
        const readDigest = xxh32(back.subarray(4 * KiB, 20 * KiB));
        const canaries = brokenCanary(g, 4 * KiB) ?? "intact";
        // A registered dma-buf with the disk as its target: READ_FIXED straight into its pages.
        const heap = proc.open("/dev/dma_heap/system", O_RDWR);
        const alloc = { len: 16 * KiB, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
        proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
        proc.close(heap);
        io_uring_register_buffers(ring, [{ iov_base: 0, iov_len: 0 }]);
        const UADDR = 0x1000_0000;
        proc.io_uring_register(ring.fd, IORING_REGISTER_BUFFERS_UPDATE,
          { offset: 0, flags: IORING_RSRC_F_EXTENDED_UPDATE, data: [{ iov_uaddr: UADDR, target_fd: disk, dmabuf_fd: alloc.fd }], nr: 1 }, 1);
        const fixedRead = await oneIo(ring, (sqe) => io_uring_prep_read_fixed(sqe, disk, UADDR, 16 * KiB, 32 * KiB, 0));
        const fromDmaBuf = new Uint8Array(16 * KiB);
        await proc.readAsync(alloc.fd, fromDmaBuf, 0, { timeoutMs: WAIT_MS });
        const misaligned = await oneIo(ring, (sqe) => io_uring_prep_read(sqe, disk, back.subarray(4 * KiB, 8 * KiB), 4 * KiB, 100));
        other.free(area);
        other.free(back);
        return {
          name, wrote, read, fixedRead, misaligned, canaries, readDigest, fixedDigest: xxh32(fromDmaBuf), expectedDigest: xxh32(data),
          removedAfterShutdown: false,
        };
      } finally {
        if (ring !== undefined) io_uring_queue_exit(ring);
        proc.closeAll();
        await storage.shutdown();
      }
    }).then(async (r) => {
      if ("error" in r) return r;
      // The temporary OPFS file went with the device.
      const root = await (navigator.storage as unknown as { getDirectory(): Promise<{ getFileHandle(n: string): Promise<unknown> }> }).getDirectory();
      return { ...r, removedAfterShutdown: await root.getFileHandle(r.name).then(() => false, () => true) };
    });

    timeline.unref();
    return { seed, environment, labThread, fenceWake, uapiRw, implicitSync, blockingOnMain, nonCoherent, resvLockAsync, missingWorker, sqpollClose, storageOpfs };
  } finally {
    for (const buf of buffers) buf.close();
    await Promise.all(threads.map((t) => t.terminate()));
    lab.close();
  }
});

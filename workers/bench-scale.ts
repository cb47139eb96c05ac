/*
 * A thread of the scaling benchmark (bench/scale.ts, `dmabuf-lab bench
 * scale`), bundled to build/workers/bench-scale.mjs. Node-only (it writes a
 * file in /dev/shm for its peer rows).
 *
 * It attaches to the lab and opens a Process of its own, with its own
 * dma-bufs (one per size, system heap, made on first use), its own user
 * buffer in the arena (lab.alloc) and its own /dev/shm file (`shmFile`), so
 * that nothing it touches on purpose is shared with another thread: what
 * the threads still share is the lab's own machinery, which is what the
 * benchmark measures.
 *
 * ScaleThreadApi (comlink, the control plane):
 *   (a uapi-full job turns this thread's read/write fast path off, any
 *   other job on)
 *   prepare(job)  makes the job's dma-buf and checks that one call of the
 *                 job moves the right bytes (a pwrite then a pread of a
 *                 pattern, compared); EIO when they differ
 *   run(job)      adds one to the `ready` word, waits (bounded) until the
 *                 `start` word is the job's generation, then calls the
 *                 operation in batches until the `stop` word is the
 *                 generation; answers its calls and the time it ran
 *   close()       closes its fds and its file
 * The control words are in a SharedArrayBuffer of the benchmark's own, one
 * per 64-byte line (SCALE_*, bench/scale_protocol.ts); the threads only read START and STOP, so the
 * benchmark's own words are never written on the measured path.
 */
import * as Comlink from "comlink";
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { Lab } from "../src/api/lab.js";
import { Process } from "../src/uapi/process.js";
import { DMA_HEAP_IOCTL_ALLOC, O_RDWR } from "../src/uapi/uapi.js";
import { DmaBufError } from "../src/errno.js";
import { rwFastPath } from "../src/dmabuf/rw_fast.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import { workerContext } from "../src/thread/spawn.js";
import {
  SCALE_READY, SCALE_START, SCALE_STOP, type ScaleJob, type ScaleThreadApi, type ScaleThreadData,
} from "../bench/scale_protocol.js";

installErrorTransfer();
const { data, endpoint } = await workerContext<ScaleThreadData>();
const lab = await Lab.attach(data.handle);
const proc = new Process(lab);
const control = new Int32Array(data.control);
const user = lab.alloc(data.maxBytes, { align: 4096 });
const shmFd = openSync(data.shmFile, "w+", 0o600);
ftruncateSync(shmFd, data.maxBytes);
const heapFd = proc.open("/dev/dma_heap/system", O_RDWR);
/** This thread's dma-buf fd per size. */
const bufFds = new Map<number, number>();

function bufFd(bytes: number): number {
  let fd = bufFds.get(bytes);
  if (fd === undefined) {
    const req = { len: bytes, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
    proc.ioctl(heapFd, DMA_HEAP_IOCTL_ALLOC, req);
    fd = req.fd;
    bufFds.set(bytes, fd);
  }
  return fd;
}

/** One call of the job, as a closure: the measured loop calls it `batch` times per look at STOP. */
function operation(job: ScaleJob): () => void {
  const view = user.subarray(0, job.bytes);
  rwFastPath.enabled = job.path !== "uapi-full";
  if (job.path === "fs") {
    return job.op === "pwrite" ? () => { writeSync(shmFd, view, 0, job.bytes, 0); } : () => { readSync(shmFd, view, 0, job.bytes, 0); };
  }
  const fd = bufFd(job.bytes);
  return job.op === "pwrite" ? () => { proc.pwrite(fd, view, 0); } : () => { proc.pread(fd, view, 0); };
}

function check(job: ScaleJob): void {
  const view = user.subarray(0, job.bytes);
  for (let i = 0; i < view.length; i++) view[i] = (i * 131 + job.generation) & 0xff;
  const expected = view.slice();
  rwFastPath.enabled = job.path !== "uapi-full";
  const fd = job.path === "fs" ? -1 : bufFd(job.bytes);
  const w = job.path === "fs" ? writeSync(shmFd, view, 0, job.bytes, 0) : proc.pwrite(fd, view, 0);
  view.fill(0);
  const r = job.path === "fs" ? readSync(shmFd, view, 0, job.bytes, 0) : proc.pread(fd, view, 0);
  if (w !== job.bytes || r !== job.bytes || Buffer.compare(Buffer.from(expected), Buffer.from(view.slice())) !== 0) {
    throw new DmaBufError("EIO", "bench_scale", `${data.name}: a ${job.bytes}-byte ${job.path} ${job.op} moved wrong bytes (wrote ${w}, read ${r})`);
  }
}

const api: ScaleThreadApi = {
  prepare(job) {
    check(job);
  },
  run(job) {
    const call = operation(job);
    const { generation, batch } = job;
    Atomics.add(control, SCALE_READY, 1);
    const deadline = performance.now() + job.timeoutMs;
    while (Atomics.load(control, SCALE_START) !== generation) {
      const left = deadline - performance.now();
      if (left <= 0) throw new DmaBufError("ETIMEDOUT", "bench_scale", `${data.name}: the window did not open within ${job.timeoutMs} ms`);
      Atomics.wait(control, SCALE_START, Atomics.load(control, SCALE_START), Math.min(left, 50));
    }
    const t0 = performance.now();
    let calls = 0;
    // STOP is read once per batch: a plain look at a line nobody writes until the window closes.
    // At least one batch: a thread the scheduler ran only after STOP (a loaded machine) still
    // measures its calls over its own time, instead of answering none (a rate of 0, then NaN).
    do {
      for (let i = 0; i < batch; i++) call();
      calls += batch;
    } while (Atomics.load(control, SCALE_STOP) !== generation);
    return { calls, elapsedMs: performance.now() - t0 };
  },
  close() {
    proc.closeAll();
    lab.free(user);
    lab.close();
    closeSync(shmFd);
    try { unlinkSync(data.shmFile); } catch { /* already gone */ }
  },
};

Comlink.expose(api, endpoint);

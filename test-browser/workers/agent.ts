/*
 * A browser test worker (bundled to build/test-browser/workers/agent.mjs),
 * started by the conformance page through spawnLabThread(lab, {entry}), so
 * that the page's side runs the library's own spawn path (spawn.ts, module
 * Web Workers, comlink over a MessagePort). It attaches to the lab and does,
 * on command, what the page cannot do itself: block. Fences cross as arena
 * offsets, dma-bufs as fd tokens (imported into this worker's Process);
 * every blocking call has the caller's timeout. While a call blocks, this
 * worker answers nothing else: the page asks another agent meanwhile.
 */
import * as Comlink from "comlink";
import { FENCE_WAITERS } from "../../src/engine/abi.js";
import { Lab } from "../../src/api/lab.js";
import { Resv } from "../../src/sync/resv.js";
import { threadToken } from "../../src/memory/futex.js";
import { installErrorTransfer } from "../../src/thread/errors.js";
import type { LabThreadData } from "../../src/thread/protocol.js";
import { workerContext } from "../../src/thread/spawn.js";
import type { FdToken } from "../../src/uapi/file.js";
import type { ShareToken } from "../../src/sync/flight.js";
import { prng } from "../../test/helpers/prng.js";
import { xxh32 } from "../../test/helpers/xxh32.js";

export interface AgentApi {
  hello(): { threadId: number; name: string };
  /** Threads counted as waiting on the fence (its FENCE_WAITERS word), now. */
  waiters(fence: number): number;
  /** checkAndSignal(): true when the fence was signalled before. */
  signal(fence: number): boolean;
  /** Fence.wait(timeoutMs) here (Atomics.wait): the time left and the status after. */
  wait(fence: number, timeoutMs: number): { left: number; status: number };
  /** Process.importFd: the fd in this worker's Process. */
  importFd(token: FdToken | ShareToken<"dma-buf">): number;
  /** Process.pwrite of `len` bytes of prng(seed) from arena memory at `pos`: bytes written. */
  pwrite(fd: number, seed: number, len: number, pos: number, timeoutMs: number): number;
  /** Process.pread of `len` bytes at `pos` into arena memory: bytes read and the xxh32 of those bytes. */
  pread(fd: number, len: number, pos: number, timeoutMs: number): { bytes: number; digest: number };
  close(fd: number): void;
  /**
   * Takes the resv lock at `resv` and holds it until the i32 at arena offset
   * `release` is non-zero (blocking, at most timeoutMs); returns the lab-clock
   * ns of its unlock.
   */
  holdResvLock(resv: number, release: number, timeoutMs: number): number;
}

installErrorTransfer();
const { data, endpoint } = await workerContext<LabThreadData>();
const lab = await Lab.attach(data.handle);
const { sync, process } = lab;
// Set-up that spans a task, as a device's may: spawnLabThread's hello()
// arrives meanwhile and must wait in the port until expose() (spawn.ts).
await new Promise((resolve) => setTimeout(resolve, 10));

/** Runs fn on an owned view of the fence at `offset`, put after. */
function withFence<T>(offset: number, fn: (f: ReturnType<typeof sync.fenceAt>) => T): T {
  const fence = sync.fenceAt(offset);
  try {
    return fn(fence);
  } finally {
    fence.put();
  }
}

/** Runs fn on `len` bytes of arena memory, freed after. */
function withScratch<T>(len: number, fn: (view: Uint8Array) => T): T {
  const view = lab.alloc(len, { zero: false });
  try {
    return fn(view);
  } finally {
    lab.free(view);
  }
}

const api: AgentApi = {
  hello: () => ({ threadId: threadToken(), name: data.name }),
  waiters: (fence) => Atomics.load(sync.i32, (fence + FENCE_WAITERS) >>> 2),
  signal: (offset) => withFence(offset, (f) => f.checkAndSignal()),
  wait: (offset, timeoutMs) => withFence(offset, (f) => ({ left: f.wait(timeoutMs), status: f.status })),
  importFd: (token) => process.importFd(token),
  pwrite: (fd, seed, len, pos, timeoutMs) =>
    withScratch(len, (view) => process.pwrite(fd, prng(seed).bytes(view), pos, { timeoutMs })),
  pread: (fd, len, pos, timeoutMs) => withScratch(len, (view) => {
    const bytes = process.pread(fd, view, pos, { timeoutMs });
    return { bytes, digest: xxh32(view.subarray(0, bytes)) };
  }),
  close: (fd) => process.close(fd),
  holdResvLock: (offset, release, timeoutMs) => {
    const resv = new Resv(sync, offset, false);
    resv.lock(timeoutMs);
    try {
      const deadline = performance.now() + timeoutMs;
      while (Atomics.load(sync.i32, release >>> 2) === 0) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`holdResvLock: not told to release within ${timeoutMs} ms`);
        Atomics.wait(sync.i32, release >>> 2, 0, left);
      }
      return sync.clock.nowNs();
    } finally {
      resv.unlock();
    }
  },
};

Comlink.expose(api, endpoint);

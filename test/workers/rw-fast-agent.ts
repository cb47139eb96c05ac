/*
 * One thread of the read/write fast path's differential test
 * (test/rw-fast.test.ts): runs its share of a list of operations on shared
 * dma-bufs, in turns (the shared turn word names the operation whose turn it
 * is), with the fast path on or off, and reports each operation's outcome.
 *
 * Operations: pread / pwrite (sync or async, one or two iovecs, arena or
 * foreign memory, O_NONBLOCK or a zero timeout so that nothing waits), a
 * pending fence of this thread's own timeline added to a buffer's resv, and
 * the signal of this thread's oldest pending fence. Reads land between
 * canaries; a broken canary fails the thread.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import { rwAsync, rwSync } from "../../src/dmabuf/rw.js";
import { rwFastPath } from "../../src/dmabuf/rw_fast.js";
import { DmaBufError } from "../../src/errno.js";
import type { Fence } from "../../src/sync/fence.js";
import { brokenCanary, guard } from "../helpers/canary.js";
import { prng } from "../helpers/prng.js";
import { runWorker } from "./protocol.js";

export type RwFastOp =
  | { w: number; kind: "pread" | "pwrite"; buf: number; pos: number; len: number; split: number; foreign: boolean;
      async: boolean; nonblock: boolean; seed: number }
  | { w: number; kind: "fence"; buf: number; usage: 1 | 2 }
  | { w: number; kind: "signal" };

export interface RwFastAgentData {
  handle: LabHandle;
  buffers: number[];
  ops: RwFastOp[];
  me: number;
  fast: boolean;
  /** Int32Array word 0: the index of the operation whose turn it is. */
  turn: SharedArrayBuffer;
  timeoutMs: number;
}

/** An operation's outcome: bytes moved (and, for a read, an FNV-1a hash of them) or an errno code. */
export type RwFastOutcome = { op: number; n: number; hash?: number } | { op: number; code: string };

export interface RwFastReport {
  type: "done";
  outcomes: RwFastOutcome[];
  taken: number;
  fallbacks: number;
}

const MARGIN = 64;

function fnv(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

runWorker<RwFastAgentData, RwFastReport>(async ({ handle, buffers, ops, me, fast, turn, timeoutMs }) => {
  const lab = await Lab.attach(handle);
  rwFastPath.enabled = fast;
  const bufs = buffers.map((o) => DmaBufRecord.attach(lab.sync, o));
  const timeline = lab.sync.timeline({ driver: "rw-fast-agent", name: `agent ${me}` });
  const area = lab.alloc(3 * 4096 + 2 * MARGIN, { zero: false });
  const pending: Fence[] = [];
  const outcomes: RwFastOutcome[] = [];
  const words = new Int32Array(turn);
  const deadline = performance.now() + timeoutMs;
  try {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      if (op.w !== me) continue;
      for (let t = Atomics.load(words, 0); t !== i; t = Atomics.load(words, 0)) {
        const left = deadline - performance.now();
        if (left <= 0 || t > i) throw new Error(`agent ${me}: operation ${i}'s turn never came (turn ${t})`);
        Atomics.wait(words, 0, t, left);
      }
      outcomes.push(await run(i, op));
      // The next operation's turn: a seq-cst store, then every waiter woken.
      Atomics.store(words, 0, i + 1);
      Atomics.notify(words, 0);
    }
    return { type: "done", outcomes, taken: rwFastPath.taken, fallbacks: rwFastPath.fallbacks };
  } finally {
    for (const f of pending) {
      f.signal();
      f.put();
    }
    lab.free(area);
    bufs.forEach((b) => b.put());
    timeline.unref();
    lab.close();
  }

  async function run(i: number, op: RwFastOp): Promise<RwFastOutcome> {
    if (op.kind === "fence") {
      const f = timeline.createFence();
      const { resv } = bufs[op.buf];
      resv.withLock(() => { resv.reserveFences(1); resv.addFence(f, op.usage); });
      pending.push(f);
      return { op: i, n: 0 };
    }
    if (op.kind === "signal") {
      const f = pending.shift();
      f?.signal();
      f?.put();
      return { op: i, n: f === undefined ? 0 : 1 };
    }
    const write = op.kind === "pwrite";
    const g = guard(area, MARGIN, op.len, MARGIN);
    const dest = area.subarray(MARGIN, MARGIN + op.len);
    if (write) prng(op.seed).bytes(dest);
    const user = op.foreign ? Uint8Array.from(dest) : dest;
    const iov = op.split === 0 ? [user] : [user.subarray(0, op.split), user.subarray(op.split)];
    const options = op.nonblock ? { nonblock: true } : { timeoutMs: 0 };
    try {
      const n = op.async ? await rwAsync(bufs[op.buf], iov, op.pos, op.kind, options) : rwSync(bufs[op.buf], iov, op.pos, op.kind, options);
      if (write) return { op: i, n };
      if (op.foreign) dest.set(user.subarray(0, n));
      const broken = brokenCanary({ ...g, len: n }, MARGIN);
      if (broken !== undefined) throw new Error(`agent ${me}: operation ${i} (${JSON.stringify(op)}): ${broken}`);
      return { op: i, n, hash: fnv(dest.subarray(0, n)) };
    } catch (e) {
      if (!(e instanceof DmaBufError)) throw e;
      return { op: i, code: e.code };
    }
  }
});

/*
 * One thread of the fast path's concurrency test (test/rw-fast.test.ts):
 * after the start flag, pwrites and preads the same 64 bytes of a shared
 * dma-buf `calls` times, as fast as it can. Every write fills the range with
 * one byte (this thread's id and the call's number); every read must see
 * 64 equal bytes, or it saw a write half done. Reports its torn reads and
 * how many calls its fast path took and sent back.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import { preadv, pwritev } from "../../src/dmabuf/rw.js";
import { rwFastPath } from "../../src/dmabuf/rw_fast.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface RwHammerData {
  handle: LabHandle;
  buffer: number;
  me: number;
  calls: number;
  start: Int32Array;
  timeoutMs: number;
}

export interface RwHammerReport {
  type: "done";
  torn: number;
  taken: number;
  fallbacks: number;
}

runWorker<RwHammerData, RwHammerReport>(async ({ handle, buffer, me, calls, start, timeoutMs }) => {
  const lab = await Lab.attach(handle);
  const buf = DmaBufRecord.attach(lab.sync, buffer);
  const out = lab.alloc(64);
  const data = lab.alloc(64);
  let torn = 0;
  try {
    readyThenAwaitStart(start, timeoutMs, `hammer ${me}`);
    for (let i = 0; i < calls; i++) {
      data.fill((me * 64 + (i % 64)) & 0xff);
      pwritev(buf, [data], 0, { timeoutMs });
      preadv(buf, [out], 0, { timeoutMs });
      if (out.some((b) => b !== out[0])) torn++;
    }
    return { type: "done", torn, taken: rwFastPath.taken, fallbacks: rwFastPath.fallbacks };
  } finally {
    lab.free(out);
    lab.free(data);
    buf.put();
    lab.close();
  }
});

/*
 * Reads a whole dma-buf through the read/write path in another thread; the
 * read blocks until the buffer's pending write fences signal. Reports what
 * it read, so the test can check it saw one whole generation of the data.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import { preadv } from "../../src/dmabuf/rw.js";
import { runWorker } from "./protocol.js";

export interface RwReaderData {
  handle: LabHandle;
  buffer: number;
  timeoutMs: number;
}

export interface RwReaderReport {
  type: "done";
  bytes: number;
  distinct: number[];
}

runWorker<RwReaderData, RwReaderReport>(async ({ handle, buffer, timeoutMs }) => {
  const lab = await Lab.attach(handle);
  const buf = DmaBufRecord.attach(lab.sync, buffer);
  const out = lab.alloc(buf.size, { zero: false });
  try {
    const bytes = preadv(buf, [out], 0, { timeoutMs });
    return { type: "done", bytes, distinct: [...new Set(out)].sort((a, b) => a - b) };
  } finally {
    lab.free(out);
    buf.put();
    lab.close();
  }
});

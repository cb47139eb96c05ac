/*
 * Attaches to a dma-buf by its offset in another thread, checksums its
 * contents through this thread's engine, renames it, and drops its reference:
 * the buffer is shared, not copied.
 */
import { Lab } from "../../src/api/lab.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import type { LabHandle } from "../../src/lab.js";
import { runWorker } from "./protocol.js";

export interface DmabufReaderData {
  handle: LabHandle;
  buffer: number;
  rename: string;
}

export interface DmabufReaderReport {
  type: "done";
  size: number;
  name: string;
  checksum: number;
  segments: number;
}

runWorker<DmabufReaderData, DmabufReaderReport>(async ({ handle, buffer, rename }) => {
  const lab = await Lab.attach(handle);
  const buf = DmaBufRecord.attach(lab.sync, buffer);
  try {
    const report: DmabufReaderReport = {
      type: "done", size: buf.size, name: buf.name, checksum: lab.engine.checksum(buf.segmentTable),
      segments: buf.segments().length,
    };
    buf.setName(rename);
    return report;
  } finally {
    buf.put();
    lab.close();
  }
});

/*
 * The exporter in another thread (bundled to build/test-workers/attach-revoker.mjs),
 * for test/dmabuf-attachment.test.ts: posts "ready", waits for the start
 * flag (word 0 of `flags`), revokes the buffer at `buffer`, then stores 1
 * in word 1 of `flags` and notifies it, so that a main thread blocked in
 * Atomics.wait (its event loop not turning) learns it; reports "done".
 */
import { dmaBufRevoke } from "../../src/dmabuf/attachment.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface AttachRevokerData {
  handle: LabHandle;
  buffer: number;
  flags: Int32Array;
  timeoutMs: number;
}

export interface AttachRevokerReport {
  type: "done";
  revoked: boolean;
}

runWorker<AttachRevokerData, AttachRevokerReport>(async ({ handle, buffer, flags, timeoutMs }) => {
  const lab = await Lab.attach(handle);
  const buf = DmaBufRecord.attach(lab.sync, buffer);
  try {
    readyThenAwaitStart(flags, timeoutMs, "attach-revoker");
    const revoked = dmaBufRevoke(buf);
    // Published after the revoke's unlock: the main thread sees the buffer revoked.
    Atomics.store(flags, 1, 1);
    Atomics.notify(flags, 1);
    return { type: "done", revoked };
  } finally {
    buf.put();
    lab.close();
  }
});

/*
 * A device driver in its own thread (bundled to build/test-workers/attach-importer.mjs),
 * for test/dmabuf-attachment.test.ts: the importer side of a dynamic
 * attachment to a buffer that the main thread exports and then revokes.
 *
 * It attaches to the lab, makes its own IOMMU, attaches dynamically to the
 * buffer at `buffer`, maps it under the resv lock, reads it as its device
 * would (translate with IOMMU_READ, bytes copied out of each run) and posts
 * {type: "ready", ...AttachImporterReady}. The main thread then revokes,
 * does its own checks and sets word 0 of `go`. By `mode`:
 *   event-loop  waits (at most timeoutMs) for move_notify, which reaches this
 *               thread through its event loop, then blocks until `go`
 *   map         blocks until `go`, then calls map() at once, with no turn of
 *               the event loop in between: map() must deliver move_notify
 *               first, then fail
 * Either way it then translates its old IOVA, detaches, destroys its IOMMU
 * and reports what move_notify saw (AttachImporterReport). On an error it
 * leaves the IOMMU and the attachment to the lab's end.
 */
import { parentPort, threadId } from "node:worker_threads";
import { Iommu, IOMMU_READ } from "../../src/dmabuf/iommu.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import { dmaBufDynamicAttach, type DmaBufAttachment, type DmaSgTable } from "../../src/dmabuf/attachment.js";
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { runWorker } from "./protocol.js";

export interface AttachImporterData {
  handle: LabHandle;
  buffer: number;
  mode: "event-loop" | "map";
  /** Word 0 becomes non-zero once the main thread has revoked and checked. */
  go: Int32Array;
  timeoutMs: number;
}

export interface AttachImporterReady {
  type: "ready";
  threadId: number;
  iommu: number;
  attachment: number;
  table: DmaSgTable;
  /** The buffer as the device read it through its IOMMU. */
  bytes: Uint8Array;
}

/** What one move_notify call saw. */
export interface MoveNotifySeen {
  threadId: number;
  resvHeld: boolean;
  revoked: boolean;
  mapped: boolean;
  /** The code of map() called inside move_notify. */
  mapCode: string;
}

export interface AttachImporterReport {
  type: "done";
  calls: MoveNotifySeen[];
  /** mode "map": the code map() threw, and how many move_notify calls had run by then. */
  mapCode: string;
  callsBeforeMapFailed: number;
  /** The code of translating the old IOVA after the revoke. */
  translateCode: string;
  faults: number;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return "none";
  } catch (e) {
    if (e instanceof DmaBufError) return e.code;
    throw e;
  }
}

runWorker<AttachImporterData, AttachImporterReport>(async ({ handle, buffer, mode, go, timeoutMs }) => {
  const lab = await Lab.attach(handle);
  const buf = DmaBufRecord.attach(lab.sync, buffer);
  const iommu = Iommu.create(lab.sync);
  const calls: MoveNotifySeen[] = [];
  let notified!: () => void;
  const notifiedOnce = new Promise<void>((resolve) => { notified = resolve; });
  try {
    const att: DmaBufAttachment = dmaBufDynamicAttach(buf, iommu, {
      moveNotify(a) {
        calls.push({
          threadId, resvHeld: a.resv.mutex.heldByMe(), revoked: a.revoked, mapped: a.mapping !== null, mapCode: codeOf(() => a.map()),
        });
        notified();
      },
    });
    const table = att.resv.withLock(() => att.map());
    const bytes = new Uint8Array(table.bytes);
    let at = 0;
    iommu.translate(table.iova, table.bytes, IOMMU_READ, (addr, len) => {
      bytes.set(lab.arena.u8.subarray(addr, addr + len), at);
      at += len;
    });
    const ready: AttachImporterReady = { type: "ready", threadId, iommu: iommu.offset, attachment: att.offset, table, bytes };
    parentPort!.postMessage(ready);

    const awaitGo = () => {
      if (Atomics.wait(go, 0, 0, timeoutMs) === "timed-out") throw new Error(`no go within ${timeoutMs} ms`);
    };
    let mapCode = "none";
    let callsBeforeMapFailed = 0;
    if (mode === "map") {
      awaitGo();
      mapCode = codeOf(() => att.resv.withLock(() => att.map()));
      callsBeforeMapFailed = calls.length;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([notifiedOnce, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no move_notify within ${timeoutMs} ms`)), timeoutMs);
    })]).finally(() => clearTimeout(timer));
    if (mode === "event-loop") awaitGo();
    const translateCode = codeOf(() => iommu.translate(table.iova, table.bytes, IOMMU_READ, () => {}));
    const faults = iommu.faults().count;
    att.detach();
    iommu.destroy();
    return { type: "done", calls, mapCode, callsBeforeMapFailed, translateCode, faults };
  } finally {
    buf.put();
    lab.close();
  }
});

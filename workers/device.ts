/*
 * A device: a worker with its own engine instance over the lab's memory,
 * running the device loop (src/devices/runtime.ts) and serving the control
 * plane (DeviceApi) over comlink. Started by spawnDevice(); the driver
 * side of attachments lives here, so move_notify runs in this thread.
 */
import * as Comlink from "comlink";
import { DmaBufError } from "../src/errno.js";
import { Lab } from "../src/api/lab.js";
import { type DmaBufAttachment, dmaBufAttach, dmaBufDynamicAttach } from "../src/dmabuf/attachment.js";
import { DmaBufRecord } from "../src/dmabuf/dma_buf.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import { workerContext } from "../src/thread/spawn.js";
import { DeviceRuntime } from "../src/devices/runtime.js";
import type { DeviceApi, DeviceWorkerData } from "../src/devices/protocol.js";

installErrorTransfer();
const { data, endpoint } = await workerContext<DeviceWorkerData>();
const lab = await Lab.attach(data.handle);
const runtime = new DeviceRuntime(lab, data.device);
lab.trace.setThread(`device ${data.name}`, runtime.record.context);
const attachments = new Map<number, DmaBufAttachment>();
const revoked = new Set<number>();

function attachment(offset: number, syscall: string): DmaBufAttachment {
  const a = attachments.get(offset);
  if (a === undefined) throw new DmaBufError("EINVAL", syscall, `device ${data.name} has no attachment at ${offset}`);
  return a;
}

// Dynamic importers map under the buffer's resv lock (dma_resv_assert_held).
const mapOf = (a: DmaBufAttachment) => (a.dynamic ? a.resv.withLock(() => a.map()) : a.map());

const loop = runtime.run();

const api: DeviceApi = {
  hello: () => data.name,
  attach(buffer, dynamic) {
    const buf = DmaBufRecord.attach(lab.sync, buffer);
    try {
      const a = dynamic
        ? dmaBufDynamicAttach(buf, runtime.iommu, { moveNotify: (moved) => { revoked.add(moved.offset); } })
        : dmaBufAttach(buf, runtime.iommu);
      try {
        const { iova, bytes } = mapOf(a);
        attachments.set(a.offset, a);
        return { attachment: a.offset, iova, bytes };
      } catch (e) {
        a.detach();
        throw e;
      }
    } finally {
      buf.put();
    }
  },
  detach(offset) {
    const a = attachment(offset, "dma_buf_detach");
    a.detach();
    attachments.delete(offset);
    revoked.delete(offset);
  },
  map: (offset) => mapOf(attachment(offset, "dma_buf_map_attachment")),
  loadKernel: (url) => runtime.loadKernel(url),
  revoked: () => [...revoked],
  stats: () => runtime.record.stats(),
  async stop(drain) {
    runtime.stop(drain);
    await loop;
    for (const a of attachments.values()) a.detach();
    attachments.clear();
    // This thread's parked fence records go back to the depot before the worker is terminated.
    lab.close();
  },
};

Comlink.expose(api, endpoint);

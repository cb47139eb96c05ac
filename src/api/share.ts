/*
 * One way to share anything with another thread (THE SHARING RULE,
 * src/sync/flight.ts):
 *
 *   worker.postMessage(x.share());        // DmaBuf, Fence, SyncFile, SwSyncTimeline, Resv, BufferQueue, Device
 *   const x = lab.import(token);          // in the worker: that thread's object
 *   lab.dropToken(token);                 // instead, for a token that will not be imported
 *
 * Contract: share() takes a reference that the token carries; exactly one
 * import (lab.import or the class's X.import(lab, token)) in any thread
 * adopts it, and a second import of a copy is EBADF. dropToken() releases
 * it (it imports the token and closes what it made), so a token never
 * imported and never dropped keeps its object alive for the life of the
 * lab. Every token is checked on import: its shape and kind (EINVAL), its
 * flight record (EBADF when spent). A Device's token imports as a
 * DeviceHandle (src/devices/handle.ts): that thread submits jobs over the
 * buffers the Device attached; attaching, kernels and shutdown stay with
 * the spawning thread.
 */
import { DmaBufError } from "../errno.js";
import { Fence } from "../sync/fence.js";
import { shareKinds, type ShareKind, type ShareToken } from "../sync/flight.js";
import { Resv } from "../sync/resv.js";
import { SwSyncTimeline } from "../sync/sw_sync.js";
import { SyncFile } from "../sync/sync_file.js";
import { DmaBuf, type ObjectLab } from "./dma_buf.js";
import { BufferQueue } from "./queue.js";
import { DeviceHandle } from "../devices/handle.js";

/** What lab.import() gives for each kind of token. */
export interface Shared {
  "dma-buf": DmaBuf;
  fence: Fence;
  sync_file: SyncFile;
  sw_sync: SwSyncTimeline;
  resv: Resv;
  queue: BufferQueue;
  device: DeviceHandle;
}

type Importers = { [K in ShareKind]: (lab: ObjectLab, token: ShareToken<K>) => Shared[K] };

const importers: Importers = {
  "dma-buf": (lab, t) => DmaBuf.import(lab, t),
  fence: (lab, t) => Fence.import(lab, t),
  sync_file: (lab, t) => SyncFile.import(lab, t),
  sw_sync: (lab, t) => SwSyncTimeline.import(lab, t),
  resv: (lab, t) => Resv.import(lab, t),
  queue: (lab, t) => BufferQueue.import(lab, t),
  device: (lab, t) => DeviceHandle.import(lab, t),
};

const closers: { [K in ShareKind]: (x: Shared[K]) => void } = {
  "dma-buf": (x) => x.close(),
  fence: (x) => x.put(),
  sync_file: (x) => x.close(),
  sw_sync: (x) => x.close(),
  resv: (x) => x.put(),
  queue: (x) => x.close(),
  device: (x) => x.close(),
};

function kindOf(token: unknown, syscall: string): ShareKind {
  const kind = (token as { kind?: unknown } | null)?.kind;
  if (!shareKinds.includes(kind as ShareKind)) {
    throw new DmaBufError("EINVAL", syscall, `token kind '${String(kind)}' is not one of ${shareKinds.join(", ")}`);
  }
  return kind as ShareKind;
}

/** lab.import(): this thread's object for a share() token of any kind. */
export function importToken<K extends ShareKind>(lab: ObjectLab, token: ShareToken<K>): Shared[K] {
  const kind = kindOf(token, "import");
  return (importers[kind] as unknown as (lab: ObjectLab, t: ShareToken<K>) => Shared[K])(lab, token);
}

/** lab.dropToken(): releases the reference a token carries (EBADF when it was imported or dropped already). */
export function dropToken(lab: ObjectLab, token: ShareToken): void {
  const kind = kindOf(token, "drop_token");
  (closers[kind] as (x: Shared[ShareKind]) => void)(importers[kind](lab, token as never));
}

/*
 * The other thread of the device-sharing tests: it imports a device token
 * (a DeviceHandle) and dma-buf tokens, looks up the driver's attachments of
 * the buffers with handle.attached(), and submits `rounds` fill jobs to the
 * first buffer from this thread, each with the value (seed + round) & 0xff,
 * checking after each through read() (implicit sync: the read waits for the
 * device's write fence) that the whole buffer holds it. It also asks for
 * the attachment of `unattached`, which must be ENOENT. Every wait is
 * bounded by timeoutMs.
 */
import { Lab } from "../../src/api/lab.js";
import { DmaBufError } from "../../src/errno.js";
import type { LabHandle } from "../../src/lab.js";
import type { ShareToken } from "../../src/sync/flight.js";
import { runWorker } from "./protocol.js";

export interface DeviceSubmitterData {
  handle: LabHandle;
  device: ShareToken<"device">;
  buffer: ShareToken<"dma-buf">;
  unattached: ShareToken<"dma-buf">;
  rounds: number;
  seed: number;
  timeoutMs: number;
}

export interface DeviceSubmitterReport {
  type: "done";
  name: string;
  /** Each job's fence status, in order (1: done). */
  statuses: number[];
  /** Rounds whose read-back did not hold the round's value everywhere. */
  bad: number[];
  /** The error code of attached() for the buffer the device never attached. */
  unattachedCode: string;
}

runWorker<DeviceSubmitterData, DeviceSubmitterReport>(async (d) => {
  const lab = await Lab.attach(d.handle);
  try {
    using dev = lab.import(d.device);
    using buf = lab.import(d.buffer);
    using other = lab.import(d.unattached);
    const target = dev.attached(buf);
    const statuses: number[] = [];
    const bad: number[] = [];
    const back = new Uint8Array(buf.size);
    for (let k = 0; k < d.rounds; k++) {
      const value = (d.seed + k) & 0xff;
      const fence = dev.submit({ kind: "fill", dst: target, value });
      try {
        if (fence.wait(d.timeoutMs) <= 0) throw new Error(`round ${k}: the fill's fence did not signal within ${d.timeoutMs} ms`);
        statuses.push(fence.status);
      } finally {
        fence.put();
      }
      buf.read(back, 0, { timeoutMs: d.timeoutMs });
      if (!back.every((x) => x === value)) bad.push(k);
    }
    let unattachedCode = "none";
    try {
      dev.attached(other);
    } catch (e) {
      unattachedCode = e instanceof DmaBufError ? e.code : String(e);
    }
    return { type: "done", name: dev.name, statuses, bad, unattachedCode };
  } finally {
    lab.close();
  }
});

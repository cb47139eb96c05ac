/*
 * The other thread of the device-sharing tests: it imports a device token
 * (a DeviceHandle) and dma-buf tokens, looks up the driver's attachments of
 * the buffers with handle.attached(), and submits `rounds` fill jobs to the
 * first buffer from this thread, each with the value (seed + round) & 0xff,
 * checking after each through read() (implicit sync: the read waits for the
 * device's write fence) that the whole buffer holds it. It also asks for
 * the attachment of `unattached`, which must be ENOENT. With `hammer` it
 * instead submits fills in a loop, counting each in word 0 of `hammer`,
 * until a submit is refused (the device died under it): every fence it got
 * must signal (done, or failed with the device), and it reports how the
 * submits ended. Every wait is bounded by timeoutMs.
 */
import { Lab } from "../../src/api/lab.js";
import { DmaBufError } from "../../src/errno.js";
import type { LabHandle } from "../../src/lab.js";
import type { ShareToken } from "../../src/sync/flight.js";
import type { DeviceHandle } from "../../src/devices/handle.js";
import type { DeviceBuffer } from "../../src/devices/submit.js";
import { runWorker } from "./protocol.js";

export interface DeviceSubmitterData {
  handle: LabHandle;
  device: ShareToken<"device">;
  buffer: ShareToken<"dma-buf">;
  unattached: ShareToken<"dma-buf">;
  rounds: number;
  seed: number;
  timeoutMs: number;
  /** Submit until refused, counting submits in word 0. */
  hammer?: Int32Array;
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
  /** hammer: fence statuses seen (1, or a negative errno) and how many; the code that ended the loop. */
  outcomes?: Record<string, number>;
  endedBy?: string;
}

/** Fills until a submit is refused; every fence waited for (bounded). */
function hammer(dev: DeviceHandle, target: DeviceBuffer, count: Int32Array, timeoutMs: number): { outcomes: Record<string, number>; endedBy: string } {
  const outcomes: Record<string, number> = {};
  const deadline = performance.now() + timeoutMs;
  for (let k = 0; performance.now() < deadline; k++) {
    let fence;
    try {
      fence = dev.submit({ kind: "fill", dst: target, value: k & 0xff });
    } catch (e) {
      return { outcomes, endedBy: e instanceof DmaBufError ? e.code : String(e) };
    }
    try {
      if (fence.wait(timeoutMs) <= 0) throw new Error(`fill ${k}: its fence did not signal within ${timeoutMs} ms`);
      outcomes[fence.status] = (outcomes[fence.status] ?? 0) + 1;
    } finally {
      fence.put();
    }
    Atomics.add(count, 0, 1);
    Atomics.notify(count, 0);
  }
  return { outcomes, endedBy: "timeout" };
}

runWorker<DeviceSubmitterData, DeviceSubmitterReport>(async (d) => {
  const lab = await Lab.attach(d.handle);
  try {
    using dev = lab.import(d.device);
    using buf = lab.import(d.buffer);
    using other = lab.import(d.unattached);
    const target = dev.attached(buf);
    if (d.hammer !== undefined) return { type: "done", name: dev.name, statuses: [], bad: [], unattachedCode: "-", ...hammer(dev, target, d.hammer, d.timeoutMs) };
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

/*
 * Device workers in tests: every device a test file spawns goes into its
 * DeviceSet (spawn(), or add() for one spawned elsewhere); endAll() ends
 * every one at once (shutdown without drain, or kill), waits for all of
 * them, and only then reports the first that failed. cleanUpAfterEach
 * (helpers/lab.ts) calls it after the workers are terminated and before the
 * labs are closed.
 */
import { spawnDevice, type Device, type DeviceOptions } from "../../src/devices/device.js";
import type { LabCore } from "../../src/lab.js";

export class DeviceSet {
  private readonly live: Device[] = [];

  /** `how` they end: "shutdown" (drain: false, the default) or "kill" (a reset). */
  constructor(private readonly how: "shutdown" | "kill" = "shutdown") {}

  async spawn(lab: LabCore, options?: DeviceOptions): Promise<Device> {
    return this.add(await spawnDevice(lab, options));
  }

  add<D extends Device>(device: D): D {
    this.live.push(device);
    return device;
  }

  async endAll(): Promise<void> {
    const settled = await Promise.allSettled(this.live.splice(0).map((d) => (this.how === "kill" ? d.kill() : d.shutdown({ drain: false }))));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
  }
}

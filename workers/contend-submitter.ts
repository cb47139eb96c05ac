/*
 * A device's submitter thread in the contention experiment (`dmabuf-lab
 * contend --submitters own`): attaches to the lab, imports the device's
 * token as a DeviceHandle, builds the run's DeviceDriver over it (the
 * driver's attachments of the run's buffers, src/contend/devices.ts) and
 * serves ContendSubmitterApi over comlink: hello() once ready, run() from
 * START to the end of the run, answering the counters. After each round it
 * sets its totals in its control-block slot for the host's progress line.
 * Spawned and terminated by src/contend/run.ts.
 */
import * as Comlink from "comlink";
import { Lab } from "../src/api/lab.js";
import { DmaBufError } from "../src/errno.js";
import { driveDevices, driverOverHandle } from "../src/contend/devices.js";
import { Control, type ContendSubmitterApi, type SubmitterThreadData } from "../src/contend/protocol.js";
import { nowMs } from "../src/memory/futex.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import { workerContext } from "../src/thread/spawn.js";

installErrorTransfer();
const { data, endpoint } = await workerContext<SubmitterThreadData>();
const lab = await Lab.attach(data.handle);
lab.trace.setThread(`submitter ${data.index}`);
const handle = lab.import(data.device.device);
const driver = driverOverHandle(lab, data.index, data.options, handle, data.device);
const control = new Control(lab.sync, data.control);

const api: ContendSubmitterApi = {
  hello: () => `submitter ${data.index}`,
  async run() {
    try {
      const o = data.options;
      if (!control.waitStart(o.timeoutMs) || control.aborted) {
        throw new DmaBufError("ECANCELED", "contend", `submitter ${data.index}: the run did not start`);
      }
      await driveDevices(o, [driver], nowMs(), () => control.set(data.slot, driver.totals()));
      control.set(data.slot, driver.totals());
      const counts = driver.report();
      return Comlink.transfer(counts, counts.map((c) => c.waitsNs.buffer));
    } finally {
      driver.release();
      handle.close();
      lab.close();
    }
  },
};

Comlink.expose(api, endpoint);

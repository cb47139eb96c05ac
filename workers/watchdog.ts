/*
 * The lab's device watchdog: a worker of its own, so that it runs while
 * every other thread is blocked (a main thread in a synchronous fence wait
 * included). Every period it checks each watched device (DeviceRecord
 * check(): an execution past the device's job timeout, or a loop silent
 * for silenceMs) and fails it: the pending fences are signalled with
 * ETIMEDOUT or EIO and their waiters wake. The host then reaps the device.
 */
import * as Comlink from "comlink";
import { Lab } from "../src/api/lab.js";
import { DEV_DEAD, DeviceRecord } from "../src/devices/device_record.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import { workerContext } from "../src/thread/spawn.js";
import type { WatchdogApi, WatchdogData } from "../src/devices/protocol.js";

installErrorTransfer();
const { data, endpoint } = await workerContext<WatchdogData>();
const lab = await Lab.attach(data.handle);
lab.trace.setThread("watchdog");
const watched = new Map<number, DeviceRecord>();

setInterval(() => {
  for (const [offset, device] of watched) {
    device.check(data.silenceMs);
    if (device.state === DEV_DEAD) watched.delete(offset);
  }
}, data.periodMs);

const api: WatchdogApi = {
  hello: () => "watchdog",
  watch: (offset) => { watched.set(offset, new DeviceRecord(lab.sync, offset)); },
  unwatch: (offset) => { watched.delete(offset); },
};
Comlink.expose(api, endpoint);

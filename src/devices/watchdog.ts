/*
 * The host side of the lab's device watchdog (workers/watchdog.ts): one
 * watchdog worker per lab view, started with the first device and ended
 * with the last. The worker checks every watched device each period
 * (DeviceRecord.check: an execution past the device's job timeout, or a
 * loop silent for SILENCE_MS) and fails it, even while every other thread
 * is blocked.
 *
 *   watchdogFor(lab)      a reference on the lab's watchdog (its start-up
 *                         shared by devices spawned together); the worker
 *                         and its comlink API
 *   releaseWatchdog(lab)  drops the reference; the last one ends the worker
 *
 * The worker is unref'd: it never keeps a process alive.
 */
import * as Comlink from "comlink";
import type { LabCore } from "../lab.js";
import { keepingAlive } from "../memory/futex.js";
import { shippedWorker } from "../thread/host.js";
import { spawnWorker, type SpawnedWorker } from "../thread/spawn.js";
import type { WatchdogApi } from "./protocol.js";

const WATCHDOG_PERIOD_MS = 10;
const SILENCE_MS = 2000;

/**
 * One watchdog worker per lab view, shared by its devices. The entry is
 * made at once (its start-up a promise), so that devices spawned together
 * share one watchdog.
 */
interface Watchdog { ready: Promise<{ worker: SpawnedWorker; api: Comlink.Remote<WatchdogApi> }>; devices: number }
const watchdogs = new WeakMap<LabCore, Watchdog>();

async function startWatchdog(lab: LabCore): Promise<{ worker: SpawnedWorker; api: Comlink.Remote<WatchdogApi> }> {
  const worker = await spawnWorker(shippedWorker("watchdog"), { handle: lab.share(), periodMs: WATCHDOG_PERIOD_MS, silenceMs: SILENCE_MS }, "watchdog");
  worker.unref();
  const api = Comlink.wrap<WatchdogApi>(worker.endpoint);
  try {
    await keepingAlive(Promise.race([
      api.hello(),
      worker.exited.then(({ error }): never => { throw error ?? new Error("the watchdog worker exited during start-up"); }),
    ]));
  } catch (e) {
    await worker.terminate();
    throw e;
  }
  return { worker, api };
}

export async function watchdogFor(lab: LabCore): Promise<{ worker: SpawnedWorker; api: Comlink.Remote<WatchdogApi> }> {
  let w = watchdogs.get(lab);
  if (w === undefined) {
    w = { ready: startWatchdog(lab), devices: 0 };
    watchdogs.set(lab, w);
  }
  w.devices++;
  try {
    return await w.ready;
  } catch (e) {
    await releaseWatchdog(lab);
    throw e;
  }
}

export async function releaseWatchdog(lab: LabCore): Promise<void> {
  const w = watchdogs.get(lab);
  if (w === undefined || --w.devices > 0) return;
  watchdogs.delete(lab);
  const started = await w.ready.catch(() => undefined);
  if (started === undefined) return;
  started.api[Comlink.releaseProxy]();
  await started.worker.terminate();
}

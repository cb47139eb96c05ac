/*
 * The host side of a lab thread: a real worker (spawn.ts) running
 * workers/lab-thread.ts (bundled to build/workers/lab-thread.mjs) with its
 * own engine instance over the lab's memory, controlled through comlink.
 *
 * Contract: spawnLabThread() resolves once the worker has attached; the
 * caller should terminate() it (or use `await using`). Like a device, the
 * worker is unref'd: a forgotten lab thread does not keep Node alive, while
 * every call awaiting its answer does (keepingAlive). Errors thrown in the
 * worker arrive as DmaBufErrors.
 */
import * as Comlink from "comlink";
import { artifactUrl } from "../engine/artifacts.js";
import type { LabCore } from "../lab.js";
import { keepingAlive } from "../memory/futex.js";
import { installErrorTransfer } from "./errors.js";
import { spawnWorker } from "./spawn.js";
import type { ShippedWorker } from "./entries.js";
import type { LabThreadApi, LabThreadData } from "./protocol.js";

export interface LabThread {
  readonly name: string;
  readonly api: Comlink.Remote<LabThreadApi>;
  terminate(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

let serial = 0;

/** The bundled entry of a worker by name (build/workers/NAME.mjs; dist/browser/workers/NAME.mjs). */
export function workerUrl(name: string): URL {
  return artifactUrl(`workers/${name}.mjs`);
}

/** One of the package's own workers, for spawnWorker (browsers start it the way bundlers see, entries.ts). */
export function shippedWorker(name: ShippedWorker): { shipped: ShippedWorker; url: URL } {
  return { shipped: name, url: workerUrl(name) };
}

export async function spawnLabThread(lab: LabCore, options: {
  /** The worker's name (default lab-thread-N). */
  name?: string;
  /** The worker module to run (default the shipped lab-thread worker). */
  entry?: URL;
} = {}): Promise<LabThread> {
  installErrorTransfer();
  const name = options.name ?? `lab-thread-${++serial}`;
  const data: LabThreadData = { handle: lab.share(), name };
  const worker = await spawnWorker(options.entry ?? shippedWorker("lab-thread"), data, name);
  const api = Comlink.wrap<LabThreadApi>(worker.endpoint);
  const terminate = async () => {
    api[Comlink.releaseProxy]();
    await worker.terminate();
  };
  try {
    // The first call answers once the worker has attached to the lab; an
    // error during start-up (a missing bundle, a bad handle) rejects it.
    await Promise.race([
      api.hello(),
      worker.exited.then(({ error }) => { throw error ?? new Error(`lab thread ${name} exited during start-up`); }),
    ]);
  } catch (e) {
    await terminate();
    throw e;
  }
  worker.unref();
  return { name, api: keptAlive(api), terminate, [Symbol.asyncDispose]: terminate };
}

/** The remote API with every call keeping the process up until it answers (the worker itself is unref'd). */
function keptAlive<T extends object>(api: Comlink.Remote<T>): Comlink.Remote<T> {
  return new Proxy(api, {
    get(target, key) {
      const value = Reflect.get(target, key) as unknown;
      if (typeof key === "symbol" || typeof value !== "function") return value;
      return (...args: unknown[]) => keepingAlive((value as (...a: unknown[]) => Promise<unknown>)(...args));
    },
  });
}

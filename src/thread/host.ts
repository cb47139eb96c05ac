/*
 * The host side of a lab thread: a real worker_threads Worker running
 * workers/lab-thread.ts (bundled to build/workers/lab-thread.mjs) with its
 * own engine instance over the lab's memory, controlled through comlink.
 *
 * Contract: spawnLabThread() resolves once the worker has attached; the
 * caller must terminate() it (or use `await using`): a live worker keeps
 * the process alive. Errors thrown in the worker arrive as DmaBufErrors.
 */
import * as Comlink from "comlink";
import { artifactUrl } from "../engine/artifacts.js";
import type { Lab } from "../lab.js";
import { installErrorTransfer } from "./errors.js";
import type { LabThreadApi, LabThreadData } from "./protocol.js";

export interface LabThread {
  readonly name: string;
  readonly api: Comlink.Remote<LabThreadApi>;
  terminate(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

let serial = 0;

/** The bundled entry of a worker by name (build/workers/NAME.mjs). */
export function workerUrl(name: string): URL {
  return artifactUrl(`workers/${name}.mjs`);
}

export async function spawnLabThread(lab: Lab, options: { name?: string; entry?: URL } = {}): Promise<LabThread> {
  installErrorTransfer();
  const { Worker } = await import("node:worker_threads");
  const { default: nodeEndpoint } = await import("comlink/dist/esm/node-adapter.mjs");
  const name = options.name ?? `lab-thread-${++serial}`;
  const data: LabThreadData = { handle: lab.share(), name };
  const worker = new Worker(options.entry ?? workerUrl("lab-thread"), { workerData: data, name });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const api = Comlink.wrap<LabThreadApi>(nodeEndpoint(worker));
  const terminate = async () => {
    api[Comlink.releaseProxy]();
    await worker.terminate();
    await exited;
  };
  try {
    // The first call answers once the worker has attached to the lab; an
    // error during start-up (a missing bundle, a bad handle) rejects it.
    await Promise.race([
      api.hello(),
      new Promise((_, reject) => worker.once("error", reject)),
      exited.then(() => { throw new Error(`lab thread ${name} exited during start-up`); }),
    ]);
  } catch (e) {
    await terminate();
    throw e;
  }
  return { name, api, terminate, [Symbol.asyncDispose]: terminate };
}

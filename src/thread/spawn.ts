/*
 * Worker threads on every platform: one shape for a worker_threads Worker
 * (Node) and a module Web Worker (browsers), so that lab threads and devices
 * are spawned by the same code.
 *
 * Host side: spawnWorker(entry, data, name) starts the bundled module at
 * `entry` and hands it `data` (structured-cloned; the lab's memory is shared,
 * never copied). It returns the comlink endpoint, a promise that settles when
 * the worker is gone (`exited`, with the reason), and terminate(). `onError`
 * registers a listener for an error thrown at the worker's top level.
 *
 * Worker side: workerContext<T>() resolves to the data and the endpoint to
 * expose an API on. In Node the data is workerData; in a browser it is the
 * first message the host posts, sent before anything else.
 *
 * Contract: the host must terminate() every worker it spawns (a live Node
 * worker keeps the process alive); terminate() is idempotent and resolves
 * once the worker is gone.
 */
import type { Endpoint } from "comlink";

export interface SpawnedWorker {
  readonly name: string;
  readonly endpoint: Endpoint;
  /** Settles once the worker is gone: its exit code, or the error that ended it. */
  readonly exited: Promise<{ code: number | null; error?: unknown }>;
  onError(listener: (error: unknown) => void): void;
  terminate(): Promise<void>;
}

export interface WorkerContext<T> {
  data: T;
  endpoint: Endpoint;
}

const isNode = typeof process !== "undefined" && process.versions?.node !== undefined;

export async function spawnWorker<T>(entry: URL, data: T, name: string): Promise<SpawnedWorker> {
  return isNode ? spawnNode(entry, data, name) : spawnWeb(entry, data, name);
}

async function spawnNode<T>(entry: URL, data: T, name: string): Promise<SpawnedWorker> {
  const { Worker } = await import("node:worker_threads");
  const { default: nodeEndpoint } = await import("comlink/dist/esm/node-adapter.mjs");
  const worker = new Worker(entry, { workerData: data, name });
  let lastError: unknown;
  worker.on("error", (e) => { lastError = e; });
  const exited = new Promise<{ code: number | null; error?: unknown }>((resolve) =>
    worker.once("exit", (code) => resolve({ code, error: lastError })));
  return {
    name,
    endpoint: nodeEndpoint(worker),
    exited,
    onError: (listener) => { worker.on("error", listener); },
    terminate: async () => {
      await worker.terminate();
      await exited;
    },
  };
}

async function spawnWeb<T>(entry: URL, data: T, name: string): Promise<SpawnedWorker> {
  const worker = new Worker(entry, { type: "module", name });
  let finish!: (result: { code: number | null; error?: unknown }) => void;
  const exited = new Promise<{ code: number | null; error?: unknown }>((resolve) => { finish = resolve; });
  // A Web Worker has no exit event: an uncaught error is its end as far as
  // the lab is concerned (the host terminates it), and terminate() ends it.
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    finish({ code: 1, error: new Error(`worker ${name}: ${event.message || "failed to load or threw"}`) });
  });
  worker.postMessage({ "dmabuf-lab:data": data });
  return {
    name,
    endpoint: worker,
    exited,
    onError: (listener) => {
      worker.addEventListener("error", (event) => listener(new Error(`worker ${name}: ${event.message}`)));
    },
    terminate: async () => {
      worker.terminate();
      finish({ code: null });
      await exited;
    },
  };
}

export async function workerContext<T>(): Promise<WorkerContext<T>> {
  if (isNode) {
    const { parentPort, workerData } = await import("node:worker_threads");
    const { default: nodeEndpoint } = await import("comlink/dist/esm/node-adapter.mjs");
    return { data: workerData as T, endpoint: nodeEndpoint(parentPort!) };
  }
  const scope = globalThis as unknown as Endpoint & { addEventListener: Endpoint["addEventListener"] };
  const data = await new Promise<T>((resolve) => {
    const first = (event: Event) => {
      const message = (event as MessageEvent).data as Record<string, unknown> | null;
      if (message && typeof message === "object" && "dmabuf-lab:data" in message) {
        scope.removeEventListener("message", first as EventListener);
        resolve(message["dmabuf-lab:data"] as T);
      }
    };
    scope.addEventListener("message", first as EventListener);
  });
  return { data, endpoint: scope };
}

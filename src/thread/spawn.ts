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
 * expose an API on. In Node the data is workerData and the endpoint the
 * parent port. In a browser the data is the first message the host posts,
 * together with a MessagePort (of a MessageChannel) that is the endpoint on
 * both sides: a port holds messages until comlink starts it, so the worker
 * may await its own set-up before it exposes an API.
 *
 * Contract: the host must terminate() every worker it spawns (a live Node
 * worker keeps the process alive); terminate() is idempotent and resolves
 * once the worker is gone. A browser worker must call workerContext() in its
 * top level before any other await: the data message is dispatched once the
 * module's synchronous part has run, and a message nobody listens for is lost.
 * Browser bundles (scripts/build.mjs) keep only the Web Worker branches.
 */
import type { Endpoint } from "comlink";

export interface SpawnedWorker {
  readonly name: string;
  readonly endpoint: Endpoint;
  /** Settles once the worker is gone: its exit code, or the error that ended it. */
  readonly exited: Promise<{ code: number | null; error?: unknown }>;
  onError(listener: (error: unknown) => void): void;
  /**
   * Node: the worker no longer keeps the process alive (a device forgotten
   * at exit lets the process end); a caller awaiting its answers keeps the
   * process up itself (keepingAlive in src/memory/futex.ts). Browsers:
   * nothing to do.
   */
  unref(): void;
  terminate(): Promise<void>;
}

export interface WorkerContext<T> {
  data: T;
  endpoint: Endpoint;
}

const isNode = typeof __DMABUF_LAB_BROWSER_ROOT__ !== "string" &&
  typeof process !== "undefined" && process.versions?.node !== undefined;

/** The first message to a browser worker. */
const DATA_KEY = "dmabuf-lab:data";
interface DataMessage<T> {
  [DATA_KEY]: T;
  port: MessagePort;
}

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
  // A Worker's port refs itself again whenever its first 'message' listener
  // is added, and comlink adds one per call: a listener that stays keeps the
  // count above zero, so that only unref() decides.
  worker.on("message", () => {});
  return {
    name,
    endpoint: nodeEndpoint(worker),
    exited,
    onError: (listener) => { worker.on("error", listener); },
    unref: () => { worker.unref(); },
    terminate: async () => {
      await worker.terminate();
      await exited;
    },
  };
}

async function spawnWeb<T>(entry: URL, data: T, name: string): Promise<SpawnedWorker> {
  const worker = new Worker(entry, { type: "module", name });
  const channel = new MessageChannel();
  let finish!: (result: { code: number | null; error?: unknown }) => void;
  const exited = new Promise<{ code: number | null; error?: unknown }>((resolve) => { finish = resolve; });
  const failure = (event: Event) =>
    new Error(`worker ${name} (${entry.href}): ${(event as ErrorEvent).message || "failed to load or threw"}`);
  // A Web Worker has no exit event: an uncaught error (or a module that
  // fails to load) is its end as far as the lab is concerned (the host
  // terminates it), and terminate() ends it.
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    finish({ code: 1, error: failure(event) });
  });
  try {
    const message: DataMessage<T> = { [DATA_KEY]: data, port: channel.port2 };
    worker.postMessage(message, [channel.port2]);
  } catch (e) {
    worker.terminate();
    throw e;
  }
  return {
    name,
    endpoint: channel.port1,
    exited,
    onError: (listener) => {
      worker.addEventListener("error", (event) => listener(failure(event)));
    },
    unref: () => {},
    terminate: async () => {
      worker.terminate();
      channel.port1.close();
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
  const scope = globalThis as unknown as Pick<EventTarget, "addEventListener" | "removeEventListener">;
  return new Promise<WorkerContext<T>>((resolve) => {
    const first = (event: Event) => {
      const message = (event as MessageEvent).data as DataMessage<T> | null;
      if (message !== null && typeof message === "object" && DATA_KEY in message) {
        scope.removeEventListener("message", first);
        resolve({ data: message[DATA_KEY], endpoint: message.port });
      }
    };
    scope.addEventListener("message", first);
  });
}

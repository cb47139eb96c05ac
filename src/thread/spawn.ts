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
import { DmaBufError, errnoNumbers } from "../errno.js";
import { webWorkerFactory, type ShippedWorker } from "./entries.js";

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
/** The message a Web Worker posts right before it ends itself (exitWorker): a Web Worker has no exit event. */
const EXIT_KEY = "dmabuf-lab:exit";
interface DataMessage<T> {
  [DATA_KEY]: T;
  port: MessagePort;
}

/**
 * Starts `entry`: a worker module's URL, or one of the package's workers by
 * name with its URL (Node: that URL; browsers: the registered factory when
 * there is one, see entries.ts). A worker that fails to load is a
 * DmaBufError (ENOENT in Node for a missing module, ENOEXEC otherwise) naming
 * the worker and its URL, from `exited` and the start-up call that sees it.
 */
export async function spawnWorker<T>(entry: URL | { shipped: ShippedWorker; url: URL }, data: T, name: string): Promise<SpawnedWorker> {
  const url = entry instanceof URL ? entry : entry.url;
  // The define is read here, not only through isNode, so that browser bundles fold the test and drop the Node branch.
  return typeof __DMABUF_LAB_BROWSER_ROOT__ !== "string" && isNode ? spawnNode(url, data, name) : spawnWeb(url, data, name, entry instanceof URL ? undefined : webWorkerFactory(entry.shipped));
}

/** A worker's load failure or top-level error as a DmaBufError naming the worker and its URL. */
function workerError(name: string, url: URL, error: unknown): DmaBufError {
  const code = (error as { code?: string } | undefined)?.code;
  // A DmaBufError thrown by the worker's own code (it arrives structured-cloned, its fields kept) stays what it is.
  if (error instanceof DmaBufError || (typeof code === "string" && code in errnoNumbers && (error as { syscall?: unknown }).syscall)) {
    return error as DmaBufError;
  }
  const missing = code === "MODULE_NOT_FOUND" || code === "ERR_MODULE_NOT_FOUND" || code === "ERR_WORKER_PATH" || code === "ENOENT";
  const detail = error instanceof Error ? error.message : error === undefined ? "failed to load or threw" : String(error);
  return new DmaBufError(missing ? "ENOENT" : "ENOEXEC", "spawn_worker", `worker ${name} (${url.href}): ${detail}`, { cause: error });
}

async function spawnNode<T>(entry: URL, data: T, name: string): Promise<SpawnedWorker> {
  const { Worker } = await import("node:worker_threads");
  const { default: nodeEndpoint } = await import("comlink/dist/esm/node-adapter.mjs");
  const worker = new Worker(entry, { workerData: data, name });
  let lastError: unknown;
  worker.on("error", (e) => { lastError = workerError(name, entry, e); });
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

async function spawnWeb<T>(entry: URL, data: T, name: string, factory?: (name: string) => Worker): Promise<SpawnedWorker> {
  const worker = factory ? factory(name) : new Worker(entry, { type: "module", name });
  const channel = new MessageChannel();
  let finish!: (result: { code: number | null; error?: unknown }) => void;
  const exited = new Promise<{ code: number | null; error?: unknown }>((resolve) => { finish = resolve; });
  const failure = (event: Event) => workerError(name, entry, (event as ErrorEvent).message || undefined);
  // A Web Worker has no exit event: an uncaught error (or a module that
  // fails to load) is its end as far as the lab is concerned (the host
  // terminates it), and terminate() ends it.
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    finish({ code: 1, error: failure(event) });
  });
  // A worker that ends itself says so first (exitWorker): its `exited` settles then.
  worker.addEventListener("message", (event) => {
    const m = (event as MessageEvent).data as { [EXIT_KEY]?: unknown } | null;
    if (m !== null && typeof m === "object" && EXIT_KEY in m) finish({ code: typeof m[EXIT_KEY] === "number" ? m[EXIT_KEY] : 0 });
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

/**
 * Ends this worker by itself: process.exit in Node; in a Web Worker, which
 * has no exit event, it first tells the host (so that `exited` settles
 * there), then close().
 */
export function exitWorker(code = 0): never {
  if (typeof __DMABUF_LAB_BROWSER_ROOT__ !== "string" && isNode) (globalThis as unknown as { process: { exit(c: number): never } }).process.exit(code);
  const scope = globalThis as unknown as { postMessage(m: unknown): void; close(): void };
  scope.postMessage({ [EXIT_KEY]: code });
  scope.close();
  throw new Error("the worker is closing");
}

export async function workerContext<T>(): Promise<WorkerContext<T>> {
  if (typeof __DMABUF_LAB_BROWSER_ROOT__ !== "string" && isNode) {
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

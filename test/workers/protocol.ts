/*
 * The worker side of the test-worker protocol (the main side is
 * test/helpers/workers.ts): a worker posts {type: "ready"}, may wait for a
 * shared start flag, and ends with one report ({type: "done", ...}) or an
 * {type: "error", message} naming what went wrong. Not a worker itself: the
 * build bundles it into each worker that imports it (and, as it bundles
 * every file here, also on its own, where it does nothing).
 */
import { parentPort, workerData } from "node:worker_threads";

/** An error as the text of an "error" message: its stack when it has one. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.stack ?? e.message : String(e);
}

/**
 * Runs main(workerData) and posts its report, or an "error" message when it
 * throws. Outside a worker (a test importing the module for its types and
 * constants) it does nothing. With keepAlive the thread stays up after its
 * report, until it is terminated.
 */
export function runWorker<D, R>(main: (data: D) => Promise<R>, { keepAlive = false } = {}): void {
  if (parentPort === null) return;
  const port = parentPort;
  if (keepAlive) port.on("message", () => { /* keeps this thread alive until it is terminated */ });
  main(workerData as D).then(
    (report) => port.postMessage(report),
    (e: unknown) => port.postMessage({ type: "error", message: errorText(e) }),
  );
}

/** Posts "ready", then waits until word 0 of `start` is non-zero; throws after timeoutMs, naming `who`. */
export function readyThenAwaitStart(start: Int32Array, timeoutMs: number, who: string): void {
  parentPort!.postMessage({ type: "ready" });
  const deadline = performance.now() + timeoutMs;
  while (Atomics.load(start, 0) === 0) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`${who}: the start flag never came`);
    Atomics.wait(start, 0, 0, left);
  }
}

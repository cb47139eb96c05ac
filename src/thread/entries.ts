/*
 * The package's own workers by name, and how a browser bundle starts them.
 *
 * Node: build/workers/NAME.mjs (workerUrl in host.ts).
 * Browsers: src/browser_workers.ts (imported by the library's entry,
 * src/index.ts, alone) registers one factory per worker, each written as
 * `new Worker(new URL("./workers/NAME.mjs", import.meta.url), { type:
 * "module", name })`, the form that Vite and webpack 5 find, bundle and
 * emit by themselves. Worker bundles do not import the entry, so they carry
 * no such literal (a bundler would otherwise follow it from inside a
 * worker); a worker that starts one of these workers gets the plain URL.
 */

/** The workers the package ships and starts itself. */
export type ShippedWorker = "device" | "watchdog" | "lab-thread" | "contend-cpu" | "contend-submitter" | "io-sq";

export type WebWorkerFactory = (name: string) => Worker;

const factories = new Map<ShippedWorker, WebWorkerFactory>();

export function registerWebWorkers(table: Partial<Record<ShippedWorker, WebWorkerFactory>>): void {
  for (const [k, f] of Object.entries(table)) factories.set(k as ShippedWorker, f);
}

/** The registered factory of a shipped worker, or undefined (then the worker starts from its plain URL). */
export const webWorkerFactory = (entry: ShippedWorker): WebWorkerFactory | undefined => factories.get(entry);

/*
 * The shipped workers as bundlers see them (see src/thread/entries.ts):
 * each URL is a literal relative to this module, which the build places in
 * dist/browser/index.js, next to dist/browser/workers/. Vite and webpack 5
 * bundle and emit each worker from these expressions; without a bundler the
 * browser loads dist/browser/workers/NAME.mjs itself. In Node nothing here
 * runs (the registration is only read by the Web Worker branch of
 * spawnWorker).
 */
import { registerWebWorkers } from "./thread/entries.js";

registerWebWorkers({
  "device": (name) => new Worker(new URL("./workers/device.mjs", import.meta.url), { type: "module", name }),
  "watchdog": (name) => new Worker(new URL("./workers/watchdog.mjs", import.meta.url), { type: "module", name }),
  "lab-thread": (name) => new Worker(new URL("./workers/lab-thread.mjs", import.meta.url), { type: "module", name }),
  "io-sq": (name) => new Worker(new URL("./workers/io-sq.mjs", import.meta.url), { type: "module", name }),
});

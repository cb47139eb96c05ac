/*
 * Compiling the engine: one WebAssembly.Module per source, compiled once per
 * thread that asks (a Module also crosses to workers in a message, shared,
 * so workers never load the file themselves).
 *
 * A file: URL (Node) is read from disk; any other URL is fetched and
 * compiled while it streams (WebAssembly.compileStreaming), or from the
 * whole response when the server does not send application/wasm. A missing
 * engine is ENOENT, another HTTP failure EIO, both naming the URL.
 */
import { DmaBufError } from "../errno.js";
import { engineUrl } from "./artifacts.js";
import { ENGINE_EXPORTS, type EngineExports } from "./abi.js";

export type EngineSource = WebAssembly.Module | URL | string;

const cache = new Map<string, Promise<WebAssembly.Module>>();

async function compileFrom(url: URL): Promise<WebAssembly.Module> {
  // Browser bundles have no files to read (and keep no node: import).
  if (typeof __DMABUF_LAB_BROWSER_ROOT__ !== "string" && url.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    return WebAssembly.compile(await readFile(url));
  }
  const response = await fetch(url);
  if (!response.ok) {
    throw new DmaBufError(response.status === 404 ? "ENOENT" : "EIO", "engine_load",
      `fetching the engine at ${url.href}: HTTP ${response.status}`);
  }
  const type = response.headers.get("content-type")?.split(";")[0].trim();
  if (type === "application/wasm") return WebAssembly.compileStreaming(response);
  return WebAssembly.compile(await response.arrayBuffer());
}

/** The compiled engine (default: engine.wasm beside this package's bundles, see artifacts.ts). */
export function loadEngineModule(source: EngineSource = engineUrl()): Promise<WebAssembly.Module> {
  if (source instanceof WebAssembly.Module) return Promise.resolve(source);
  const url = source instanceof URL ? source : new URL(source, import.meta.url);
  let promise = cache.get(url.href);
  if (promise === undefined) {
    promise = compileFrom(url);
    promise.catch(() => cache.delete(url.href));
    cache.set(url.href, promise);
  }
  return promise;
}

/** Instantiates the module over a shared memory; checks its exports. */
export function instantiateEngine(module: WebAssembly.Module, memory: WebAssembly.Memory): EngineExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const exports = instance.exports as unknown as EngineExports;
  for (const name of ENGINE_EXPORTS) {
    if (typeof exports[name] !== "function") throw new Error(`the engine module does not export ${name}()`);
  }
  return exports;
}

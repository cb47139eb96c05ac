/*
 * Compiling the engine: one WebAssembly.Module per source, compiled once per
 * thread that asks (a Module also crosses to workers in a message, shared).
 * Node reads the file; browsers fetch it (compileStreaming).
 */
import { artifactUrl } from "./artifacts.js";
import { ENGINE_EXPORTS, type EngineExports } from "./abi.js";

export type EngineSource = WebAssembly.Module | URL | string;

const cache = new Map<string, Promise<WebAssembly.Module>>();

async function readBytes(url: URL): Promise<Uint8Array> {
  if (url.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    return readFile(url);
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching the engine at ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** The compiled engine (default: build/engine.wasm beside this package). */
export function loadEngineModule(source: EngineSource = artifactUrl("engine.wasm")): Promise<WebAssembly.Module> {
  if (source instanceof WebAssembly.Module) return Promise.resolve(source);
  const url = source instanceof URL ? source : new URL(source, import.meta.url);
  let promise = cache.get(url.href);
  if (promise === undefined) {
    promise = readBytes(url).then((bytes) => WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>));
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

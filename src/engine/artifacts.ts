/*
 * Where the package's files are at run time: the engine (engine.wasm), the
 * worker bundles (workers/NAME.mjs), bench/native/.
 *
 * Node: this module, like every Node bundle the build writes (dist/lib/*.js,
 * build/workers/*.mjs), sits two directories below the package root, so one
 * relative URL serves the sources under vitest and the bundles alike:
 * artifacts are build/engine.wasm and build/workers/NAME.mjs.
 *
 * Browsers: the build defines __DMABUF_LAB_BROWSER_ROOT__ in every browser
 * bundle as the relative path from that bundle to dist/browser/ ("./" for
 * dist/browser/index.js, "../" for dist/browser/workers/*.mjs), where the
 * artifacts sit: dist/browser/engine.wasm, dist/browser/workers/NAME.mjs.
 * Both are found by `new URL("./...", import.meta.url)`, the form that
 * bundlers recognise and copy. packageUrl() is for Node only.
 */
const browserRoot = typeof __DMABUF_LAB_BROWSER_ROOT__ === "string" ? __DMABUF_LAB_BROWSER_ROOT__ : undefined;

/** A file of the package (Node: sources and bundles two directories below the root). */
export function packageUrl(path: string): URL {
  return new URL(`../../${path}`, import.meta.url);
}

/** A built artifact: build/PATH in Node, dist/browser/PATH in a browser bundle. */
export function artifactUrl(path: string): URL {
  return browserRoot === undefined ? packageUrl(`build/${path}`) : new URL(`${browserRoot}${path}`, import.meta.url);
}

/** The compiled engine, engine.wasm (a literal URL in browser bundles, for bundlers). */
export function engineUrl(): URL {
  return browserRoot === undefined ? artifactUrl("engine.wasm") : new URL(`${browserRoot}engine.wasm`, import.meta.url);
}

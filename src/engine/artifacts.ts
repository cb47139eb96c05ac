/*
 * Where the package's files are at run time: build/engine.wasm,
 * build/workers/, bench/native/.
 *
 * This module, like every bundle the build writes (dist/lib/*.js,
 * build/workers/*.mjs), sits two directories below the package root, so one
 * relative URL serves the sources under vitest and the bundles alike.
 */
export function packageUrl(path: string): URL {
  return new URL(`../../${path}`, import.meta.url);
}

export function artifactUrl(path: string): URL {
  return packageUrl(`build/${path}`);
}

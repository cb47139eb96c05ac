/*
 * Constants scripts/build.mjs defines (esbuild `define`) in browser bundles
 * only. Elsewhere the name is undeclared at run time: test it with typeof.
 */

/** The relative path from a browser bundle to dist/browser/ ("./", "../"). */
declare const __DMABUF_LAB_BROWSER_ROOT__: string | undefined;

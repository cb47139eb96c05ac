#!/usr/bin/env node
/*
 * Builds everything the package runs, skipping each step whose outputs are
 * newer than its inputs:
 *   engine   assembly/ -> build/engine.wasm (asc, release), then validated by
 *            binaryen: the feature set must be within ALLOWED_FEATURES, the
 *            module must validate with exactly those, import only a shared
 *            env.memory, keep its static data below the arena's control
 *            block, and export every function src/engine/abi.ts names.
 *   bundles  workers/*.ts -> build/workers/*.mjs (code splitting: the
 *            workers share chunk-*.mjs instead of each carrying the library), test/workers/*.ts ->
 *            build/test-workers/*.mjs, src/index.ts -> dist/lib/index.js,
 *            src/cli/main.ts -> dist/lib/cli.js, src/kernel/index.ts ->
 *            dist/lib/kernel.js (esbuild; the kernel bundle imports the
 *            library from ./index.js, so both share one set of classes)
 *   browser  src/index.ts -> dist/browser/index.js, src/kernel/index.ts ->
 *            dist/browser/kernel.js (importing ./index.js), the workers that do not
 *            import node: modules -> dist/browser/workers/*.mjs (split the
 *            same way), engine.wasm
 *            copied to dist/browser/; the browser tests' pages
 *            (test-browser/pages/: *.ts -> build/test-browser/*.mjs, *.html
 *            copied) and workers (-> build/test-browser/workers/*.mjs).
 *            Each browser bundle gets __DMABUF_LAB_BROWSER_ROOT__ (see
 *            src/engine/artifacts.ts) and must import no node: module.
 *   types    tsc: type-checks src, workers, bench, test and test-browser; declarations in dist/types
 * Usage: node scripts/build.mjs [--quiet] [--force]
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { execFileSync } from "node:child_process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({ options: { quiet: { type: "boolean" }, force: { type: "boolean" } } });
const log = (msg) => { if (!args.quiet) process.stderr.write(`build: ${msg}\n`); };

// Must match src/memory/layout.ts: static data lives in [MEMORY_BASE, STATIC_END).
const MEMORY_BASE = 1024;
const STATIC_END = 64 * 1024;
const MAX_PAGES = 65536;

function files(dir, ext) {
  const out = [];
  const abs = join(root, dir);
  if (!existsSync(abs)) return out;
  for (const entry of readdirSync(abs, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...files(p, ext));
    else if (ext.some((e) => entry.name.endsWith(e))) out.push(p);
  }
  return out;
}

const newest = (paths) => Math.max(0, ...paths.map((p) => statSync(join(root, p)).mtimeMs));
const oldest = (paths) => Math.min(...paths.map((p) => (existsSync(join(root, p)) ? statSync(join(root, p)).mtimeMs : 0)));
const stale = (inputs, outputs) => args.force || oldest(outputs) < newest([...inputs, "scripts/build.mjs", "package.json"]);

function fail(step, message) {
  process.stderr.write(`build: ${step} failed: ${message}\n`);
  process.exit(1);
}

async function buildEngine() {
  const inputs = files("assembly", [".ts", ".json"]);
  const out = "build/engine.wasm";
  if (!stale(inputs, [out])) return;
  mkdirSync(join(root, "build"), { recursive: true });
  const { default: asc } = await import("assemblyscript/asc");
  const { error, stderr } = await asc.main([
    "assembly/index.ts", "--outFile", out,
    "--importMemory", "--sharedMemory", "--initialMemory", "2", "--maximumMemory", String(MAX_PAGES),
    "--enable", "threads", "--enable", "simd", "--runtime", "stub", "--noAssert",
    "--zeroFilledMemory", "--memoryBase", String(MEMORY_BASE),
    "-O3", "--converge", "--runPasses", "emit-target-features",
  ], { stdout: process.stdout, stderr: process.stderr, baseDir: root });
  if (error) fail("asc", `${error.message}\n${stderr.toString()}`);
  await validateEngine(out);
  log(`engine: ${out} (${statSync(join(root, out)).size} bytes, validated)`);
}

async function validateEngine(path) {
  const { default: binaryen } = await import("binaryen");
  const F = binaryen.Features;
  const ALLOWED_FEATURES = F.MVP | F.Atomics | F.SIMD128 | F.BulkMemory | F.BulkMemoryOpt |
    F.MutableGlobals | F.SignExt | F.NontrappingFPToInt;
  const module = binaryen.readBinary(readFileSync(join(root, path)));
  try {
    const declared = module.getFeatures();
    const extra = declared & ~ALLOWED_FEATURES;
    if (extra !== 0) {
      const names = Object.entries(F).filter(([k, v]) => v && (extra & v) === v && !["All", "Default"].includes(k)).map(([k]) => k);
      fail("validate", `the engine declares features outside the allowed set: ${names.join(", ") || extra}`);
    }
    module.setFeatures(ALLOWED_FEATURES);
    if (!module.validate()) fail("validate", "binaryen reports the module invalid (see above)");
    const mem = module.getMemoryInfo();
    if (mem.module !== "env" || mem.base !== "memory" || !mem.shared || mem.is64) {
      fail("validate", `the engine must import a shared 32-bit env.memory, not ${JSON.stringify(mem)}`);
    }
    for (let i = 0; i < module.getNumDataSegments(); i++) {
      const seg = module.getDataSegmentInfo(module.getDataSegmentByIndex(i));
      const offset = binaryen.getExpressionInfo(seg.offset).value;
      if (offset + seg.data.length > STATIC_END) {
        fail("validate", `static data [${offset}, ${offset + seg.data.length}) passes the control block at ${STATIC_END}`);
      }
    }
    const exported = new Set();
    for (let i = 0; i < module.getNumExports(); i++) exported.add(binaryen.getExportInfo(module.getExportByIndex(i)).name);
    const { ENGINE_EXPORTS } = await importTs("src/engine/abi.ts");
    const missing = ENGINE_EXPORTS.filter((name) => !exported.has(name));
    if (missing.length) fail("validate", `the engine does not export ${missing.join(", ")}`);
  } finally {
    module.dispose();
  }
}

async function importTs(path) {
  const { build } = await import("esbuild");
  const result = await build({ entryPoints: [join(root, path)], bundle: true, format: "esm", write: false, logLevel: "silent" });
  return import(`data:text/javascript;base64,${Buffer.from(result.outputFiles[0].text).toString("base64")}`);
}

/** Node-only workers (they import node: modules themselves) get no browser bundle. */
const browserCapable = (path) => !/\bfrom\s+["']node:|\bimport\(\s*["']node:/.test(readFileSync(join(root, path), "utf8"));

// The browser tests' pages import the library's sources for their types; in
// the page the import is "dmabuf-lab", which the page's import map resolves
// to /dist/browser/index.js, so the pages exercise the browser bundle itself.
const libraryAsPackage = {
  name: "library-as-package",
  setup(b) { b.onResolve({ filter: /\/src\/index\.js$/ }, () => ({ path: "dmabuf-lab", external: true })); },
};

// dmabuf-lab/kernel imports the library only through src/index.js, which its
// bundle leaves to the library's own bundle beside it: one copy of every class,
// so that a Lab from "dmabuf-lab" works with the kernel functions.
const libraryBeside = {
  name: "library-beside",
  setup(b) { b.onResolve({ filter: /^\.\.\/index\.js$/ }, () => ({ path: "./index.js", external: true })); },
};

async function buildBundles() {
  const { build } = await import("esbuild");
  // Test workers import test helpers (test/fuzz/, ...): every file under test/ is an input.
  const inputs = [...files("src", [".ts", ".json"]), ...files("workers", [".ts"]), ...files("test", [".ts"]),
    ...files("bench", [".ts"]), ...files("test-browser", [".ts"])];
  const workers = files("workers", [".ts"]);
  const nodeOnly = workers.filter((w) => !browserCapable(w));
  const jobs = [
    { entries: workers, outdir: "build/workers", ext: ".mjs", packages: "bundle", splitting: true },
    { entries: files("test/workers", [".ts"]), outdir: "build/test-workers", ext: ".mjs", packages: "bundle" },
    { entries: ["src/index.ts", "src/cli/main.ts"], outdir: "dist/lib", ext: ".js", packages: "external",
      rename: { main: "cli" } },
    { entries: ["src/kernel/index.ts"], outdir: "dist/lib", ext: ".js", packages: "external", rename: { index: "kernel" },
      plugins: [libraryBeside] },
    { browser: true, entries: ["src/index.ts"], outdir: "dist/browser", ext: ".js" },
    { browser: true, entries: ["src/kernel/index.ts"], outdir: "dist/browser", ext: ".js", rename: { index: "kernel" },
      plugins: [libraryBeside] },
    { browser: true, entries: workers.filter(browserCapable), outdir: "dist/browser/workers", ext: ".mjs", splitting: true,
      note: nodeOnly.length ? `no browser bundle for the Node-only ${nodeOnly.join(", ")}` : undefined },
    { browser: true, entries: files("test-browser/workers", [".ts"]), outdir: "build/test-browser/workers", ext: ".mjs" },
    { browser: true, entries: files("test-browser/pages", [".ts"]), outdir: "build/test-browser", ext: ".mjs",
      plugins: [libraryAsPackage] },
  ];
  const outputsOf = (job) => job.entries.map((e) => {
    const base = e.split("/").pop().replace(/\.ts$/, "");
    return `${job.outdir}/${job.rename?.[base] ?? base}${job.ext}`;
  });
  // Entry bundles of every job: a job never removes another's that shares its outdir (dist/lib: index, cli, kernel).
  const entryBundles = new Set(jobs.flatMap(outputsOf));
  for (const job of jobs) {
    const outputs = outputsOf(job);
    if (job.entries.length === 0 || !stale(inputs, outputs)) continue;
    const result = await build({
      entryPoints: job.entries.map((e, i) => ({ in: join(root, e), out: relative(join(root, job.outdir), join(root, outputs[i])).replace(/\.m?js$/, "") })),
      outdir: join(root, job.outdir), outExtension: { ".js": job.ext }, bundle: true, splitting: job.splitting ?? false,
      // The package's bundles (dist/) ship without source maps; the repository's own (build/) keep them.
      format: "esm", sourcemap: job.outdir.startsWith("dist/") ? false : "linked", logLevel: "warning", metafile: true,
      ...(job.browser ? browserOptions(job) : {
        platform: "node", target: "node20", packages: job.packages === "external" ? "external" : undefined, plugins: job.plugins ?? [],
        // Bundled CommonJS dependencies may call require(); give ESM bundles one.
        banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      }),
    });
    if (job.browser) checkBrowserImports(result.metafile);
    removeStale(job.outdir, result.metafile, entryBundles);
    log(`bundles: ${outputs.join(", ")}${job.note ? `; ${job.note}` : ""}`);
  }
}

/**
 * A browser bundle: platform browser, the root of dist/browser/ as seen from
 * the bundle (artifacts.ts), and syntax minification, which folds that
 * constant and drops the Node branches with their node: imports (left
 * external for the scan, then checked gone by checkBrowserImports).
 */
function browserOptions(job) {
  const up = posix.relative(job.outdir, "dist/browser");
  return {
    platform: "browser", target: "es2023", minifySyntax: true, external: ["node:*"], plugins: job.plugins ?? [],
    define: { __DMABUF_LAB_BROWSER_ROOT__: JSON.stringify(up === "" ? "./" : `${up}/`) },
  };
}

function checkBrowserImports(metafile) {
  for (const [out, { imports }] of Object.entries(metafile.outputs)) {
    const node = imports.filter((i) => i.external && i.path.startsWith("node:")).map((i) => i.path);
    if (node.length) fail("browser", `${relative(root, out)} imports ${[...new Set(node)].join(", ")}; browser code must not`);
  }
}

/** Removes the bundles (and maps) in outdir that this build did not write: chunks of an earlier build (never another job's entry bundle). */
function removeStale(outdir, metafile, entryBundles) {
  const written = new Set([...Object.keys(metafile.outputs).map((o) => relative(root, resolve(o))), ...entryBundles]);
  for (const entry of readdirSync(join(root, outdir), { withFileTypes: true })) {
    const path = join(outdir, entry.name);
    if (entry.isFile() && /\.(m?js|map)$/.test(entry.name) && !written.has(path) && !written.has(path.replace(/\.map$/, ""))) {
      rmSync(join(root, path));
    }
  }
}

/** Copies each [from, to] whose copy is older than its source. */
function copyFiles(pairs) {
  for (const [from, to] of pairs) {
    if (!args.force && existsSync(join(root, to)) && oldest([to]) >= newest([from])) continue;
    mkdirSync(dirname(join(root, to)), { recursive: true });
    copyFileSync(join(root, from), join(root, to));
    log(`copy: ${to}`);
  }
}

function buildTypes() {
  const inputs = [...files("src", [".ts", ".json"]), ...files("workers", [".ts"]), ...files("bench", [".ts"]), ...files("test", [".ts"]),
    ...files("test-browser", [".ts"]), "tsconfig.json"];
  if (!stale(inputs, ["dist/types/src/index.d.ts"])) return;
  try {
    execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
  } catch {
    fail("tsc", "type errors (see above)");
  }
  // tsc leaves an unchanged file's timestamp alone; mark the step done.
  const stamp = join(root, "dist/types/src/index.d.ts");
  writeFileSync(stamp, readFileSync(stamp));
  log("types: dist/types");
}

await buildEngine();
await buildBundles();
copyFiles([["build/engine.wasm", "dist/browser/engine.wasm"],
  ...files("test-browser/pages", [".html"]).map((p) => [p, `build/test-browser/${p.split("/").pop()}`])]);
buildTypes();


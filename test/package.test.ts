/*
 * The tarball people install (npm pack --dry-run --json, on the built tree):
 * runtime bundles, the public API's types, engine.wasm, the workers sharing
 * their code, LICENSE; no tests, benchmarks, sources, source maps or build
 * scripts, and no build step at install. The test can fail: it reads the
 * real file list.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;

interface Packed { files: { path: string; size: number }[]; size: number; unpackedSize: number }

describe("npm pack", () => {
  const packed = (JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: root, encoding: "utf8" })) as Packed[])[0];
  const paths = packed.files.map((f) => f.path);

  it("lists no test, bench, source or source-map file", () => {
    const unwanted = paths.filter((p) =>
      /^(test|test-browser|bench|src|assembly|scripts|workers)\//.test(p) || /\.map$/.test(p) || /(^|\/)dist\/types\/(test|bench|workers|test-browser)\//.test(p) ||
      /\.test\.(d\.)?[jt]s$/.test(p));
    expect(unwanted).toEqual([]);
  });

  it("holds what runs: the bundles, the engine, the workers, the public types, LICENSE", () => {
    for (const p of ["LICENSE", "README.md", "CHANGELOG.md", "bin/dmabuf-lab.mjs", "dist/lib/index.js", "dist/lib/cli.js",
      "dist/browser/index.js", "dist/browser/engine.wasm", "dist/browser/workers/device.mjs", "build/engine.wasm",
      "build/workers/device.mjs", "build/workers/watchdog.mjs", "build/workers/lab-thread.mjs", "dist/types/src/index.d.ts"]) {
      expect(paths, p).toContain(p);
    }
  });

  it("workers share the library in chunks instead of each carrying a copy", () => {
    const size = (p: string) => packed.files.find((f) => f.path === p)!.size;
    for (const dir of ["build/workers", "dist/browser/workers"]) {
      const ext = ".mjs";
      for (const w of ["device", "watchdog", "lab-thread"]) expect(size(`${dir}/${w}${ext}`), `${dir}/${w}`).toBeLessThan(32 * 1024);
      expect(paths.some((p) => p.startsWith(`${dir}/chunk-`)), dir).toBe(true);
    }
  });

  it("needs no build step at install, and says what it is", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    for (const hook of ["prepare", "preinstall", "install", "postinstall"]) expect(pkg.scripts[hook], hook).toBeUndefined();
    expect(pkg.license).toBe("MIT");
    expect(readFileSync(new URL("../LICENSE", import.meta.url), "utf8")).toMatch(/^MIT License/);
    expect(pkg.keywords).toContain("dma-buf");
  });
});

/*
 * The package as people use it: `npm pack` of this tree, unpacked into a
 * fresh app's node_modules, the app built by Vite and by
 * esbuild and run in headless Chromium, where a device worker copies a
 * dma-buf (the app is examples/browser/). Vite finds and emits the workers by itself (worker.format "es");
 * the Vite dev server serves them with the package excluded from
 * pre-bundling; esbuild does not follow `new URL(..., import.meta.url)`, so
 * its app copies dist/browser/ next to its bundle, as the README says.
 * Every server sends COOP/COEP (shared memory needs cross-origin isolation).
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import os from "node:os";
import { extname, join, normalize } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { inPage, launchChromium } from "./helpers/chromium.js";

const root = new URL("..", import.meta.url).pathname;
const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };

interface AppResults { signalled: boolean; status: number; sevens: number; jobsDone: number }

/** A static server of dir with the isolation headers, on a free port. */
function serveDir(dir: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const path = normalize(join(dir, decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)));
    const file = path.endsWith("/") ? join(path, "index.html") : path;
    try {
      const body = readFileSync(file);
      res.writeHead(200, { ...ISOLATION, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404, ISOLATION);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as { port: number };
    resolve({ url: `http://localhost:${port}/`, server });
  }));
}

const appResults = (browser: Browser, url: string) => inPage(browser, url,
  () => (window as unknown as { __results?: unknown; __error?: unknown }).__results ?? (window as unknown as { __error?: unknown }).__error,
  () => ({ results: (window as unknown as { __results?: AppResults }).__results, error: (window as unknown as { __error?: string }).__error }));

function expectCopied(got: { results?: AppResults; error?: string }): void {
  expect(got.error).toBeUndefined();
  expect(got.results).toEqual({ signalled: true, status: 1, sevens: 65536, jobsDone: 1 });
}

describe.skipIf(!inject("chromium"))("the packed package in bundled apps, in headless Chromium", () => {
  let browser: Browser;
  let work: string;
  let app: string;
  const servers: Server[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(os.tmpdir(), "dmabuf-lab-bundlers-"));
    const [{ filename }] = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", work], { cwd: root, encoding: "utf8" })) as { filename: string }[];
    app = join(work, "app");
    const pkg = join(app, "node_modules", "dmabuf-lab");
    mkdirSync(pkg, { recursive: true });
    execFileSync("tar", ["-xzf", join(work, filename), "-C", pkg, "--strip-components=1"]);
    cpSync(join(root, "examples", "browser"), app, { recursive: true });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    for (const s of servers) s.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("vite build emits the workers and the engine by itself", async () => {
    const { build } = await import("vite");
    const outDir = join(app, "dist-vite");
    await build({ root: app, logLevel: "error", configFile: join(app, "vite.config.js"), build: { outDir, target: "es2023" } });
    const { url, server } = await serveDir(outDir);
    servers.push(server);
    expectCopied(await appResults(browser, url));
  });

  it("the vite dev server serves the package's workers (the package excluded from pre-bundling)", async () => {
    const { createServer: createVite } = await import("vite");
    const vite = await createVite({
      root: app, logLevel: "error", configFile: join(app, "vite.config.js"),
      server: { port: 0, host: "127.0.0.1" },
    });
    await vite.listen();
    try {
      const { port } = vite.httpServer!.address() as { port: number };
      expectCopied(await appResults(browser, `http://localhost:${port}/`));
    } finally {
      await vite.close();
    }
  });

  it("esbuild bundles the app; dist/browser/ copied next to the bundle gives it the workers and the engine", async () => {
    const { build } = await import("esbuild");
    const outdir = join(app, "dist-esbuild");
    await build({ entryPoints: [join(app, "main.js")], bundle: true, format: "esm", outdir, logLevel: "error", absWorkingDir: app });
    cpSync(join(app, "index.html"), join(outdir, "index.html"));
    cpSync(join(app, "node_modules", "dmabuf-lab", "dist", "browser"), outdir, { recursive: true, filter: (src) => !src.endsWith("index.js") });
    const { url, server } = await serveDir(outdir);
    servers.push(server);
    expectCopied(await appResults(browser, url));
  });
});

/*
 * `dmabuf-lab serve` over HTTP, from Node (no browser needed): the
 * isolation headers, the types by extension, the mounts, what it refuses,
 * and that SIGINT stops it. The servers are real CLI processes (setup.ts
 * starts two; the SIGINT test its own).
 */
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { describe, expect, inject, it } from "vitest";
import { packageUrl } from "../src/engine/artifacts.js";
import { startServeProcess } from "./helpers/serve-process.js";

const isolatedUrl = inject("isolatedUrl");
const plainUrl = inject("plainUrl");

/** A raw GET (or another method) whose path is sent exactly as given: fetch would normalise "..". */
function raw(base: string, path: string, method = "GET"): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, method, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within 10 s`)));
    req.on("error", reject);
    req.end();
  });
}

const packageFile = (path: string) => readFileSync(fileURLToPath(packageUrl(path)));

describe("dmabuf-lab serve", () => {
  it("prints a loopback URL", () => {
    expect(isolatedUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(plainUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(plainUrl).not.toBe(isolatedUrl);
  });

  it("sends COOP, COEP and CORP with every answer, a 404 included", async () => {
    for (const path of ["/", "/dist/browser/index.js", "/no-such-file"]) {
      const r = await raw(isolatedUrl, path);
      expect(r.headers["cross-origin-opener-policy"], path).toBe("same-origin");
      expect(r.headers["cross-origin-embedder-policy"], path).toBe("require-corp");
      expect(r.headers["cross-origin-resource-policy"], path).toBe("same-origin");
    }
  });

  it("with --no-isolation sends neither COOP nor COEP", async () => {
    const r = await raw(plainUrl, "/");
    expect(r.status).toBe(200);
    expect(r.headers["cross-origin-opener-policy"]).toBeUndefined();
    expect(r.headers["cross-origin-embedder-policy"]).toBeUndefined();
  });

  it("serves web/ at /, dist/browser/ and the built test pages, with their types and exact bytes", async () => {
    const cases: [path: string, file: string, type: string][] = [
      ["/", "web/index.html", "text/html; charset=utf-8"],
      ["/main.js", "web/main.js", "text/javascript; charset=utf-8"],
      ["/dist/browser/index.js", "dist/browser/index.js", "text/javascript; charset=utf-8"],
      ["/dist/browser/engine.wasm", "dist/browser/engine.wasm", "application/wasm"],
      ["/dist/browser/workers/lab-thread.mjs", "dist/browser/workers/lab-thread.mjs", "text/javascript; charset=utf-8"],
      ["/test/conformance.mjs.map", "build/test-browser/conformance.mjs.map", "application/json"],
      ["/test/conformance.html", "build/test-browser/conformance.html", "text/html; charset=utf-8"],
    ];
    for (const [path, file, type] of cases) {
      const r = await raw(isolatedUrl, path);
      expect(r.status, path).toBe(200);
      expect(r.headers["content-type"], path).toBe(type);
      expect(r.body.equals(packageFile(file)), `${path} is ${file}`).toBe(true);
    }
    expect(packageFile("dist/browser/engine.wasm").equals(packageFile("build/engine.wasm"))).toBe(true);
  });

  it("answers HEAD without a body", async () => {
    const r = await raw(isolatedUrl, "/dist/browser/engine.wasm", "HEAD");
    expect(r.status).toBe(200);
    expect(Number(r.headers["content-length"])).toBe(packageFile("dist/browser/engine.wasm").length);
    expect(r.body.length).toBe(0);
  });

  it("serves nothing outside its mounts: 404 for .. in any spelling, and for directories", async () => {
    for (const path of ["/../package.json", "/dist/browser/../../package.json", "/%2e%2e/package.json",
      "/..%2fpackage.json", "/dist/browser/..%2f..%2fpackage.json", "/dist/browser/workers", "/no-such-file", "/%00"]) {
      const r = await raw(isolatedUrl, path);
      expect(r.status, path).toBe(404);
      expect(r.body.includes('"name": "dmabuf-lab"'), path).toBe(false);
    }
  });

  it("refuses other methods with 405", async () => {
    const r = await raw(isolatedUrl, "/", "POST");
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe("GET, HEAD");
  });

  it("stops on SIGINT and exits 0", async () => {
    const server = await startServeProcess();
    expect((await raw(server.url, "/")).status).toBe(200);
    const end = await server.stop();
    expect(end).toMatchObject({ code: 0, signal: null });
    expect(end.stderr).toContain("serve: stopped");
    await expect(raw(server.url, "/")).rejects.toThrow(/ECONNREFUSED/);
  });
});

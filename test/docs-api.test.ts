/*
 * The API reference stays buildable: `npm run docs:api` (TypeDoc, the
 * settings in typedoc.json) generates docs/api/ from the doc comments of
 * the public API (src/index.ts, module dmabuf-lab, and src/kernel/index.ts,
 * module dmabuf-lab/kernel). docs/api/ is generated, not committed; this
 * runs TypeDoc into a temporary directory and checks that the main classes
 * and a kernel function have pages. And every option of every public method is typed
 * and documented (helpers/option-docs.ts reads the signatures with the
 * TypeScript compiler), so the reference shows each one.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { undocumented } from "./helpers/option-docs.js";

const root = new URL("..", import.meta.url).pathname;

it("TypeDoc builds the API reference of every public class without errors", async () => {
  const out = mkdtempSync(join(os.tmpdir(), "dmabuf-lab-api-"));
  try {
    const r = await new Promise<{ code: number; output: string }>((resolve) => {
      execFile(process.execPath, [join(root, "node_modules/typedoc/bin/typedoc"), "--out", out], { cwd: root, timeout: 240_000 },
        (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, output: stdout + stderr }));
    });
    expect(r.output).not.toMatch(/\[error\]/);
    expect(r.code).toBe(0);
    for (const c of ["Lab", "DmaBuf", "Device", "Fence", "DmaBufError"]) expect(existsSync(join(out, "classes", `dmabuf-lab.${c}.html`)), c).toBe(true);
    expect(readFileSync(join(out, "classes", "dmabuf-lab.Lab.html"), "utf8")).toContain("spawnDevice");
    expect(existsSync(join(out, "functions", "dmabuf-lab_kernel.dma_fence_init.html"))).toBe(true);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 300_000);

it("every option of every public function, constructor and method is typed (no any) and has a doc comment", () => {
  const missing = undocumented(root, [join(root, "src/index.ts"), join(root, "src/kernel/index.ts")]);
  expect(missing, "undocumented options (file:line property) or parameters typed any").toEqual([]);
}, 120_000);

/*
 * The floors hold: dependency-cruiser runs the rules of .dependency-cruiser.cjs (no import
 * circle, no import from a floor to a higher one, type-only imports included, every module
 * on a floor) over src/, bench/ and workers/. There is no list of known violations: every
 * one fails this test with the offending import named.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;

it("no import circle and no import from a lower floor to a higher one (dependency-cruiser)", async () => {
  const args = [join(root, "node_modules/dependency-cruiser/bin/dependency-cruise.mjs"), "src", "bench", "workers",
    "--config", ".dependency-cruiser.cjs", "--output-type", "err"];
  const r = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, output: stdout + stderr }));
  });
  expect(r.output).toContain("no dependency violations found");
  expect(r.code).toBe(0);
}, 150_000);

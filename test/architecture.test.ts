/*
 * The floors hold: dependency-cruiser runs the rules of .dependency-cruiser.cjs (no import
 * circle, no import from a floor to a higher one, type-only imports included, every module
 * on a floor) over src/, bench/ and workers/. Violations that predate the rules are listed
 * in .dependency-cruiser-known-violations.json (regenerate with
 * `npx depcruise src bench workers --config .dependency-cruiser.cjs --output-type baseline
 * --output-to .dependency-cruiser-known-violations.json` only when a change removes some);
 * any other one fails this test with the offending import named.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;

it("no import circle and no import from a lower floor to a higher one (dependency-cruiser)", async () => {
  const args = [join(root, "node_modules/dependency-cruiser/bin/dependency-cruise.mjs"), "src", "bench", "workers",
    "--config", ".dependency-cruiser.cjs", "--ignore-known", "--output-type", "err"];
  const r = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, output: stdout + stderr }));
  });
  expect(r.output).toContain("no dependency violations found");
  expect(r.code).toBe(0);
}, 150_000);

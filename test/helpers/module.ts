/*
 * Runs an ES module's text in a new Node process (from a temporary file),
 * bounded by 30 s: its exit code (-1 when killed, e.g. a process that hung)
 * and stdout. For lifetime tests: does a forgotten worker keep Node alive?
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function runModule(text: string): Promise<{ code: number; stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), "dmabuf-lab-module-"));
  try {
    const file = join(dir, "main.mjs");
    writeFileSync(file, text);
    return await new Promise((resolve) => {
      execFile(process.execPath, [file], { timeout: 30_000 },
        (error, stdout) => resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout }));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

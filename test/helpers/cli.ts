/*
 * The command line as a real subprocess on the built bundle (npm test
 * builds it first): runCli(args) resolves with the exit code (-1 when
 * killed, after 60 s at most), stdout and stderr.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

const bin = fileURLToPath(new URL("../../bin/dmabuf-lab.mjs", import.meta.url));

export function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

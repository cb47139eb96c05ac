/*
 * A real `dmabuf-lab serve` process (the built CLI, bin/dmabuf-lab.mjs) for
 * the browser tests: started on a free port (--port 0), its URL read from the
 * first line of its stdout. stop() sends SIGINT and resolves with how it
 * ended and what it wrote to stderr. Starting and stopping each have a
 * timeout; a process that does not stop in time is killed and reported.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { packageUrl } from "../../src/engine/artifacts.js";
import { within } from "../../test/helpers/waits.js";

export interface ServeProcess {
  /** http://127.0.0.1:PORT/ */
  url: string;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

const TIMEOUT_MS = 20_000;

export async function startServeProcess(args: string[] = []): Promise<ServeProcess> {
  const child = spawn(process.execPath, [fileURLToPath(packageUrl("bin/dmabuf-lab.mjs")), "serve", "--port", "0", ...args],
    { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (t: string) => { stderr += t; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`dmabuf-lab serve ${args.join(" ")} printed no URL within ${TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, TIMEOUT_MS);
    child.stdout.setEncoding("utf8").on("data", (t: string) => {
      stdout += t;
      const line = stdout.split("\n");
      if (line.length > 1) {
        clearTimeout(timer);
        resolve(line[0]);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`dmabuf-lab serve ${args.join(" ")} exited (${code ?? signal}) before printing its URL; stderr: ${stderr}`));
    });
  });
  return {
    url,
    async stop() {
      child.kill("SIGINT");
      try {
        return { ...(await within(exited, TIMEOUT_MS, `dmabuf-lab serve after SIGINT (stderr: ${stderr})`)), stderr };
      } catch (e) {
        child.kill("SIGKILL");
        throw e;
      }
    },
  };
}

/*
 * Global set-up of the browser tests (vitest.browser.config.ts): two real
 * `dmabuf-lab serve` processes on free ports, one with the cross-origin
 * isolation headers and one without (--no-isolation), and whether Chromium
 * is there. Without Chromium the browser tests skip with a loud message,
 * except under CI (CI set), where that is a failure: .ci/run installs it.
 * Teardown stops both servers with SIGINT.
 */
import type { TestProject } from "vitest/node";
import { CHROMIUM_PATH, chromiumPresent } from "./helpers/chromium.js";
import { startServeProcess } from "./helpers/serve-process.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** The serve process with COOP/COEP. */
    isolatedUrl: string;
    /** The serve process without them. */
    plainUrl: string;
    chromium: boolean;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const present = chromiumPresent();
  if (!present) {
    const banner = "=".repeat(78);
    const message = `Chromium is not at ${CHROMIUM_PATH}: the browser tests are SKIPPED. Install it with ` +
      "`apt-get install -y chromium` (as root or with sudo); .ci/run does.";
    if (process.env.CI) throw new Error(`${message} Under CI (CI=${process.env.CI}) they must run.`);
    process.stderr.write(`\n${banner}\n${message}\n${banner}\n\n`);
  }
  const isolated = await startServeProcess();
  const plain = await startServeProcess(["--no-isolation"]).catch(async (e: unknown) => {
    await isolated.stop();
    throw e;
  });
  project.provide("isolatedUrl", isolated.url);
  project.provide("plainUrl", plain.url);
  project.provide("chromium", present);
  return async () => {
    const ends = await Promise.all([isolated.stop(), plain.stop()]);
    const bad = ends.find((e) => e.code !== 0);
    if (bad) throw new Error(`a serve process ended with ${bad.code ?? bad.signal} on SIGINT: ${bad.stderr}`);
  };
}

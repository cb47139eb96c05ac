/*
 * npm run fuzz: bundles the fuzzer's command (test/fuzz/cli.ts) with esbuild
 * into build/fuzz/cli.mjs (two directories below the root, where the lab
 * finds its built artifacts) and runs it with this process's arguments. The
 * worker it starts (build/test-workers/fuzz-agent.mjs) comes from
 * `npm run build`, which the npm script runs first.
 */
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(root, "build/fuzz/cli.mjs");
await build({
  entryPoints: [join(root, "test/fuzz/cli.ts")], outfile, bundle: true, platform: "node", format: "esm", target: "node20",
  logLevel: "warning",
});
await import(pathToFileURL(outfile).href);

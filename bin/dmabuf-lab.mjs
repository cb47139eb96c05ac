#!/usr/bin/env node
// The dmabuf-lab command: runs the bundled CLI (built by `npm run build`).
import { existsSync } from "node:fs";

const cli = new URL("../dist/lib/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("dmabuf-lab: the CLI is not built yet; run `npm run build` (npm start and npm test build it themselves)\n");
  process.exit(1);
}
await import(cli.href);

/*
 * examples/ run as users run them: `node examples/X.mjs` in a subprocess,
 * importing "dmabuf-lab" (the package's own exports, resolved to the built
 * dist/lib). Each must exit 0 and print its verdict. The browser example is
 * built and run in Chromium by test-browser/bundlers.test.ts. The README's
 * ten-line example (its "## Example" section) runs too, as written, and so
 * do the two programs of "### Sharing with workers" (the sharing idiom and
 * the buffer queue, each a main thread that runs itself as its worker).
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runModule } from "./helpers/module.js";

const root = new URL("..", import.meta.url).pathname;

function runExample(file: string, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [`examples/${file}`, ...args], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr }));
  });
}

describe("examples", () => {
  it("node-embed.mjs: a device copies a dma-buf the CPU wrote", async () => {
    const r = await runExample("node-embed.mjs");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("device copy: status 1, every byte arrived");
  });

  it("copy-strategies.mjs --quick: a GB/s row per size for every strategy and Uint8Array.set, the copy verified", async () => {
    const r = await runExample("copy-strategies.mjs", ["--quick"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^size\s+bulk\s+simd\s+words\s+bytes\s+reference\s+auto\s+Uint8Array\.set$/m);
    expect(r.stdout).toMatch(/^1 MiB(\s+[\d.]+){7}$/m);
    expect(r.stdout).toContain("the last copy verified");
  });

  it("contention.mjs: two devices and the CPU on one buffer, no torn read", async () => {
    const r = await runExample("contention.mjs", ["10"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("10 rounds, 2 devices and the CPU on one buffer: 0 torn reads; copier 10 jobs, checker 10 jobs");
  });

  it("the README's example runs as written and prints what its comment says", async () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const block = /^## Example\n+```js\n([\s\S]*?)\n```/m.exec(readme)?.[1];
    expect(block, "README.md has a '## Example' section with a js block").toBeDefined();
    expect(block!.split("\n").filter((l) => l.trim() !== "").length).toBeLessThanOrEqual(10);
    const lib = new URL("../dist/lib/index.js", import.meta.url).href;
    const r = await runModule(block!.replace(/from "dmabuf-lab"/g, `from ${JSON.stringify(lib)}`));
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("Uint8Array(4) [ 42, 42, 42, 42 ] 1");
  });

  it("the README's \"Sharing with workers\" programs run as written and print what their comments say", async () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const section = /^### Sharing with workers\n([\s\S]*?)^### /m.exec(readme)?.[1] ?? "";
    const blocks = [...section.matchAll(/^```ts\n([\s\S]*?)\n```/gm)].map((m) => m[1]);
    expect(blocks.length, "the section has the sharing idiom and the queue").toBe(2);
    const lib = new URL("../dist/lib/index.js", import.meta.url).href;
    const outputs: string[] = [];
    for (const block of blocks) {
      const r = await runModule(block.replace(/from "dmabuf-lab"/g, `from ${JSON.stringify(lib)}`));
      expect(r.code).toBe(0);
      outputs.push(r.stdout.trim());
    }
    expect(outputs).toEqual(["true", "1,2,3,4,5,6,7,8,9,10"]);
  });
});

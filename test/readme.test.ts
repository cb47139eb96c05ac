/*
 * The README's examples run: every ```ts block is executed by node against
 * the built package (npm test builds it first), and must exit 0.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const readme = readFileSync(join(root, "README.md"), "utf8");
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const dir = mkdtempSync(join(tmpdir(), "dmabuf-readme-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("README examples", () => {
  it("has examples", () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  blocks.forEach((code, i) => {
    it(`example ${i + 1} runs`, async () => {
      const file = join(dir, `example-${i + 1}.mjs`);
      writeFileSync(file, code
        .replaceAll('from "dmabuf-lab/kernel"', `from ${JSON.stringify(join(root, "dist/lib/kernel.js"))}`)
        .replaceAll('from "dmabuf-lab"', `from ${JSON.stringify(join(root, "dist/lib/index.js"))}`));
      const { code: exit, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(process.execPath, [file], { timeout: 60_000 }, (error, _stdout, err) => {
          resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stderr: err });
        });
      });
      expect(stderr).toBe("");
      expect(exit).toBe(0);
    });
  });
});

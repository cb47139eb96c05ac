/*
 * `dmabuf-lab demo io` (src/demo/io.ts): a real file streamed by a real
 * storage device worker into registered dma-bufs with io_uring READ_FIXED,
 * each block summed by a real gpu device worker and checked against the
 * file; the race detector finds no unordered access; the command as a
 * subprocess, its JSON, its trace and its usage errors.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { checkIoDemoOptions, runIoDemo } from "../src/demo/io.js";
import { checkChromeTrace } from "../src/trace/validate.js";
import { runCli } from "./helpers/cli.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet } from "./helpers/lab.js";
import { prng, testSeed } from "./helpers/prng.js";

const KiB = 1024;
const labs = new LabSet({ memoryBytes: 96 << 20, poolBytes: 32 << 20 });
const dirs: string[] = [];
afterEach(() => {
  labs.closeAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "demo-io-"));
  dirs.push(d);
  return d;
}

describe("demo io", () => {
  test("a temporary file streamed through 3 registered dma-bufs and summed by the gpu: every block checked, no race, nothing left behind", async () => {
    const lab = await labs.create({ sanitize: true });
    const before = lab.stats();
    const r = await runIoDemo(lab, { sizeBytes: 1024 * KiB, blockBytes: 16 * KiB, buffers: 3 });
    expect(r).toMatchObject({ blocks: 64, buffers: 3, bytes: 1024 * KiB, checked: 64, mismatched: [], ok: true });
    expect(r.devices).toEqual([{ name: "nvme0n1", jobsDone: 64, jobsFailed: 0 }, { name: "gpu", jobsDone: 64, jobsFailed: 0 }]);
    expect(r.read.samples).toBe(64);
    expect(r.gpu.samples).toBe(64);
    expect(r.endToEnd.p50Ns).toBeGreaterThanOrEqual(r.read.p50Ns);
    const san = lab.sanitizer.report();
    // The storage DMA, the gpu's reads and writes and the CPU's reads of the sums: 4 per block, none unordered.
    expect(san.accesses).toBeGreaterThanOrEqual(4 * 64);
    expect(san.raceCount).toBe(0);
    expect(san.incomplete).toBe(false);
    const after = lab.stats();
    expect(after.pages.freeBytes).toBe(before.pages.freeBytes);
  });

  test("the caller's file (random bytes, a partial last block left out) is streamed read only, every sum right", async () => {
    const seed = testSeed();
    console.log(`demo-io seed ${seed}`);
    const rng = prng(seed);
    const file = join(tempDir(), "data.bin");
    const bytes = Uint8Array.from({ length: 40 * 4 * KiB + 123 }, () => rng.int(0, 255));
    writeFileSync(file, bytes);
    const lab = await labs.create();
    const r = await runIoDemo(lab, { file, blockBytes: 8 * KiB, buffers: 4 });
    expect(r).toMatchObject({ blocks: 20, bytes: 160 * KiB, file, ok: true, mismatched: [] });
    const now = readFileSync(file);
    expect(now.length).toBe(bytes.length); // never extended
    expect(Buffer.compare(now, Buffer.from(bytes))).toBe(0); // never written
  });

  test("bad options are EINVAL naming the value, before anything starts", async () => {
    expect(expectErrno(() => checkIoDemoOptions({ blockBytes: 5000 }), "EINVAL").message).toContain("5000");
    expect(expectErrno(() => checkIoDemoOptions({ sizeBytes: 100 * KiB, blockBytes: 64 * KiB }), "EINVAL").message).toContain("102400");
    expect(expectErrno(() => checkIoDemoOptions({ buffers: 0 }), "EINVAL").message).toContain("0");
    expect(expectErrno(() => checkIoDemoOptions({ file: 7 as unknown as string }), "EFAULT").message).toContain("file");
    const lab = await labs.create();
    const before = lab.stats();
    await expect(runIoDemo(lab, { file: join(tempDir(), "missing.bin") })).rejects.toMatchObject({ name: "DmaBufError", code: "ENOENT" });
    const tiny = join(tempDir(), "tiny.bin");
    writeFileSync(tiny, new Uint8Array(100));
    await expect(runIoDemo(lab, { file: tiny })).rejects.toMatchObject({ code: "EINVAL" });
    // A directory is not a file to stream (its size is no length of data).
    expect(expectErrno(() => checkIoDemoOptions({ file: tempDir(), blockBytes: 4 * KiB }), "EISDIR").message).toContain("not a regular file");
    expect(lab.stats().pages.freeBytes).toBe(before.pages.freeBytes);
  });

  test("the command: a table, --json, --trace of both devices, and usage errors (exit 2)", async () => {
    const trace = join(tempDir(), "io.json");
    const table = await runCli(["demo", "io", "--size", "512K", "--block", "32K"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/16 blocks in [\d.]+ s: [\d.]+ MB\/s/);
    expect(table.stdout).toMatch(/integrity: OK, 16 blocks checked against the file/);
    expect(table.stderr).toMatch(/demo io: 16\/16 blocks read, summed and checked/);
    const json = await runCli(["demo", "io", "--size", "256K", "--block", "16K", "--json", "--trace", trace]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ blocks: 16, ok: true });
    const t = JSON.parse(readFileSync(trace, "utf8"));
    expect(checkChromeTrace(t).problems).toEqual([]);
    const tracks = t.traceEvents.filter((e: { ph: string; name: string }) => e.ph === "M" && e.name === "thread_name").map((e: { args: { name: string } }) => e.args.name);
    expect(tracks).toEqual(expect.arrayContaining(["device nvme0n1", "device gpu"]));
    const missing = join(tempDir(), "missing.bin");
    for (const [args, text] of [[["--block", "5000"], "5000"], [["--buffers", "0"], "--buffers"], [["--size", "100K", "--block", "64K"], "102400"],
      [["--file", missing], missing], [["--file", tempDir()], "not a regular file"]] as const) {
      const bad = await runCli(["demo", "io", ...args]);
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr).toContain(text);
      expect(bad.stderr).toMatch(/see 'dmabuf-lab demo io --help'/);
    }
    // `demo` alone still runs the pipeline with its own options.
    const plain = await runCli(["demo", "--frames", "8"]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/integrity: OK/);
  }, 120_000);
});

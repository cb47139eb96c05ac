/*
 * The contention experiment (issue 5, section 5): real CPU threads and
 * device workers on shared dma-bufs. With fences no read is torn; with
 * --bypass-fences tears are counted; the stamp check itself is tested on
 * hand-made interleavings. No assertion depends on timing: counts are exact
 * with iterations, and a duration run does at least one operation per
 * thread and the whole job mix once per device.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { runContend, type ContendResult } from "../src/contend/run.js";
import { resolveOptions, sharedAt, type ContendOptions } from "../src/contend/options.js";
import { HEADER_BYTES, headerOf, isWhole, stamp } from "../src/contend/stamp.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { runCli as run } from "./helpers/cli.js";
import { LabSet } from "./helpers/lab.js";
import { checkChromeTrace } from "../src/trace/validate.js";

const KiB = 1024;
const labs = new LabSet({ memoryBytes: 32 * 1024 * KiB });
afterAll(() => labs.closeAll());

const role = (r: ContendResult, name: string) => {
  const x = r.roles.find((y) => y.role === name);
  if (x === undefined) throw new Error(`no role ${name} in ${r.roles.map((y) => y.role).join(", ")}`);
  return x;
};

describe("the stamp", () => {
  test("a whole generation and a fill are whole; any mix of two is torn", async () => {
    const lab = await labs.create();
    const size = 16 * KiB;
    const [a, b, mixed] = [lab.alloc(size), lab.alloc(size), lab.alloc(size)];
    stamp(a, 7, 0, lab.engine);
    stamp(b, 8, 1, lab.engine);
    expect(headerOf(a)).toMatchObject({ kind: "stamp", generation: 7, writer: 0 });
    expect(isWhole(a, lab.engine) && isWhole(b, lab.engine)).toBe(true);
    // A writer of generation 8 caught after its first chunk, over generation 7.
    mixed.set(a);
    mixed.set(b.subarray(0, 4 * KiB));
    expect(isWhole(mixed, lab.engine)).toBe(false);
    // The other way round: the header of 7, a payload chunk of 8 in the middle.
    mixed.set(a);
    mixed.set(b.subarray(8 * KiB, 12 * KiB), 8 * KiB);
    expect(isWhole(mixed, lab.engine)).toBe(false);
    // A header torn within itself (generation 7's words, generation 8's checksum).
    mixed.set(a);
    mixed.set(b.subarray(8, HEADER_BYTES), 8);
    expect(isWhole(mixed, lab.engine)).toBe(false);
    // Fills: whole when uniform, torn when a stamp went half over one.
    mixed.fill(0x5a);
    expect(headerOf(mixed)).toEqual({ kind: "fill", value: 0x5a });
    expect(isWhole(mixed, lab.engine)).toBe(true);
    mixed.set(a.subarray(HEADER_BYTES, 2 * KiB), HEADER_BYTES);
    expect(isWhole(mixed, lab.engine)).toBe(false);
    mixed.fill(0x5a);
    mixed.set(a.subarray(0, 2 * KiB));
    expect(isWhole(mixed, lab.engine)).toBe(false);
  });
});

describe("runContend", () => {
  const small: ContendOptions = { writers: 2, readers: 2, devices: 1, buffers: 3, size: 16 * KiB };

  test("with fences: no torn read, every role moved data", async () => {
    const r = await runContend({ ...small, durationMs: 300 });
    expect(r.roles.map((x) => x.role)).toEqual(["writer", "reader", "device:copy", "device:checksum", "device:fill"]);
    for (const x of r.roles) {
      expect(x.ops, x.role).toBeGreaterThan(0);
      expect(x.bytes, x.role).toBe(x.ops * 16 * KiB);
      expect(x.opsPerSec, x.role).toBeGreaterThan(0);
      expect(x.bytesPerSec, x.role).toBeGreaterThan(0);
    }
    expect(r.checkedReads).toBe(role(r, "reader").ops + role(r, "device:checksum").ops);
    expect(r.tornReads).toBe(0);
    // Every device job's fence was waited for; the resv locks were taken.
    for (const kind of ["copy", "checksum", "fill"]) expect(role(r, `device:${kind}`).waits.samples).toBe(role(r, `device:${kind}`).ops);
    expect(r.locks.acquisitions).toBeGreaterThan(0);
  });

  test.each(["atomics", "spin", "postMessage"] as const)("%s waits, iterations: exact counts, no torn read", async (wait) => {
    const r = await runContend({ ...small, wait, iterations: 30 });
    expect(role(r, "writer").ops).toBe(60);
    expect(role(r, "reader").ops).toBe(60);
    expect(role(r, "device:copy").ops + role(r, "device:checksum").ops + role(r, "device:fill").ops).toBe(30);
    expect(r.tornReads).toBe(0);
    const w = role(r, "writer").waits;
    if (w.samples > 0) expect(w.p50Ns <= w.p90Ns && w.p90Ns <= w.p99Ns && w.p99Ns <= w.maxNs).toBe(true);
  });

  test("a non-coherent lab on the uncached and cma heaps keeps every read whole", async () => {
    for (const heap of ["system", "system-uncached", "cma"] as const) {
      const r = await runContend({ ...small, heap, coherent: false, iterations: 20 });
      expect(r.tornReads, heap).toBe(0);
      expect(r.checkedReads, heap).toBeGreaterThan(0);
    }
  });

  test("--bypass-fences: readers see writers mid-write, and the tears are counted", async () => {
    // One writer in 64 chunks with a pause between them, two readers copying
    // the mapping as fast as they can: the buffer is between generations
    // almost all the time the writer runs.
    const r = await runContend({ writers: 1, readers: 2, devices: 1, buffers: 1, size: 64 * KiB, chunks: 64, durationMs: 500, bypassFences: true });
    expect(r.options.bypassFences).toBe(true);
    expect(r.tornReads).toBeGreaterThan(0);
    expect(r.tornReads).toBeLessThanOrEqual(r.checkedReads);
    // Nobody waited for a fence on the CPU side.
    expect(role(r, "writer").waits.samples + role(r, "reader").waits.samples).toBe(0);
  });

  test("--sharing 0: every thread and device works on buffers of its own, whole, and the shared buffers' locks are taken by no operation", async () => {
    const r = await runContend({ ...small, sharing: 0, iterations: 30 });
    expect(r.options.sharing).toBe(0);
    expect(role(r, "writer").ops).toBe(60);
    expect(role(r, "reader").ops).toBe(60);
    expect(r.tornReads).toBe(0);
    expect(r.checkedReads).toBeGreaterThan(0);
    // Only the device's attach and detach of each shared buffer took its lock.
    expect(r.locks.acquisitions).toBe(2 * small.devices! * small.buffers!);
  });

  test("--sharing 0.5 still keeps every read whole, with the shared buffers' locks taken", async () => {
    const r = await runContend({ ...small, sharing: 0.5, iterations: 30 });
    expect(r.tornReads).toBe(0);
    expect(r.locks.acquisitions).toBeGreaterThan(0);
  });

  test("--submitters own: each device is driven by a thread of its own (a DeviceHandle): exact counts, no torn read, no race", async () => {
    const r = await runContend({ ...small, devices: 2, submitters: "own", iterations: 12, sanitize: true });
    expect(r.options.submitters).toBe("own");
    expect(role(r, "writer").ops).toBe(24);
    expect(role(r, "reader").ops).toBe(24);
    // Each device's submitter did its 12 jobs of the mix, every fence waited for.
    const jobs = ["copy", "checksum", "fill"].map((k) => role(r, `device:${k}`));
    expect(jobs.reduce((a, j) => a + j.ops, 0)).toBe(24);
    for (const j of jobs) expect(j.waits.samples, j.role).toBe(j.ops);
    expect(r.tornReads).toBe(0);
    expect(r.sanitize?.raceCount).toBe(0);
    // With iterations and no host-driven device the run ends by the threads' answers.
    const d = await runContend({ writers: 0, readers: 0, devices: 1, buffers: 2, size: 16 * KiB, submitters: "own", iterations: 3 });
    expect(d.roles.reduce((a, x) => a + x.ops, 0)).toBe(3);
  });

  test("sharedAt: exactly floor(k x sharing) of the first k operations are shared, spread evenly", () => {
    for (const s of [0, 0.1, 0.25, 0.5, 1 / 3, 0.9, 1]) {
      let shared = 0;
      for (let k = 0; k < 1000; k++) {
        expect(shared, `sharing ${s}, k ${k}`).toBe(Math.floor(k * s));
        if (sharedAt(s, k)) shared++;
      }
    }
  });

  test("a run that fails after its set-up ends every thread it started", async () => {
    // Linux: the process's threads in /proc, right after the run rejected
    // (a worker left running would still be there: its thread ends only when
    // terminated or, later, by itself).
    const tasks = () => readdirSync("/proc/self/task").length;
    const before = tasks();
    const boom = new Error("stopped by the test");
    await expect(runContend({ ...small, durationMs: 60_000 }, (m) => {
      if (m.startsWith("running")) throw boom;
    })).rejects.toBe(boom);
    expect(tasks()).toBeLessThanOrEqual(before);
  });

  test("bad options are EINVAL naming the value, before anything starts", async () => {
    expect(expectErrno(() => resolveOptions({ writers: -1 }), "EINVAL").message).toContain("-1");
    expect(expectErrno(() => resolveOptions({ sharing: 1.5 }), "EINVAL").message).toContain("1.5");
    expect(expectErrno(() => resolveOptions({ sharing: NaN }), "EINVAL").message).toContain("NaN");
    expect(expectErrno(() => resolveOptions({ size: 1000 }), "EINVAL").message).toContain("1000");
    expect(expectErrno(() => resolveOptions({ size: 6 * KiB }), "EINVAL").message).toContain("4 KiB");
    expect(expectErrno(() => resolveOptions({ jobs: ["blit" as "copy"] }), "EINVAL").message).toContain("'blit'");
    expect(expectErrno(() => resolveOptions({ wait: "sleep" as "spin" }), "EINVAL").message).toContain("'sleep'");
    expect(expectErrno(() => resolveOptions({ submitters: "gpu" as "own" }), "EINVAL").message).toContain("'gpu'");
    expect(expectErrno(() => resolveOptions({ durationMs: 10, iterations: 10 }), "EINVAL").message).toContain("choose one");
    expect(expectErrno(() => resolveOptions({ writers: 0, readers: 0, devices: 0 }), "EINVAL").message).toContain("nothing to run");
    await expectErrnoAsync(() => runContend({ heap: "vram" as "cma" }), "EINVAL");
  });
});

describe("dmabuf-lab contend", () => {
  test("prints a table on stdout and progress on stderr", async () => {
    const { code, stdout, stderr } = await run(["contend", "--iterations", "20", "--size", "16K"]);
    expect(code).toBe(0);
    for (const r of ["writer", "reader", "device:copy", "device:checksum", "device:fill"]) expect(stdout).toMatch(new RegExp(`^${r}\\s+\\d`, "m"));
    expect(stdout).toMatch(/^resv locks \(4 buffers\): \d+ acquisitions/m);
    expect(stdout).toMatch(/^integrity: 0 torn of \d+ checked reads/m);
    expect(stdout).not.toContain("contend [");
    expect(stderr).toContain("contend [");
  });

  test("--json is one object with tornReads; --chart writes the latency chart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "contend-"));
    try {
      const chart = join(dir, "waits.svg");
      const { code, stdout } = await run(["contend", "--duration", "300ms", "--size", "16K", "--wait", "postMessage", "--sharing", "0.5",
        "--json", "--chart", chart]);
      expect(code).toBe(0);
      const result = JSON.parse(stdout);
      expect(result.tornReads).toBe(0);
      expect(result.options).toMatchObject({ wait: "postMessage", size: 16 * KiB, bypassFences: false, sharing: 0.5 });
      expect(result.roles.map((r: { role: string }) => r.role)).toContain("reader");
      const svg = readFileSync(chart, "utf8");
      expect(svg).toMatch(/^<svg /);
      expect(svg).toContain("<polyline");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--trace writes a sound Perfetto file of every thread and device; the result's JSON leaves it out", async () => {
    const dir = mkdtempSync(join(tmpdir(), "contend-"));
    try {
      const file = join(dir, "run.json");
      const { code, stdout, stderr } = await run(["contend", "--iterations", "10", "--size", "16K", "--json", "--trace", file]);
      expect(code).toBe(0);
      expect(JSON.parse(stdout).trace).toBeUndefined();
      expect(stderr).toMatch(/contend: wrote .*run\.json: \d+ events from \d+ threads/);
      const trace = JSON.parse(readFileSync(file, "utf8"));
      expect(checkChromeTrace(trace).problems).toEqual([]);
      const tracks = trace.traceEvents.filter((e: { ph: string; name: string }) => e.ph === "M" && e.name === "thread_name")
        .map((e: { args: { name: string } }) => e.args.name);
      expect(tracks).toEqual(expect.arrayContaining(["main", "writer 0", "writer 1", "reader 0", "reader 1", "device contend-0"]));
      const names = new Set(trace.traceEvents.map((e: { name: string }) => e.name));
      for (const n of ["pwritev", "preadv", "validate", "copy"]) expect(names.has(n)).toBe(true);
      expect(trace.traceEvents.some((e: { ph: string; name: string }) => e.ph === "C" && e.name === "ring depth contend-0")).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    [["--writers", "abc"], "'abc'"],
    [["--jobs", "copy,blit"], "'blit'"],
    [["--size", "1000"], "1000"],
    [["--duration", "soon"], "'soon'"],
    [["--coherence", "sometimes"], "'sometimes'"],
    [["--sharing", "2"], "'2'"],
    [["--sharing", "half"], "'half'"],
    [["--chart", "waits.png"], "waits.png"],
    [["--trace", "trace.txt"], "trace.txt"],
    [["--no-such-flag"], "--no-such-flag"],
  ])("%j is a usage error (exit 2) naming the value", async (args, named) => {
    const { code, stdout, stderr } = await run(["contend", ...args]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(named);
    expect(stderr).toContain("usage: dmabuf-lab contend");
  });
});

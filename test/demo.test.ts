/*
 * The demo (issue 5, section 6): the frame format's integrity check on its
 * own, then the camera -> gpu -> display pipeline on real device workers,
 * and `dmabuf-lab demo` as a subprocess of the built CLI.
 */
import { afterEach, describe, expect, test } from "vitest";
import { INVERT_MASK, frameBytes, inspectFrame, invertFrame, renderFrame } from "../src/demo/frame.js";
import { checkPipelineOptions, type FrameReport } from "../src/demo/options.js";
import { runPipeline } from "../src/demo/pipeline.js";
import { LabSet } from "./helpers/lab.js";
import { dmaBufError } from "./helpers/errors.js";
import { runCli } from "./helpers/cli.js";
import { checkChromeTrace } from "../src/trace/validate.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const W = 64;
const H = 48;
const labs = new LabSet({ memoryBytes: 64 << 20, poolBytes: 16 << 20 });
afterEach(() => labs.closeAll());

/** A frame's bytes split into views the way a kernel sees runs: 4 KiB pieces of a shared buffer. */
function runsOf(bytes: Uint8Array, piece = 4096): Uint8Array[] {
  const views: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += piece) views.push(bytes.subarray(at, Math.min(at + piece, bytes.length)));
  return views;
}

const frame = () => new Uint8Array(Math.ceil(frameBytes(W, H) / 4096) * 4096);

describe("the frame format", () => {
  test("a rendered frame is whole; inverted by the gpu it stays whole, with the gpu's mask", () => {
    const cam = frame();
    renderFrame(runsOf(cam), 7, W, H);
    expect(inspectFrame([cam], W, H)).toEqual({ frame: 7, mask: 0, whole: true });
    const out = frame();
    // Different run boundaries on the two sides, as two scattered dma-bufs have.
    invertFrame(runsOf(cam), runsOf(out, 8192), W, H);
    expect(inspectFrame(runsOf(out, 4096), W, H)).toEqual({ frame: 7, mask: INVERT_MASK, whole: true });
    expect(out[64]).toBe(255 - cam[64]);
    expect(out[67]).toBe(cam[67]);
  });

  test("a torn frame (the header and first half of frame k, the rest of frame k+4) is not whole", () => {
    const a = frame();
    const b = frame();
    renderFrame([a], 3, W, H);
    renderFrame([b], 7, W, H);
    const torn = a.slice();
    torn.set(b.subarray(a.length / 2), a.length / 2);
    expect(inspectFrame([torn], W, H)).toMatchObject({ frame: 3, whole: false });
    const flipped = a.slice();
    flipped[frameBytes(W, H) - 1] ^= 1;
    expect(inspectFrame([flipped], W, H).whole).toBe(false);
  });

  test("a view list too short for the frame is EINVAL naming the sizes", () => {
    const e = dmaBufError(() => inspectFrame([new Uint8Array(128)], W, H));
    expect(e.code).toBe("EINVAL");
    expect(e.message).toContain(`${frameBytes(W, H)} bytes`);
  });
});

describe("the pipeline", () => {
  test("frames flow camera -> gpu -> display, none torn, and every device is shut down after", async () => {
    const lab = await labs.create();
    const free = lab.stats().pages.freeBytes;
    const retired: FrameReport[] = [];
    const reads: { ok: boolean; bytes: number }[] = [];
    const r = await runPipeline(lab, {
      frames: 24, buffers: 3, width: W, height: H, onFrame: (f) => retired.push(f),
      onRead: (x) => reads.push({ ok: x.ok, bytes: x.pixels.length }),
    });
    expect(r.integrity).toMatchObject({ displayed: 24, displayTorn: 0, displayWrong: 0, cpuTorn: 0, cpuWrong: 0, ok: true });
    expect(r.integrity.cpuReads).toBeGreaterThan(0);
    expect(r.fps).toBeGreaterThan(0);
    expect(r).toMatchObject({ frames: 24, bypassFences: false, coherent: true });
    expect(retired).toEqual(r.timings);
    // The reader's pixels: W x H RGBA.
    expect(reads.length).toBe(r.integrity.cpuReads);
    for (const x of reads) expect(x).toMatchObject({ ok: true, bytes: W * H * 4 });
    // Each frame went through the stages in order, on the lab clock, each stage starting after its inputs.
    expect(r.timings.map((t) => [t.frame, t.slot, t.seen, t.whole, t.ok])).toEqual(
      Array.from({ length: 24 }, (_, i) => [i, i % 3, i, true, true]));
    for (const t of r.timings) {
      expect(t.cameraNs).toBeGreaterThan(t.submitNs);
      expect(t.gpuNs).toBeGreaterThanOrEqual(t.cameraNs);
      expect(t.displayNs).toBeGreaterThanOrEqual(t.gpuNs);
      expect(t.cameraStartNs).toBeGreaterThanOrEqual(t.submitNs);
      expect(t.cameraStartNs).toBeLessThanOrEqual(t.cameraNs);
      expect(t.gpuStartNs).toBe(Math.max(t.cameraNs, t.gpuStartNs));
      expect(t.gpuStartNs).toBeLessThanOrEqual(t.gpuNs);
      expect(t.displayStartNs).toBe(Math.max(t.gpuNs, t.displayStartNs));
      expect(t.displayStartNs).toBeLessThanOrEqual(t.displayNs);
    }
    expect(r.devices.map((d) => d.name)).toEqual(["camera", "gpu", "display"]);
    for (const d of r.devices) expect(d).toMatchObject({ state: "dead", error: 0, jobsDone: 24, jobsFailed: 0, faults: 0 });
    // Every frame buffer was released: the devices detached, the fds closed.
    expect(lab.stats().pages.freeBytes).toBe(free);
  });

  test("with bypassed fences the stages overlap and torn frames are seen and counted; the run stays bounded", async () => {
    // 320x240 frames: a stage's job lasts long enough that the gpu and the
    // display, started together, overlap (5-20% of frames tear on 2 cores).
    const lab = await labs.create({ coherent: false, sanitize: true });
    const r = await runPipeline(lab, { frames: 200, buffers: 2, bypassFences: true });
    const i = r.integrity;
    // The race detector names the unordered stages (src/sanitize), torn or not.
    expect(lab.sanitizer.report().raceCount).toBeGreaterThan(0);
    expect(r).toMatchObject({ frames: 200, bypassFences: true, coherent: false });
    expect(i.displayed).toBe(200);
    expect(i.displayTorn).toBeGreaterThan(0);
    expect(i.ok).toBe(false);
    // The counters are the verdicts reported, frame by frame.
    expect(r.timings.filter((t) => !t.whole).length).toBe(i.displayTorn);
    expect(r.timings.filter((t) => t.whole && !t.ok).length).toBe(i.displayWrong);
    // No job waited for another: each stage could start at its submission or its device's previous job.
    for (const t of r.timings) expect(t.gpuStartNs).toBeLessThanOrEqual(t.gpuNs);
    for (const d of r.devices) expect(d).toMatchObject({ state: "dead", error: 0, jobsDone: 200, jobsFailed: 0 });
  });

  test("an aborted signal ends the run after the frames in flight, every device shut down", async () => {
    const lab = await labs.create();
    const stop = new AbortController();
    const r = await runPipeline(lab, {
      frames: 1_000_000, buffers: 2, width: W, height: H, keepTimings: false,
      onFrame: (f) => { if (f.frame === 9) stop.abort(); }, signal: stop.signal,
    });
    // Frame 9 retired while frame 10 was in flight; 11 was never submitted.
    expect(r.frames).toBe(11);
    expect(r.integrity).toMatchObject({ displayed: 11, ok: true });
    expect(r.timings).toEqual([]);
    for (const d of r.devices) expect(d).toMatchObject({ state: "dead", error: 0, jobsDone: 11 });
  });

  test("bad options are EINVAL naming the value, before anything is made", async () => {
    for (const [o, text] of [
      [{ frames: 0 }, "frames 0"], [{ buffers: 2.5 }, "buffers 2.5"], [{ width: -1 }, "width -1"],
      [{ readIntervalMs: -5 }, "readIntervalMs -5"], [{ bypassFences: "yes" as unknown as boolean }, "bypassFences yes"],
    ] as const) {
      expect(dmaBufError(() => checkPipelineOptions(o)).message).toContain(text);
    }
    const lab = await labs.create();
    await expect(runPipeline(lab, { buffers: 0 })).rejects.toMatchObject({ code: "EINVAL" });
  });
});

describe("dmabuf-lab demo", () => {
  test("--json: the frames all displayed whole, progress on stderr only", async () => {
    const { code, stdout, stderr } = await runCli(["demo", "--frames", "30", "--buffers", "3", "--json"]);
    expect(code).toBe(0);
    const r = JSON.parse(stdout);
    expect(r.integrity).toMatchObject({ displayed: 30, displayTorn: 0, cpuTorn: 0, ok: true });
    expect(r.fps).toBeGreaterThan(0);
    expect(r.latency.endToEnd.p50Ns).toBeGreaterThan(0);
    expect(stderr).toContain("demo: ");
  });

  test("the table names the stages and the verdict", async () => {
    const { code, stdout } = await runCli(["demo", "--frames", "20"]);
    expect(code).toBe(0);
    for (const s of ["camera", "gpu", "display", "end-to-end", "fps"]) expect(stdout).toContain(s);
    expect(stdout).toMatch(/integrity: OK/);
  });

  test("--trace writes the run as a sound Perfetto file: a track per device, each frame's jobs on them, flows between them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "demo-"));
    try {
      const file = join(dir, "demo.json");
      const { code, stderr } = await runCli(["demo", "--frames", "12", "--trace", file]);
      expect(code).toBe(0);
      expect(stderr).toMatch(/demo: wrote .*demo\.json/);
      const trace = JSON.parse(readFileSync(file, "utf8"));
      expect(checkChromeTrace(trace).problems).toEqual([]);
      const tid = (name: string) => trace.traceEvents.find((e: { ph: string; name: string; args: { name: string } }) =>
        e.ph === "M" && e.name === "thread_name" && e.args.name === name)?.tid;
      for (const d of ["camera", "gpu", "display"]) {
        const jobs = trace.traceEvents.filter((e: { ph: string; tid: number; name: string }) => e.ph === "B" && e.tid === tid(`device ${d}`) && /^kernel #\d+$/.test(e.name));
        expect(jobs.length, d).toBe(12);
      }
      // The gpu waits for the camera: some flow runs from the camera's track to the gpu's.
      const from = new Set(trace.traceEvents.filter((e: { ph: string; tid: number }) => e.ph === "s" && e.tid === tid("device camera")).map((e: { id: number }) => e.id));
      expect(trace.traceEvents.some((e: { ph: string; tid: number; id: number }) => e.ph === "f" && e.tid === tid("device gpu") && from.has(e.id))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a bad --frames is a usage error (exit 2) naming the value", async () => {
    const { code, stderr, stdout } = await runCli(["demo", "--frames", "lots"]);
    expect(code).toBe(2);
    expect(stderr).toContain("--frames 'lots' is not a whole number");
    expect(stdout).toBe("");
  });
});

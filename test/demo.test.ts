/*
 * The demo (issue 5, section 6): the frame format's integrity check on its
 * own, then the camera -> gpu -> display pipeline on real device workers,
 * and `dmabuf-lab demo` as a subprocess of the built CLI.
 */
import { afterEach, describe, expect, test } from "vitest";
import { INVERT_MASK, frameBytes, inspectFrame, invertFrame, renderFrame } from "../src/demo/frame.js";
import { checkPipelineOptions, runPipeline } from "../src/demo/pipeline.js";
import { LabSet } from "./helpers/lab.js";
import { dmaBufError } from "./helpers/errors.js";
import { runCli } from "./helpers/cli.js";

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
    const retired: number[] = [];
    const r = await runPipeline(lab, { frames: 24, buffers: 3, width: W, height: H, onFrame: (n) => retired.push(n) });
    expect(r.integrity).toMatchObject({ displayed: 24, displayTorn: 0, cpuTorn: 0, ok: true });
    expect(r.integrity.cpuReads).toBeGreaterThan(0);
    expect(r.fps).toBeGreaterThan(0);
    expect(retired).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    // Each frame went through the stages in order, on the lab clock.
    expect(r.timings.map((t) => t.frame)).toEqual(Array.from({ length: 24 }, (_, i) => i));
    for (const t of r.timings) {
      expect(t.cameraNs).toBeGreaterThan(t.submitNs);
      expect(t.gpuNs).toBeGreaterThanOrEqual(t.cameraNs);
      expect(t.displayNs).toBeGreaterThanOrEqual(t.gpuNs);
    }
    expect(r.devices.map((d) => d.name)).toEqual(["camera", "gpu", "display"]);
    for (const d of r.devices) expect(d).toMatchObject({ state: "dead", error: 0, jobsDone: 24, jobsFailed: 0, faults: 0 });
    // Every frame buffer was released: the devices detached, the fds closed.
    expect(lab.stats().pages.freeBytes).toBe(free);
  });

  test("bad options are EINVAL naming the value, before anything is made", async () => {
    for (const [o, text] of [[{ frames: 0 }, "frames 0"], [{ buffers: 2.5 }, "buffers 2.5"], [{ width: -1 }, "width -1"]] as const) {
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

  test("a bad --frames is a usage error (exit 2) naming the value", async () => {
    const { code, stderr, stdout } = await runCli(["demo", "--frames", "lots"]);
    expect(code).toBe(2);
    expect(stderr).toContain("frames lots");
    expect(stdout).toBe("");
  });
});

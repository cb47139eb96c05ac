/*
 * `dmabuf-lab demo [--frames N] [--buffers N] [--json]` (what `npm start`
 * runs): the camera -> gpu -> display pipeline (src/demo/pipeline.ts) on a
 * fresh lab. Prints fps, each stage's and the end-to-end latency (p50, p90,
 * p99, max; from the fences' timestamps) and the integrity verdict, or the
 * same as JSON; progress on stderr. Exit 0 when every frame was whole, 1
 * when a frame was torn or the run failed, 2 on bad options.
 */
import type { Command } from "../command.js";
import { integer, parseOptions } from "../options.js";
import { Lab } from "../../api/lab.js";
import { checkPipelineOptions, type FrameReport } from "../../demo/options.js";
import { runPipeline, type PipelineResult } from "../../demo/pipeline.js";
import { durationLabel, formatBytes, roundedJson, summarize, table } from "../../report.js";
import { traceOption, traceUsage, writeTrace } from "../trace.js";
import { renderRaceReport } from "../../sanitize/text.js";

const usage = `usage: dmabuf-lab demo [--frames N] [--buffers N] [--json] [--trace FILE.json] [--sanitize]

A camera -> gpu -> display pipeline: three devices (worker threads) over rings
of 320x240 RGBA dma-bufs, ordered only by implicit fences. The camera kernel
renders frame k, the gpu kernel inverts it into an output frame, the display
kernel checks that each output frame is whole and is frame k; a CPU reader
read()s the latest frame meanwhile and checks it too.

  --frames N    frames to run (default 240)
  --buffers N   frame buffers per ring, the frames in flight (default 4)
  --json        print the result as JSON (without the per-frame timings)
  --sanitize    run the race detector: every access of every frame is checked
                for an ordering by fences (exit 1 if a race is found)
${traceUsage}
`;

/** Per-frame latencies (ns) of each stage and end to end. */
const latencyOf = {
  camera: (t: FrameReport) => t.cameraNs - t.submitNs,
  gpu: (t: FrameReport) => t.gpuNs - t.cameraNs,
  display: (t: FrameReport) => t.displayNs - t.gpuNs,
  endToEnd: (t: FrameReport) => t.displayNs - t.submitNs,
};

function summary(r: PipelineResult) {
  const { timings, ...rest } = r;
  const latency = Object.fromEntries(Object.entries(latencyOf).map(([k, f]) => [k, summarize(timings.map(f))]));
  return { ...rest, durationMs: r.durationNs / 1e6, latency };
}

function render(r: PipelineResult): string {
  const s = summary(r);
  const i = r.integrity;
  const labels: Record<keyof typeof latencyOf, string> = {
    camera: "camera   (submit -> camera fence)",
    gpu: "gpu      (camera fence -> gpu fence)",
    display: "display  (gpu fence -> display fence)",
    endToEnd: "end-to-end (submit -> display fence)",
  };
  const rows = (Object.keys(labels) as (keyof typeof latencyOf)[]).map((k) => {
    const st = s.latency[k];
    return [labels[k], ...[st.p50Ns, st.p90Ns, st.p99Ns, st.maxNs].map(durationLabel)];
  });
  return [
    `dmabuf-lab demo: camera -> gpu -> display over ${r.buffers} frame buffers per ring, ` +
      `${r.width}x${r.height} RGBA (${formatBytes(r.frameBytes)} a frame, system heap)`,
    "",
    `${r.frames} frames in ${(r.durationNs / 1e9).toFixed(2)} s: ${r.fps.toFixed(0)} fps`,
    "",
    table(["latency per frame", "p50", "p90", "p99", "max"], rows),
    "",
    `display: ${i.displayed} frames checked, ${i.displayTorn} torn, ${i.displayWrong} not the frame expected`,
    `CPU reader: ${i.cpuReads} read() calls of the latest frame, ${i.cpuTorn} torn, ${i.cpuWrong} not the frame expected ` +
      `(${i.cpuWaited} issued while the gpu was still writing it: implicit sync made them wait)`,
    `devices: ${r.devices.map((d) => `${d.name} ${d.jobsDone} jobs, ${d.jobsFailed} failed, busy ${d.busyMs.toFixed(0)} ms`).join("; ")}`,
    "",
    `integrity: ${i.ok ? "OK, no torn frame" : "FAILED"}`,
  ].join("\n") + "\n";
}

export const demo: Command = {
  name: "demo",
  summary: "the camera -> gpu -> display pipeline of three devices over implicit fences (what `npm start` runs)",
  usage,
  async run(argv, io) {
    const values = parseOptions(argv, {
      frames: { type: "string" }, buffers: { type: "string" }, json: { type: "boolean" }, trace: { type: "string" }, sanitize: { type: "boolean" },
    });
    const tracePath = traceOption(values.trace as string | undefined);
    const options = checkPipelineOptions({
      frames: integer("frames", values.frames as string | undefined, 1, 1_000_000),
      buffers: integer("buffers", values.buffers as string | undefined, 1, 64),
    });
    io.stderr("demo: creating the lab, starting the camera, gpu and display devices\n");
    const lab = await Lab.create({ sanitize: values.sanitize === true });
    try {
      if (tracePath !== undefined) lab.trace.start();
      const every = Math.max(1, Math.ceil(options.frames / 4));
      const result = await runPipeline(lab, {
        ...options,
        onFrame: ({ frame }, total) => {
          if ((frame + 1) % every === 0 || frame + 1 === total) io.stderr(`demo: ${frame + 1}/${total} frames displayed\n`);
        },
      });
      const races = lab.sanitizer.enabled ? lab.sanitizer.report() : undefined;
      io.stdout(values.json ? roundedJson({ ...summary(result), ...(races ? { sanitize: races } : {}) })
        : render(result) + (races ? renderRaceReport(races).join("\n") + "\n" : ""));
      const traced = tracePath === undefined || writeTrace(io, "demo", tracePath, lab.trace.stop());
      return result.integrity.ok && traced && (races?.raceCount ?? 0) === 0 ? 0 : 1;
    } finally {
      lab.close();
    }
  },
};

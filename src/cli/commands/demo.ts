/*
 * `dmabuf-lab demo [--frames N] [--buffers N] [--json]` (what `npm start`
 * runs): the camera -> gpu -> display pipeline (src/demo/pipeline.ts) on a
 * fresh lab. Prints fps, each stage's and the end-to-end latency (p50, p90,
 * p99, max; from the fences' timestamps) and the integrity verdict, or the
 * same as JSON; progress on stderr. Exit 0 when every frame was whole, 1
 * when a frame was torn or the run failed, 2 on bad options.
 *
 * `dmabuf-lab demo io` (src/demo/io.ts): a file streamed by a storage
 * device into a ring of dma-bufs, each block summed by a gpu device, ordered
 * by fences; the same kinds of figures, exit 1 when a block's sum differs
 * from the file's.
 */
import type { Command } from "../command.js";
import { byteSize, integer, parseOptions } from "../options.js";
import { checkIoDemoOptions, runIoDemo, type IoDemoResult } from "../../demo/io.js";
import { DmaBufError } from "../../errno.js";
import { UsageError } from "../options.js";
import { Lab } from "../../api/lab.js";
import { checkPipelineOptions, type FrameReport } from "../../demo/options.js";
import { runPipeline, type PipelineResult } from "../../demo/pipeline.js";
import { durationLabel, formatBytes, roundedJson, summarize, table } from "../../report.js";
import { traceOption, traceUsage, writeTrace } from "../trace.js";
import { renderRaceReport } from "../../sanitize/text.js";

const usage = `usage: dmabuf-lab demo [--frames N] [--buffers N] [--json] [--trace FILE.json] [--sanitize]
       dmabuf-lab demo io [--size BYTES] [--block BYTES] [--buffers N] [--file PATH] [--json] [--trace FILE.json] [--sanitize]

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

demo io: a file streamed into dma-bufs by a storage device and summed by a
gpu device (see 'dmabuf-lab demo io --help').
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

const ioUsage = `usage: dmabuf-lab demo io [--size BYTES] [--block BYTES] [--buffers N] [--file PATH] [--json] [--trace FILE.json] [--sanitize]

A file streamed into a ring of dma-bufs by a storage device and consumed by a
gpu device, ordered by fences. The storage device (a worker whose DMA reads
the file straight into the dma-bufs' pages through its IOMMU) serves
io_uring READ_FIXED reads into dma-bufs registered as fixed buffers (the
io_uring dma-buf series' registration); when a read's completion is seen the
gpu sums the block (xxHash32) into a result buffer; a slot is read into again
only after the gpu's fence for its previous block signalled. Every block's
sum is checked against the file's.

  --size BYTES    bytes to stream, whole blocks (default 8M; with --file:
                  the file's whole blocks)
  --block BYTES   bytes per read and per dma-buf, a multiple of 4K (default 64K)
  --buffers N     dma-bufs in the ring: reads and gpu jobs in flight (default 4)
  --file PATH     stream this file (read only) instead of a temporary one
                  filled with a pattern
  --json          print the result as JSON
  --sanitize      run the race detector over the storage DMA, the gpu jobs
                  and the CPU's reads (exit 1 if a race is found)
${traceUsage}
`;

function renderIo(r: IoDemoResult): string {
  const rows = ([["read       (submit -> completion seen)", r.read], ["gpu sum    (submit -> fence signalled)", r.gpu],
    ["end to end (read submitted -> sum checked)", r.endToEnd]] as const).map(([label, st]) =>
    [label, ...[st.p50Ns, st.p90Ns, st.p99Ns, st.maxNs].map(durationLabel)]);
  return [
    `dmabuf-lab demo io: ${r.file} of ${formatBytes(r.bytes)} -> ${r.buffers} dma-bufs of ${formatBytes(r.blockBytes)} ` +
      "(io_uring READ_FIXED, registered) -> gpu checksum",
    "",
    `${r.blocks} blocks in ${(r.elapsedMs / 1000).toFixed(2)} s: ${r.mbPerSec.toFixed(1)} MB/s`,
    "",
    table(["latency per block", "p50", "p90", "p99", "max"], rows),
    "",
    `devices: ${r.devices.map((d) => `${d.name} ${d.jobsDone} jobs, ${d.jobsFailed} failed`).join("; ")}`,
    "",
    `integrity: ${r.ok ? `OK, ${r.checked} blocks checked against the file` : `FAILED: ${r.mismatched.length} of ${r.checked} blocks differ (first: ${r.mismatched.slice(0, 8).join(", ")})`}`,
  ].join("\n") + "\n";
}

const demoIo: Command = {
  name: "demo io",
  summary: "a file streamed into dma-bufs by a storage device and summed by a gpu device, ordered by fences",
  usage: ioUsage,
  async run(argv, io) {
    const values = parseOptions(argv, {
      size: { type: "string" }, block: { type: "string" }, buffers: { type: "string" }, file: { type: "string" },
      json: { type: "boolean" }, trace: { type: "string" }, sanitize: { type: "boolean" },
    });
    const tracePath = traceOption(values.trace as string | undefined);
    const options = {
      sizeBytes: byteSize("size", values.size as string | undefined, 4096, 1024 * 1024 * 1024),
      blockBytes: byteSize("block", values.block as string | undefined, 4096, 16 * 1024 * 1024),
      buffers: integer("buffers", values.buffers as string | undefined, 1, 64),
      file: values.file as string | undefined,
    };
    let o;
    try {
      o = checkIoDemoOptions(options);
    } catch (e) {
      // Every option error, the file's included (missing, not a regular file, too short), is a usage error: nothing has started.
      if (e instanceof DmaBufError) throw new UsageError(e.message.replace(/^[A-Z]+: demo_io: /, ""));
      throw e;
    }
    const ring = o.buffers * o.blockBytes;
    const poolBytes = Math.max(32, Math.ceil((2 * ring) / (1 << 20)) + 16) * (1 << 20);
    const memoryBytes = 2 * poolBytes + Math.ceil((2 * o.blockBytes) / (1 << 20)) * (1 << 20) + (64 << 20);
    const lab = await Lab.create({ memoryBytes, poolBytes, sanitize: values.sanitize === true });
    try {
      if (tracePath !== undefined) lab.trace.start();
      const result = await runIoDemo(lab, options, (text) => io.stderr(`demo io: ${text}\n`));
      const races = lab.sanitizer.enabled ? lab.sanitizer.report() : undefined;
      io.stdout(values.json ? roundedJson({ ...result, ...(races ? { sanitize: races } : {}) })
        : renderIo(result) + (races ? renderRaceReport(races).join("\n") + "\n" : ""));
      const traced = tracePath === undefined || writeTrace(io, "demo io", tracePath, lab.trace.stop());
      return result.ok && traced && (races?.raceCount ?? 0) === 0 ? 0 : 1;
    } finally {
      lab.close();
    }
  },
};

demo.subcommands = [demoIo];

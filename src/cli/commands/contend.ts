/*
 * `dmabuf-lab contend`: the multithreaded contention experiment
 * (src/contend/). Parses and checks the flags (a bad value is a usage
 * error, exit 2, naming it), runs it with progress on stderr, prints the
 * table or --json on stdout and writes --chart when asked. Exit 1 when the
 * run fails, or when it tore reads while fences were respected.
 */
import { parseArgs } from "node:util";
import { DmaBufError } from "../../errno.js";
import type { HeapName } from "../../dmabuf/heap.js";
import { defaults, resolveOptions, type ContendOptions, type JobKind, type WaitStrategy } from "../../contend/options.js";
import { runContend } from "../../contend/run.js";
import { renderContendHtml, renderContendJson, renderContendSvg, renderContendTable } from "../../contend/report.js";
import { progress, writeFile, type Command } from "../command.js";
import { traceOption, traceUsage, writeTrace } from "../trace.js";

const usage = `usage: dmabuf-lab contend [--writers N] [--readers N] [--devices N] [--buffers N] [--size BYTES]
                         [--heap HEAP] [--duration TIME | --iterations N] [--jobs LIST]
                         [--wait atomics|spin|postMessage] [--coherence coherent|non-coherent]
                         [--bypass-fences] [--chunks N] [--timeout MS] [--json] [--chart FILE]
                         [--trace FILE.json]

CPU writer and reader threads and device workers contend for a few shared
dma-bufs. Writers stamp every write with a generation and a checksum; readers
(and device checksum jobs) check that they saw one whole generation. Reports
throughput per role, fence-wait latency (p50, p90, p99, max), resv lock
contention and the integrity verdict: 0 torn reads while fences are respected;
with --bypass-fences the tears that happen are counted. Defaults run 2 seconds.

  --writers N      CPU writer threads (default ${defaults.writers})
  --readers N      CPU reader threads (default ${defaults.readers})
  --devices N      device workers (default ${defaults.devices})
  --buffers N      shared buffers (default ${defaults.buffers})
  --size BYTES     buffer size, whole 4 KiB pages: 65536, 64K, 1M (default 64K)
  --heap HEAP      system, system-uncached or cma (default ${defaults.heap})
  --duration TIME  how long to run: 2s, 500ms, or milliseconds (default 2s)
  --iterations N   instead of a duration: operations per thread and device
  --jobs LIST      the device job mix, in turn: copy, checksum, fill
                   (default ${defaults.jobs.join(",")})
  --wait HOW       how threads wait for fences: atomics (Atomics.wait), spin
                   (poll, never sleep), postMessage (the event loop: waitAsync)
  --coherence C    coherent (default) or non-coherent (a simulated CPU cache)
  --bypass-fences  skip implicit sync: CPU threads use mmap without the
                   read/write path, device jobs are submitted unfenced
  --chunks N       pieces a writer writes its payload in (default ${defaults.chunks})
  --timeout MS     the bound of every fence wait (default ${defaults.timeoutMs})
  --json           print the result as JSON (its tornReads is the verdict)
  --chart FILE     also write the fence-wait distributions: FILE.svg or FILE.html
${traceUsage}
`;

const usageError = (message: string) => new DmaBufError("EINVAL", "contend", message);

function integer(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw usageError(`--${flag} '${v}' is not a whole number`);
  return Number(v);
}

/** A size with an optional K/KiB/M/MiB suffix. */
function bytes(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)(k|kib|m|mib)?$/i.exec(v);
  if (m === null) throw usageError(`--size '${v}' is not a size (65536, 64K, 1M)`);
  return Number(m[1]) * (m[2] === undefined ? 1 : m[2].toLowerCase().startsWith("k") ? 1024 : 1024 * 1024);
}

/** Milliseconds, or a number with ms or s. */
function duration(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(v);
  if (m === null) throw usageError(`--duration '${v}' is not a duration (2s, 500ms)`);
  return Math.round(Number(m[1]) * (m[2] === "s" ? 1000 : 1));
}

function coherence(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === "coherent" || v === "non-coherent") return v === "coherent";
  throw usageError(`--coherence '${v}' is not coherent or non-coherent`);
}

function options(argv: string[]): { options: ContendOptions; json: boolean; chart: string | undefined; trace: string | undefined } {
  const { values } = parseArgs({
    args: argv,
    options: {
      writers: { type: "string" }, readers: { type: "string" }, devices: { type: "string" }, buffers: { type: "string" },
      size: { type: "string" }, heap: { type: "string" }, duration: { type: "string" }, iterations: { type: "string" },
      jobs: { type: "string" }, wait: { type: "string" }, coherence: { type: "string" }, "bypass-fences": { type: "boolean" },
      chunks: { type: "string" }, timeout: { type: "string" }, json: { type: "boolean" }, chart: { type: "string" },
      trace: { type: "string" },
    },
  });
  const chart = values.chart;
  const trace = traceOption("contend", values.trace);
  if (chart !== undefined && !/\.(svg|html)$/i.test(chart)) throw usageError(`--chart '${chart}' must name an .svg or .html file`);
  const o: ContendOptions = {
    writers: integer("writers", values.writers), readers: integer("readers", values.readers),
    devices: integer("devices", values.devices), buffers: integer("buffers", values.buffers), size: bytes(values.size),
    heap: values.heap as HeapName | undefined, durationMs: duration(values.duration),
    iterations: integer("iterations", values.iterations),
    jobs: values.jobs?.split(",").map((j) => j.trim()) as JobKind[] | undefined,
    wait: values.wait as WaitStrategy | undefined, coherent: coherence(values.coherence),
    bypassFences: values["bypass-fences"], chunks: integer("chunks", values.chunks), timeoutMs: integer("timeout", values.timeout),
    trace: trace !== undefined,
  };
  resolveOptions(o);
  return { options: o, json: values.json ?? false, chart, trace };
}

export const contend: Command = {
  name: "contend",
  summary: "the contention experiment: CPU threads and devices on shared dma-bufs, fence waits, torn reads",
  usage,
  async run(argv, io) {
    let parsed: ReturnType<typeof options>;
    try {
      parsed = options(argv);
    } catch (e) {
      if (!(e instanceof DmaBufError)) throw e;
      io.stderr(`dmabuf-lab contend: ${e.message}\n\n${usage}`);
      return 2;
    }
    const say = progress(io, "contend");
    const result = await runContend(parsed.options, say);
    io.stdout(parsed.json ? renderContendJson(result) : renderContendTable(result));
    if (parsed.chart !== undefined) {
      const html = parsed.chart.toLowerCase().endsWith(".html");
      io.stderr(`contend: wrote ${writeFile(parsed.chart, html ? renderContendHtml(result) : renderContendSvg(result))}\n`);
    }
    const traced = parsed.trace === undefined || writeTrace(io, "contend", parsed.trace, result.trace!);
    return (result.tornReads > 0 && !result.options.bypassFences) || !traced ? 1 : 0;
  },
};

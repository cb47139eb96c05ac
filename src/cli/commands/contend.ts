/*
 * `dmabuf-lab contend`: the multithreaded contention experiment
 * (src/contend/) as a Benchmark (src/cli/benchmark.ts runs it): the flags
 * are checked, limits included, before any thread starts (a bad value is a
 * usage error, exit 2, naming it). Exit 1 when the run fails, or when it
 * tore reads while fences were respected.
 */
import { DmaBufError } from "../../errno.js";
import { heapNames } from "../../dmabuf/heap.js";
import { defaults, resolveOptions, submitterModes, waitStrategies, type ContendOptions, type JobKind } from "../../contend/options.js";
import { runContend, type ContendResult } from "../../contend/run.js";
import { contendCharts, renderContendTable } from "../../contend/report.js";
import type { Command } from "../command.js";
import { benchmarkCommand } from "../benchmark.js";
import { UsageError, byteSize, duration, integer, oneOf, type OptionValues } from "../options.js";
import type { Benchmark } from "../../../bench/harness.js";
import { traceUsage } from "../trace.js";

const usage = `usage: dmabuf-lab contend [--writers N] [--readers N] [--devices N] [--buffers N] [--sharing F] [--size BYTES]
                         [--heap HEAP] [--duration TIME | --iterations N] [--jobs LIST]
                         [--wait atomics|spin|postMessage] [--coherence coherent|non-coherent]
                         [--bypass-fences] [--chunks N] [--timeout MS] [--json] [--out FILE.json]
                         [--chart FILE.svg|.html] [--trace FILE.json] [--sanitize] [--submitters host|own]

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
  --sharing F      0..1, the fraction of each thread's and device's operations
                   on the shared buffers; the rest go to buffers of its own
                   (default ${defaults.sharing}: all shared; 0: none, the lab's own cost)
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
  --submitters W   who submits the device jobs: host (default: this thread, for
                   every device in rounds) or own (a thread per device, so that
                   one thread does not cap the devices)
  --sanitize       run the race detector: every access to a buffer is checked
                   for an ordering by fences; the races found are reported
                   (exit 1 if any while fences are respected)
  --json           print the result as JSON (its tornReads is the verdict)
  --out FILE       also write the JSON result to FILE
  --chart FILE     also write the fence-wait distributions: FILE.svg or FILE.html
${traceUsage}
`;

/** --sharing: a number in 0..1. */
function fraction(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(value.trim())) throw new UsageError(`--sharing '${value}' is not a number in 0..1`);
  return Number(value);
}

/** The flags as ContendOptions; every value checked by resolveOptions() before any thread starts. */
function parse(values: OptionValues): ContendOptions {
  const v = values as Record<string, string | undefined>;
  const whole = (flag: string, max: number) => integer(flag, v[flag], 0, max);
  const jobs = v.jobs?.split(",").map((j) => j.trim());
  const o: ContendOptions = {
    writers: whole("writers", 64), readers: whole("readers", 64), devices: whole("devices", 16), buffers: integer("buffers", v.buffers, 1, 256),
    sharing: fraction(v.sharing), size: byteSize("size", v.size, 4096, 64 * 1024 * 1024), heap: oneOf("heap", v.heap, heapNames),
    durationMs: duration("duration", v.duration, 1, 3_600_000), iterations: integer("iterations", v.iterations, 1, 1e9),
    jobs: jobs as JobKind[] | undefined, wait: oneOf("wait", v.wait, waitStrategies),
    coherent: v.coherence === undefined ? undefined : oneOf("coherence", v.coherence, ["coherent", "non-coherent"]) === "coherent",
    bypassFences: values["bypass-fences"] === true, chunks: integer("chunks", v.chunks, 1, 1024),
    timeoutMs: integer("timeout", v.timeout, 1, 600_000),
    trace: v.trace !== undefined,
    sanitize: values.sanitize === true,
    submitters: oneOf("submitters", v.submitters, submitterModes),
  };
  try {
    resolveOptions(o);
  } catch (e) {
    if (e instanceof DmaBufError && e.code === "EINVAL") throw new UsageError(e.message.replace(/^EINVAL: contend: /, ""));
    throw e;
  }
  return o;
}

export const contendBenchmark: Benchmark<ContendOptions, ContendResult> = {
  name: "contend",
  summary: "the contention experiment: CPU threads and devices on shared dma-bufs, fence waits, torn reads",
  usage,
  options: {
    writers: { type: "string" }, readers: { type: "string" }, devices: { type: "string" }, buffers: { type: "string" },
    sharing: { type: "string" }, size: { type: "string" }, heap: { type: "string" }, duration: { type: "string" }, iterations: { type: "string" },
    jobs: { type: "string" }, wait: { type: "string" }, coherence: { type: "string" }, "bypass-fences": { type: "boolean" },
    chunks: { type: "string" }, timeout: { type: "string" }, sanitize: { type: "boolean" }, submitters: { type: "string" },
  },
  parse,
  run: (o, say) => runContend(o, say),
  table: renderContendTable,
  json: ({ trace: _trace, ...r }) => r,
  charts: contendCharts,
  failed: (r) => !r.options.bypassFences && (r.tornReads > 0 || (r.sanitize?.raceCount ?? 0) > 0),
  traceOf: (r) => r.trace,
};

export const contend: Command = benchmarkCommand(contendBenchmark, "contend");

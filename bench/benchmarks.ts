/*
 * Every benchmark the CLI offers, as a Benchmark (bench/harness.ts): the
 * `dmabuf-lab bench NAME` subcommands, in this order, and the kinds of
 * saved result `dmabuf-lab report` renders (a result's "benchmark" field
 * names its entry). Adding a benchmark is adding an entry here (see
 * docs/ARCHITECTURE.md, "Adding a benchmark"); the CLI gives it --help,
 * --quick, --json, --out and --chart.
 */
import type { Benchmark } from "./harness.js";
import { progressText, sizeLabel } from "./harness.js";
import { regimeGroups, runCopyBench, type CopyBenchOptions, type RegimeGroup } from "./copy.js";
import { runFenceBench } from "./fence.js";
import { runRwBench } from "./rw.js";
import { devicesCharts, devicesJson, renderDevicesTable, runDevicesBench } from "./devices.js";
import { runScaleBench } from "./scale.js";
import { renderScaleTable, scaleCharts, scaleJson } from "./scale_report.js";
import { calibrationCharts, renderCalibration, runCalibration, saveCalibration } from "./calibrate.js";
import { handoffCharts, handoffJson, handoffSizes, renderHandoffTable, runHandoffBench, type HandoffOptions } from "./handoff.js";
import { copyCharts, copyJson, fenceCharts, fenceJson, renderFenceTable, renderRwTable, renderTable, rwCharts, rwJson } from "./report.js";
import { UsageError, integer } from "../src/cli/options.js";
import { traceUsage } from "../src/cli/trace.js";
import { renderTraceTable, runTraceBench, traceCharts, traceJson } from "./trace.js";
import { ioCharts, ioJson, renderIoTable, runIoBench, type IoBenchOptions } from "./io.js";
import { IOTLB_INVALIDATE_NS } from "../src/dmabuf/iommu.js";
import { renderSanitizeTable, runSanitizeBench, sanitizeCharts } from "./sanitize.js";

const common = `  --quick          a reduced run
  --json           print the result as JSON
  --out FILE       also write the JSON result to FILE (\`dmabuf-lab report FILE\` draws it again)
  --chart FILE     also write charts: FILE.svg (the charts) or FILE.html (charts and table)`;

const noNative = "  --no-native      do not build or run the native memcpy peer";

const copy: Benchmark<CopyBenchOptions, Awaited<ReturnType<typeof runCopyBench>>> = {
  name: "copy",
  summary: "the copy engine's strategies against native memcpy and TypedArray.set",
  usage: `usage: dmabuf-lab bench copy [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html]
                            [--regime contiguous|pages|tiny]... [--seed N] [--no-native]

Every engine strategy against Uint8Array.set / copyWithin (on the shared
memory and on an ordinary ArrayBuffer), JavaScript per-segment loops and
native C memcpy (built with cc -O2 when a C compiler is present; skipped, with
a note, when not), in one run. Regimes: contiguous 64 B..64 MiB, 4 KiB page
scatter/gather, tiny segments (cache and DRAM windows). Prints GB/s (ns per
segment), x native and x SAB-set ratios and the targets. About 2 minutes;
--quick about 15 seconds.

${common}
  --regime R       run only regime R (repeatable): contiguous, pages, tiny
  --seed N         seed of the random page and segment layouts (default 24301)
${noNative}
`,
  options: { regime: { type: "string", multiple: true }, seed: { type: "string" }, "no-native": { type: "boolean" } },
  parse(v) {
    const regimes = (v.regime as string[] | undefined) ?? [...regimeGroups];
    const bad = regimes.find((r) => !regimeGroups.includes(r as RegimeGroup));
    if (bad !== undefined) throw new UsageError(`--regime '${bad}' is not one of ${regimeGroups.join(", ")}`);
    return {
      quick: v.quick === true, regimes: regimes as RegimeGroup[], seed: integer("seed", v.seed as string | undefined, 0, 0xffffffff),
      native: v["no-native"] !== true,
    };
  },
  run: (o, say) => runCopyBench(o, (e) => say(e.phase === "native" ? e.message : progressText(e))),
  table: renderTable,
  json: copyJson,
  charts: copyCharts,
};

const fence: Benchmark<{ quick: boolean }, Awaited<ReturnType<typeof runFenceBench>>> = {
  name: "fence",
  summary: "fences, reservation objects and locks against raw Atomics",
  usage: `usage: dmabuf-lab bench fence [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html]

Fences, reservation objects and locks, each beside its raw Atomics equivalent
in the same run, with the ratio (x raw, a cost ratio): a signal with and
without a waiter (vs Atomics.store + notify), signal-to-wake round trips
worker <-> worker and worker -> main waitAsync (vs an Atomics.wait/notify
ping-pong), resv add and testSignaled with 1..64 fences, Mutex lock/unlock
uncontended and contended by two workers. Prints p50/p90/p99 and the targets.
About 50 seconds; --quick under 10.

${common}
`,
  options: {},
  parse: (v) => ({ quick: v.quick === true }),
  run: (o, say) => runFenceBench(o, (e) => say(progressText(e))),
  table: renderFenceTable,
  json: fenceJson,
  charts: fenceCharts,
};

const rw: Benchmark<{ quick: boolean; native: boolean }, Awaited<ReturnType<typeof runRwBench>>> = {
  name: "rw",
  summary: "pread/pwrite on dma-buf fds against memcpy, TypedArray.set and fs calls",
  usage: `usage: dmabuf-lab bench rw [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html] [--no-native]

pread and pwrite on dma-buf fds (Process.pread/pwrite) on the system, cma and
system-uncached heaps, 4 KiB..64 MiB, from arena memory (lab.alloc, the fast
path) and at 1 MiB from an ordinary ArrayBuffer (the slow path), against
native memcpy, Uint8Array.set on the shared memory and fs.writeSync/readSync
on a file in /dev/shm, in one run; 64-byte calls against 64-byte fs calls, and
the parts of a 64-byte pwrite as reference rows. Prints the targets. About a
minute; --quick about 15 seconds.

${common}
${noNative}
`,
  options: { "no-native": { type: "boolean" } },
  parse: (v) => ({ quick: v.quick === true, native: v["no-native"] !== true }),
  run: (o, say) => runRwBench(o, (e) => say(progressText(e))),
  table: renderRwTable,
  json: rwJson,
  charts: rwCharts,
};

const devices: Benchmark<{ quick: boolean; native: boolean }, Awaited<ReturnType<typeof runDevicesBench>>> = {
  name: "devices",
  summary: "device jobs (worker threads) against memcpy threads",
  usage: `usage: dmabuf-lab bench devices [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html] [--no-native]

Device jobs (worker threads) against native memcpy, in one run:
submit-to-complete latency (p50/p90/p99, from the out-fence's timestamp) of
an empty job and of a 1 MiB copy on one device; aggregate copy bandwidth of
one and two devices, each copying its own 16 MiB dma-bufs with 8 jobs in
flight, beside native memcpy on one and two threads (pthreads, each its own
buffers). Prints the target: two devices >= 0.9x two native threads. About 5
seconds; --quick about 2.

${common}
${noNative}
`,
  options: { "no-native": { type: "boolean" } },
  parse: (v) => ({ quick: v.quick === true, native: v["no-native"] !== true }),
  run: (o, say) => runDevicesBench(o, (e) => say(progressText(e))),
  table: renderDevicesTable,
  json: devicesJson,
  charts: devicesCharts,
};

const scale: Benchmark<{ quick: boolean; native: boolean; maxThreads?: number }, Awaited<ReturnType<typeof runScaleBench>>> = {
  name: "scale",
  summary: "1..N threads: uapi pwrite/pread against fs, N devices against N-thread memcpy, contend",
  usage: `usage: dmabuf-lab bench scale [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html] [--threads N] [--no-native]

Does the lab scale with threads? For N = 1, 2, 4, ... up to the CPUs
available: N worker threads calling 64 B and 64 KiB pwrite/pread through the
uapi on dma-bufs of their own, beside the same N threads calling
fs.writeSync/readSync on /dev/shm files of their own (and the 64 B pwrite in
a lab with the shared fence cache, the design before per-thread magazines);
N devices copying their own 16 MiB buffers beside native memcpy on N
pthreads; and the contention experiment at N writers, N readers and N
devices (--sharing 0). Prints the aggregate throughput, the scaling
efficiency (throughput(N) / (N x one thread)), the ratio to the peer of the
same N, and the targets met/MISSED. About a minute on 2 CPUs (longer with
more); --quick about 20 seconds.

${common}
  --threads N      the largest N (default: the CPUs available to this process)
${noNative}
`,
  options: { threads: { type: "string" }, "no-native": { type: "boolean" } },
  parse: (v) => ({ quick: v.quick === true, native: v["no-native"] !== true, maxThreads: integer("threads", v.threads as string | undefined, 1, 64) }),
  run: (o, say) => runScaleBench(o, (e) => say(progressText(e))),
  table: renderScaleTable,
  json: scaleJson,
  charts: scaleCharts,
};

/** "4096", "4K", "1M" as bytes. */
function parseSize(text: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(text);
  if (m === null) throw new UsageError(`--size '${text}' is not bytes, or a number with K or M (4K, 1M)`);
  return Number(m[1]) * (m[2] === "" ? 1 : m[2].toUpperCase() === "K" ? 1024 : 1024 * 1024);
}

const handoff: Benchmark<HandoffOptions, Awaited<ReturnType<typeof runHandoffBench>>> = {
  name: "handoff",
  summary: "frames to a worker and back: raw SAB + Atomics, postMessage, comlink, the lab's buffer queue",
  usage: `usage: dmabuf-lab bench handoff [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html] [--size N]...

A frame handed from the main thread to a worker and back (the producer writes
the whole payload, the consumer checks every word and acknowledges), in one
run for: raw SharedArrayBuffer + Atomics (the floor), postMessage with and
without transfer, comlink with transfer, and the lab's buffer queue with
read/write, with mmap + SYNC and with the mapping alone. Payloads ${handoffSizes.map(sizeLabel).join(", ")}.
Prints round trips/s, p50/p99 latency, ratios against raw and against
postMessage with transfer (of p50 round trips; against raw also of means) and
the targets: the lab's best path >= 0.9x raw at every size, >= 1.2x
postMessage with transfer at 4 KiB. About 30 seconds; --quick about 8.

${common}
  --size N         run only payloads of N bytes (repeatable; 4K, 1M; a multiple of 4 up to 64M)
`,
  options: { size: { type: "string", multiple: true } },
  parse: (v) => ({ quick: v.quick === true, sizes: (v.size as string[] | undefined)?.map(parseSize) }),
  run: (o, say) => runHandoffBench(o, (e) => say(progressText(e))),
  table: renderHandoffTable,
  json: handoffJson,
  charts: handoffCharts,
};

const calibrate: Benchmark<{ quick: boolean; write: boolean }, Awaited<ReturnType<typeof runCalibration>>> = {
  name: "calibrate",
  summary: "measures the copy strategies per size and alignment: the AUTO table",
  usage: `usage: dmabuf-lab bench calibrate [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html] [--write]

Measures bulk, simd, words and bytes through the sg walker for each size
bucket (1 B..64 MiB) and alignment class, and prints the AUTO table. About 40
seconds; --quick about 10 (noisier).

${common}
  --write          save the table for this machine in the user's cache directory
                   ($XDG_CACHE_HOME/dmabuf-lab or ~/.cache/dmabuf-lab), where every
                   lab the dmabuf-lab command creates reads it
`,
  options: { write: { type: "boolean" } },
  parse: (v) => ({ quick: v.quick === true, write: v.write === true }),
  async run(o, say) {
    const result = await runCalibration(o, (e) => say(progressText(e)));
    if (o.write) say(`wrote ${saveCalibration(result.calibration)}`);
    return result;
  },
  table: renderCalibration,
  json: (r) => r,
  charts: calibrationCharts,
};

const trace: Benchmark<{ quick: boolean; keepTrace: boolean }, Awaited<ReturnType<typeof runTraceBench>>> = {
  name: "trace",
  summary: "what tracing costs: tracing on against off on rw calls, fences and device jobs",
  usage: `usage: dmabuf-lab bench trace [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html] [--trace FILE.json]

Tracing off against tracing on (every category) in alternating rounds of the
same run, on a 4 KiB pwritev + preadv pair, a fence create/signal/wait/put
and a device nop round trip: ns per operation, the ratio and the events
recorded per operation, with the targets. About 30 seconds; --quick about 10.

${common}
  --trace FILE     also write the last traced round of the device workload
                   as a Perfetto / chrome://tracing file: FILE.json
`,
  options: {},
  parse: (v) => ({ quick: v.quick === true, keepTrace: v.trace !== undefined }),
  run: (o, say) => runTraceBench(o, (e) => say(progressText(e))),
  table: renderTraceTable,
  json: traceJson,
  charts: traceCharts,
  traceOf: (r) => r.trace,
};

const io: Benchmark<IoBenchOptions, Awaited<ReturnType<typeof runIoBench>>> = {
  name: "io",
  summary: "reads from a real file into dma-bufs: io_uring fixed, per-I/O mapped, READ + pwrite, copy_file_range, fs.readSync",
  usage: `usage: dmabuf-lab bench io [--quick] [--iotlb-ns NS] [--trace FILE.json] [--json] [--out FILE.json] [--chart FILE.svg|.html]

4 KiB random and 128 KiB sequential reads from a real file into dma-bufs, at
queue depths 1, 32 and 128, in one run: io_uring READ_FIXED into a registered
dma-buf (premapped); io_uring READ into user memory through a per-I/O IOMMU
mapping under strict, lazy and passthrough IOMMUs; READ then pwrite to the
dma-buf; copy_file_range into the dma-buf, direct (the storage device's DMA)
and buffered; and fs.readSync into a view of the dma-buf's pages (the
ceiling). Prints IOPS, GB/s, p50/p99 latency, ratios against the fixed path
and the ceiling, and the targets. About 20 seconds; --quick about 5.

  --iotlb-ns NS    the IOMMUs' modelled IOTLB invalidation latency in ns
                   (default ${IOTLB_INVALIDATE_NS}): what a per-I/O mapping pays per unmap
                   (strict) and a registered dma-buf never does
${traceUsage}
                   (a short extra pass of the io_uring paths at 4 KiB QD 32,
                   after the measured ones)
${common}
`,
  options: { "iotlb-ns": { type: "string" } },
  parse: (v) => ({ quick: v.quick === true, iotlbInvalidateNs: integer("iotlb-ns", v["iotlb-ns"] as string | undefined, 0, 1e9), trace: v.trace !== undefined }),
  run: (o, say) => runIoBench(o, (e) => say(progressText(e))),
  table: renderIoTable,
  json: ioJson,
  charts: ioCharts,
  traceOf: (r) => r.trace,
};

const sanitize: Benchmark<{ quick: boolean }, Awaited<ReturnType<typeof runSanitizeBench>>> = {
  name: "sanitize",
  summary: "what the race detector costs: contend defaults with the sanitizer off against on",
  usage: `usage: dmabuf-lab bench sanitize [--quick] [--json] [--out FILE.json] [--chart FILE.svg|.html]

Contend defaults (2 writers, 2 readers, 1 device, 4 buffers of 64 KiB) with
the sanitizer off and on in alternating rounds of the same run (three each,
2 s a round): operations per second, the slowdown (median off / median on)
against the target, and the race check's own time. About 30 seconds;
--quick one round each of 1 s. A sanitized round with a race fails (exit 1).

${common}
`,
  options: {},
  parse: (v) => ({ quick: v.quick === true }),
  run: (o, say) => runSanitizeBench(o, (e) => say(progressText(e))),
  table: renderSanitizeTable,
  json: (r) => r,
  charts: sanitizeCharts,
  failed: (r) => r.rounds.some((x) => (x.races ?? 0) > 0),
};

// Each entry's options and result types are its own; the CLI sees them through the common shape.
type AnyBenchmark = Benchmark<any, any>;

/** `dmabuf-lab bench NAME`, in this order. */
export const benchmarks: readonly AnyBenchmark[] = [copy, fence, rw, devices, scale, handoff, io, calibrate, trace, sanitize];

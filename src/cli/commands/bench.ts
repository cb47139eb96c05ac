/*
 * `dmabuf-lab bench copy`, `dmabuf-lab bench fence`, `dmabuf-lab bench rw`,
 * `dmabuf-lab bench devices`, `dmabuf-lab bench handoff` and `dmabuf-lab
 * bench calibrate`: the copy benchmark (bench/copy.ts), the fence benchmark
 * (bench/fence.ts), the read/write benchmark (bench/rw.ts), the device
 * benchmark (bench/devices.ts), the hand-off benchmark (bench/handoff.ts)
 * and the AUTO calibration (bench/calibrate.ts).
 * Results on stdout (a table, or JSON with --json), progress on stderr;
 * files only where an option names them (--chart, --out, --write).
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { progress, writeFile, type Command, type CommandIo } from "../command.js";
import { packageUrl } from "../../engine/artifacts.js";
import { regimeGroups, runCopyBench, type RegimeGroup } from "../../../bench/copy.js";
import { runFenceBench } from "../../../bench/fence.js";
import { runRwBench } from "../../../bench/rw.js";
import { renderDevicesJson, renderDevicesTable, runDevicesBench } from "../../../bench/devices.js";
import {
  renderFenceJson, renderFenceTable, renderJson, renderRwJson, renderRwTable, renderSvg, renderTable,
} from "../../../bench/report.js";
import { renderCalibration, runCalibration } from "../../../bench/calibrate.js";
import { renderHandoffJson, renderHandoffSvg, renderHandoffTable, runHandoffBench } from "../../../bench/handoff.js";

const usage = `usage: dmabuf-lab bench copy [--quick] [--json] [--chart FILE.svg] [--out FILE.json]
                            [--regime contiguous|pages|tiny]... [--seed N] [--no-native]
       dmabuf-lab bench fence [--quick] [--json] [--out FILE.json]
       dmabuf-lab bench rw [--quick] [--json] [--out FILE.json] [--no-native]
       dmabuf-lab bench devices [--quick] [--json] [--out FILE.json] [--no-native]
       dmabuf-lab bench handoff [--quick] [--json] [--out FILE.json] [--chart FILE.svg] [--size N]...
       dmabuf-lab bench calibrate [--quick] [--json] [--write]

bench copy: every engine strategy against Uint8Array.set / copyWithin (on the
shared memory and on an ordinary ArrayBuffer), JavaScript per-segment loops and
native C memcpy (built from bench/native/memcpy.c with cc -O2 when a C compiler
is present; skipped, with a note, when not), in one run. Regimes: contiguous
64 B..64 MiB, 4 KiB page scatter/gather, tiny segments (cache and DRAM windows).
Prints a table with GB/s (ns per segment), x native and x SAB-set ratios and
the issue's targets. About 2 minutes; --quick about 15 seconds.

  --quick          a reduced run (fewer sizes, a smaller pool, 40 ms per method)
  --json           print the result as JSON ({ machine, date, targets, rows, notes })
  --chart FILE     also write an SVG chart of GB/s against size (contiguous);
                   no chart is written unless asked for
  --out FILE       also write the JSON result to FILE
  --regime R       run only regime R (repeatable): contiguous, pages, tiny
  --seed N         seed of the random page and segment layouts (default 24301)
  --no-native      do not build or run the native memcpy peer

bench fence: fences, reservation objects and locks, each beside its raw Atomics
equivalent in the same run, with the ratio (x raw, a cost ratio): a signal with
and without a waiter (vs Atomics.store + notify), signal-to-wake round trips
worker <-> worker and worker -> main waitAsync (vs an Atomics.wait/notify
ping-pong), resv add and testSignaled with 1..64 fences, Mutex lock/unlock
uncontended and contended by two workers. Prints p50/p90/p99 and the issue's
targets. About 50 seconds; --quick under 10.

  --quick          a reduced run (2 rounds of 40 ms per method, fewer samples)
  --json           print the result as JSON ({ machine, date, targets, rows, notes })
  --out FILE       also write the JSON result to FILE

bench rw: pread and pwrite on dma-buf fds (Process.pread/pwrite) on the system,
cma and system-uncached heaps, 4 KiB..64 MiB, from arena memory (lab.alloc, the
fast path) and at 1 MiB from an ordinary ArrayBuffer (the slow path), against
native memcpy, Uint8Array.set on the shared memory and fs.writeSync/readSync on
a file in /dev/shm, in one run; 64-byte calls against 64-byte fs calls, and the
parts of a 64-byte pwrite as reference rows. Prints the issue's targets.
About a minute; --quick about 15 seconds.

  --quick          a reduced run (4 KiB, 1 MiB, 16 MiB; 40 ms per method)
  --json           print the result as JSON ({ machine, date, targets, rows, notes })
  --out FILE       also write the JSON result to FILE
  --no-native      do not build or run the native memcpy peer

bench devices: device jobs (worker threads) against native memcpy, in one run:
submit-to-complete latency (p50/p90/p99, from the out-fence's timestamp) of
an empty job and of a 1 MiB copy on one device; aggregate copy bandwidth of
one and two devices, each copying its own 16 MiB dma-bufs with 8 jobs in
flight, beside native memcpy on one and two threads (pthreads, each its own
buffers). Prints the issue's target: two devices >= 0.9x two native threads.
About 5 seconds; --quick about 2.

  --quick          a reduced run (8 MiB copies, one round of 40 ms per row)
  --json           print the result as JSON ({ machine, date, targets, latency, bandwidth, notes })
  --out FILE       also write the JSON result to FILE
  --no-native      do not build or run the native memcpy peer

bench handoff: a frame handed from the main thread to a worker and back (the
producer writes the whole payload, the consumer checks every word and
acknowledges), 4 KiB..16 MiB, in one run for: raw SharedArrayBuffer + Atomics
(the floor), postMessage with and without transfer, comlink with transfer, and
the lab's buffer queue with read/write, with mmap + SYNC and with the mapping
alone. Prints round trips/s, p50/p99 latency, ratios against raw and against
postMessage with transfer (of p50 round trips; against raw also of means), and the targets (the lab's best path >= 0.9x raw at
every size, >= 1.2x postMessage with transfer at 4 KiB). About 25 seconds;
--quick about 5.

  --quick          a reduced run (two passes of 40 ms per path and size)
  --json           print the result as JSON ({ machine, date, budget, rows, targets, notes })
  --out FILE       also write the JSON result to FILE
  --chart FILE     also write an SVG chart (round trips/s as a multiple of raw, per size)
  --size N         run only payloads of N bytes (repeatable; 4K, 1M; a multiple of 4 up to 64M)

bench calibrate: measures bulk, simd, words and bytes through the sg walker for
each size bucket (1 B..64 MiB) and alignment class, and prints the AUTO table.
About 40 seconds; --quick about 10 (noisier).

  --write          rewrite src/engine/calibration.json with the measured table
                   (bundles pick it up at the next build: npm run build)
  --json           print the measurements and the table as JSON
  --quick          shorter measurements
`;

/** A benchmark step as progress text: "3/40 label" (a negative index is a note, just the label). */
const step = (e: { index: number; total: number; label: string }): string =>
  e.index < 0 ? e.label : `${e.index + 1}/${e.total} ${e.label}`;

async function copy(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean" },
      json: { type: "boolean" },
      chart: { type: "string" },
      out: { type: "string" },
      regime: { type: "string", multiple: true },
      seed: { type: "string" },
      "no-native": { type: "boolean" },
    },
  });
  const regimes = values.regime ?? [...regimeGroups];
  const bad = regimes.filter((r) => !regimeGroups.includes(r as RegimeGroup));
  if (bad.length) {
    io.stderr(`dmabuf-lab bench copy: unknown regime '${bad[0]}' (expected ${regimeGroups.join(", ")})\n`);
    return 2;
  }
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)) {
    io.stderr(`dmabuf-lab bench copy: --seed must be an integer in 0..4294967295\n`);
    return 2;
  }
  const say = progress(io, "bench");
  const result = await runCopyBench(
    { quick: values.quick, regimes: regimes as RegimeGroup[], seed, native: !values["no-native"] },
    (e) => say(e.phase === "native" ? e.message : step(e)),
  );
  const json = renderJson(result);
  io.stdout(values.json ? json : renderTable(result));
  if (values.out !== undefined) io.stderr(`bench: wrote ${writeFile(values.out, json)}\n`);
  if (values.chart !== undefined) io.stderr(`bench: wrote ${writeFile(values.chart, renderSvg(result))}\n`);
  return 0;
}

async function fence(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: "boolean" }, json: { type: "boolean" }, out: { type: "string" } },
  });
  const say = progress(io, "bench");
  const result = await runFenceBench({ quick: values.quick }, (e) => say(step(e)));
  const json = renderFenceJson(result);
  io.stdout(values.json ? json : renderFenceTable(result));
  if (values.out !== undefined) io.stderr(`bench: wrote ${writeFile(values.out, json)}\n`);
  return 0;
}

/** A benchmark with a native peer (rw, devices): --quick, --json, --out FILE, --no-native. */
function withNative<R>(
  run: (o: { quick?: boolean; native: boolean }, onProgress: (e: { index: number; total: number; label: string }) => void) => Promise<R>,
  renderJson: (r: R) => string,
  renderTable: (r: R) => string,
): (argv: string[], io: CommandIo) => Promise<number> {
  return async (argv, io) => {
    const { values } = parseArgs({
      args: argv,
      options: { quick: { type: "boolean" }, json: { type: "boolean" }, out: { type: "string" }, "no-native": { type: "boolean" } },
    });
    const say = progress(io, "bench");
    const result = await run({ quick: values.quick, native: !values["no-native"] }, (e) => say(step(e)));
    const json = renderJson(result);
    io.stdout(values.json ? json : renderTable(result));
    if (values.out !== undefined) io.stderr(`bench: wrote ${writeFile(values.out, json)}\n`);
    return 0;
  };
}

const rw = withNative(runRwBench, renderRwJson, renderRwTable);
const devices = withNative(runDevicesBench, renderDevicesJson, renderDevicesTable);

async function handoff(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean" }, json: { type: "boolean" }, out: { type: "string" }, chart: { type: "string" },
      size: { type: "string", multiple: true },
    },
  });
  const sizes = values.size?.map(parseSize);
  if (sizes?.some((n) => n === null)) {
    io.stderr(`dmabuf-lab bench handoff: --size takes bytes, or a number with K or M (4K, 1M)\n`);
    return 2;
  }
  const say = progress(io, "bench");
  const result = await runHandoffBench({ quick: values.quick, sizes: sizes as number[] | undefined }, (e) => say(step(e)));
  const json = renderHandoffJson(result);
  io.stdout(values.json ? json : renderHandoffTable(result));
  if (values.out !== undefined) io.stderr(`bench: wrote ${writeFile(values.out, json)}\n`);
  if (values.chart !== undefined) io.stderr(`bench: wrote ${writeFile(values.chart, renderHandoffSvg(result))}\n`);
  return 0;
}

/** "4096", "4K", "1M" as bytes; null when it is none of these. */
function parseSize(text: string): number | null {
  const m = /^(\d+)([KM]?)$/i.exec(text);
  return m === null ? null : Number(m[1]) * (m[2] === "" ? 1 : m[2].toUpperCase() === "K" ? 1024 : 1024 * 1024);
}

async function calibrate(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: "boolean" }, json: { type: "boolean" }, write: { type: "boolean" } },
  });
  const say = progress(io, "calibrate");
  const result = await runCalibration({ quick: values.quick }, (e) => say(step(e)));
  io.stdout(values.json ? JSON.stringify(result, null, 2) + "\n" : renderCalibration(result));
  if (values.write) {
    const path = fileURLToPath(packageUrl("src/engine/calibration.json"));
    writeFileSync(path, JSON.stringify(result.calibration, null, 1) + "\n");
    io.stderr(`calibrate: wrote ${path} (run npm run build so that the bundles use it)\n`);
  }
  return 0;
}

export const bench: Command = {
  name: "bench",
  summary: "benchmarks: copy (vs memcpy, TypedArray.set), fence (vs raw Atomics), rw (pread/pwrite vs memcpy, fs), " +
    "devices (device jobs vs memcpy threads), handoff (frames to a worker and back vs SAB, postMessage, comlink), calibrate (the AUTO table)",
  usage,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub === "copy") return copy(rest, io);
    if (sub === "fence") return fence(rest, io);
    if (sub === "rw") return rw(rest, io);
    if (sub === "devices") return devices(rest, io);
    if (sub === "handoff") return handoff(rest, io);
    if (sub === "calibrate") return calibrate(rest, io);
    io.stderr(sub === undefined
      ? `dmabuf-lab bench: which benchmark? (copy, fence, rw, devices, handoff or calibrate)\n\n${usage}`
      : `dmabuf-lab bench: unknown benchmark '${sub}'\n\n${usage}`);
    return 2;
  },
};

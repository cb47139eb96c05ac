/*
 * The device benchmark: device jobs against native
 * memcpy, in the same run.
 *
 *   latency    submit-to-complete of one job at a time on one device: an
 *              empty job (nop) and a copy of a 1 MiB system-heap dma-buf
 *              into another; the out-fence's timestamp minus the lab clock
 *              just before submit(), both ns on the lab clock. p50/p90/p99.
 *   bandwidth  aggregate copy bandwidth. devices xN: N devices, each copying
 *              its own src dma-buf into its own dst (16 MiB; --quick 8 MiB),
 *              BATCH jobs per device submitted back-to-back from this thread
 *              (all in flight; it sleeps until the last); a sample is the
 *              time from the first submission to the last out-fence's
 *              timestamp over N x BATCH copies. native memcpy xN: bench/native/memcpy.c
 *              "threads", N pthreads each copying its own buffers BATCH
 *              times between barriers. Reference: the engine copying the
 *              same size on this thread, no device. Every row is ns per copy
 *              of the aggregate; GB/s from its p50.
 *
 * Rounds (the full run: two) measure native x1 and x2 first, then devices
 * x1 and x2 (the reverse order in the second round), samples pooled.
 * Before anything is timed each device copies once and the destination is
 * read back and compared with the source.
 *
 * Target: devices x2 reach >= 0.9x native x2 (met, MISSED, or n/a without
 * a C compiler), with the figures that explain a miss.
 *
 * Contract: runDevicesBench() returns data and prints nothing; progress goes
 * to onProgress. Every wait has a timeout (ETIMEDOUT); a failed job is EIO.
 * The devices are shut down, the buffers closed and the lab closed however
 * the run ends.
 */
import os from "node:os";
import { Lab } from "../src/api/lab.js";
import type { DmaBuf } from "../src/api/dma_buf.js";
import type { Device, DeviceBuffer, Job } from "../src/devices/device.js";
import { DmaBufError } from "../src/errno.js";
import type { Fence } from "../src/sync/fence.js";
import { bar, budgetFor, fillPattern, measure, sizeLabel } from "./harness.js";
import { nativePeer, nativeCaseKey, runNative, type NativeBudget, type NativeCase, type NativeStatus } from "./native.js";
import {
  durationLabel, machineInfo, machineLines, renderNotes, renderTargets, row, summarize, type Chart, type MachineInfo, type SampleStats,
  type TargetResult,
} from "../src/report.js";

const MiB = 1024 * 1024;
const LATENCY_COPY = MiB;
/** Copies per device (or native thread) in one sample: all in flight at once. */
export const BATCH = 8;
const TIMEOUT_MS = 10_000;
const TARGET = 0.9;

export interface DevicesBenchOptions {
  quick?: boolean;
  /** Run the native C peer (default true). */
  native?: boolean;
}

export interface DeviceLatencyRow {
  job: string;
  bytes: number;
  stats: SampleStats;
}

export interface DeviceBandwidthRow {
  method: string;
  kind: "device" | "native" | "reference";
  /** Devices or threads copying at once. */
  workers: number;
  /** Bytes per copy. */
  bytes: number;
  /** Copies per worker in one sample. */
  batch: number;
  /** Aggregate GB/s, from the p50. */
  gbps: number;
  /** Speed against native memcpy with as many threads (>1 faster). */
  vsNative: number | null;
  /** ns per copy of the aggregate. */
  stats: SampleStats;
}

export interface DevicesBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  budget: NativeBudget;
  rounds: number;
  /** Copies per device or thread in one sample, all in flight. */
  batch: number;
  load: { start: number; end: number };
  native: NativeStatus;
  latency: DeviceLatencyRow[];
  bandwidth: DeviceBandwidthRow[];
  targets: TargetResult[];
  notes: string[];
  durationMs: number;
}

export type DevicesBenchProgress = { index: number; total: number; label: string };

/** Waits for a job's fence (the limit is TIMEOUT_MS); EIO if the job failed. */
function settle(f: Fence, what: string): void {
  if (f.wait(TIMEOUT_MS) === 0) throw new DmaBufError("ETIMEDOUT", "bench_devices", `${what} did not complete within ${TIMEOUT_MS} ms`);
  if (f.status < 0) throw new DmaBufError("EIO", "bench_devices", `${what} failed with errno ${-f.status}`);
}

/** Samples (ns) of `once` for the budget: warm-up, then until timeMs has passed and minSamples are taken. */
export function sample(budget: NativeBudget, once: () => number): number[] {
  const warm = performance.now() + budget.warmupMs;
  do once(); while (performance.now() < warm);
  const out: number[] = [];
  const start = performance.now();
  while (out.length < budget.maxSamples && (out.length < budget.minSamples || performance.now() - start < budget.timeMs)) out.push(once());
  return out;
}

/** One job, submitted and waited for: its fence's timestamp minus the submission time. */
function jobLatency(lab: Lab, dev: Device, job: Job): number {
  const t0 = lab.sync.clock.nowNs();
  const f = dev.submit(job);
  try {
    settle(f, `a ${job.kind} job`);
    return f.timestampNs - t0;
  } finally {
    f.put();
  }
}

export interface Copier { dev: Device; src: DeviceBuffer; dst: DeviceBuffer }

/**
 * A device's own src (the pattern, system heap) and dst (zeroed) of `size`
 * bytes, attached, checked by one copy job and a read-back through `back`
 * (arena memory of at least `size`). The buffers go into `bufs`, which the
 * caller closes.
 */
export async function makeCopier(lab: Lab, dev: Device, size: number, pattern: Uint8Array, back: Uint8Array, bufs: DmaBuf[]): Promise<Copier> {
  const heap = lab.heap("system");
  const [src, dst] = [heap.alloc(size), heap.alloc(size)];
  bufs.push(src, dst);
  src.write(pattern.subarray(0, size), 0);
  const c = { dev, src: await dev.attach(src), dst: await dev.attach(dst) };
  jobLatency(lab, dev, { kind: "copy", src: c.src, dst: c.dst });
  const got = back.subarray(0, size);
  dst.read(got, 0);
  if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, size), Buffer.from(pattern.buffer, pattern.byteOffset, size)) !== 0) {
    throw new Error(`bench devices: a ${sizeLabel(size)} copy on ${dev.name} moved wrong bytes`);
  }
  return c;
}

/**
 * BATCH copies per device, submitted back-to-back (all in flight); this
 * thread sleeps until each device's last fence (a device completes in
 * order), then checks them all. ns per copy of the aggregate: the first
 * submission to the last fence's timestamp.
 */
export function copyRound(lab: Lab, copiers: Copier[]): number {
  const fences: Fence[] = [];
  const t0 = lab.sync.clock.nowNs();
  try {
    for (let j = 0; j < BATCH; j++) for (const c of copiers) fences.push(c.dev.submit({ kind: "copy", src: c.src, dst: c.dst }));
    let end = t0;
    for (const f of [...fences.slice(-copiers.length), ...fences]) {
      settle(f, "a copy job");
      end = Math.max(end, f.timestampNs);
    }
    return (end - t0) / fences.length;
  } finally {
    for (const f of fences) f.put();
  }
}

export async function runDevicesBench(options: DevicesBenchOptions = {}, onProgress: (e: DevicesBenchProgress) => void = () => {}): Promise<DevicesBenchResult> {
  const started = performance.now();
  const quick = options.quick ?? false;
  const bytes = quick ? 8 * MiB : 16 * MiB;
  const budget = budgetFor(quick);
  const rounds = quick ? 1 : 2;
  const roundBudget: NativeBudget = { ...budget, timeMs: budget.timeMs / rounds, minSamples: Math.ceil(budget.minSamples / rounds) };
  const loadStart = os.loadavg()[0];
  const notes: string[] = [];
  const total = 3 + rounds;
  let step = 0;
  const progress = (label: string) => onProgress({ index: step++, total, label });

  progress("building the native memcpy peer (bench/native/memcpy.c)");
  const { native, binary } = await nativePeer(options.native ?? true);

  const lab = await Lab.create({ memoryBytes: 256 * MiB, poolBytes: 128 * MiB });
  const devices: Device[] = [];
  const bufs: DmaBuf[] = [];
  const latency: DeviceLatencyRow[] = [];
  const samples = new Map<string, number[]>();
  const pooled = (key: string, got: number[]) => { samples.set(key, [...(samples.get(key) ?? []), ...got]); };
  const pattern = lab.alloc(bytes, { align: 4096, zero: false });
  const back = lab.alloc(bytes, { align: 4096 });
  try {
    progress("starting two devices");
    // One at a time: spawnDevice() calls racing for the lab's first watchdog would each start one.
    for (const name of ["bench-dev-0", "bench-dev-1"]) devices.push(await lab.spawnDevice({ name, jobTimeoutMs: TIMEOUT_MS }));
    fillPattern(pattern, 7);
    const copier = (dev: Device, size: number) => makeCopier(lab, dev, size, pattern, back, bufs);

    progress("latency: nop and 1 MiB copy jobs on one device");
    const small = await copier(devices[0], LATENCY_COPY);
    for (const [job, j, size] of [["nop", { kind: "nop" }, 0], [`copy ${sizeLabel(LATENCY_COPY)}`, { kind: "copy", src: small.src, dst: small.dst }, LATENCY_COPY]] as const) {
      latency.push({ job, bytes: size, stats: summarize(sample(budget, () => jobLatency(lab, devices[0], j))) });
    }

    const copiers = [await copier(devices[0], bytes), await copier(devices[1], bytes)];
    const nativeCases = [1, 2].map((threads) => ({ kind: "threads", bytes, threads, batch: BATCH }) satisfies NativeCase);
    for (let round = 0; round < rounds; round++) {
      progress(`bandwidth round ${round + 1}/${rounds}: native memcpy x1, x2, then devices x1, x2 (${sizeLabel(bytes)} copies)`);
      if (binary !== undefined) {
        const run = await runNative(binary, nativeCases, roundBudget);
        for (const c of nativeCases) {
          const got = run.status === "ran" ? run.results.get(nativeCaseKey(c)) : undefined;
          if (got === undefined) notes.push(`native x${c.threads}: ${run.status === "failed" ? run.reason : "no result"}`);
          else pooled(`native${c.threads}`, got.samples);
        }
      }
      const order = round % 2 === 0 ? [1, 2] : [2, 1];
      for (const n of order) pooled(`devices${n}`, sample(roundBudget, () => copyRound(lab, copiers.slice(0, n))));
    }
    const engine = measure([{ name: "engine", body: () => lab.copy(back, pattern), batch: 1 }], budget);
    pooled("engine", engine.get("engine")!);
    if (binary === undefined) notes.push(`native memcpy skipped: ${native.reason}`);
  } finally {
    const stopped = await Promise.allSettled(devices.map((d) => d.shutdown({ drain: false })));
    for (const b of bufs) b.close();
    lab.free(pattern);
    lab.free(back);
    lab.close();
    const failed = stopped.find((s) => s.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  const bw = (key: string, method: string, kind: DeviceBandwidthRow["kind"], workers: number): DeviceBandwidthRow[] => {
    const got = samples.get(key);
    if (got === undefined || got.length === 0) return [];
    const stats = summarize(got);
    return [{ method, kind, workers, bytes, batch: kind === "reference" ? 1 : BATCH, gbps: bytes / stats.p50Ns, vsNative: null, stats }];
  };
  const bandwidth = [
    ...bw("native1", "native memcpy, 1 thread", "native", 1), ...bw("native2", "native memcpy, 2 threads", "native", 2),
    ...bw("devices1", "devices x1", "device", 1), ...bw("devices2", "devices x2", "device", 2),
    ...bw("engine", "engine copy on this thread, no device", "reference", 1),
  ];
  for (const r of bandwidth) {
    const peer = bandwidth.find((p) => p.kind === "native" && p.workers === r.workers);
    if (r.kind !== "native" && peer !== undefined) r.vsNative = r.gbps / peer.gbps;
  }
  notes.push(
    "latency rows: one job at a time; the host blocks in Fence.wait between jobs, the device sleeps on its ring (briefly " +
      "Atomics.wait, then waitAsync) when idle, so each sample includes waking the device.",
    `bandwidth: ${os.availableParallelism()} CPUs share the device workers, this thread (asleep in Fence.wait while ` +
      `jobs run) and the lab's watchdog worker; the native threads have the CPUs to themselves.`,
  );
  return {
    machine: machineInfo(native.compiler), date: new Date().toISOString(), quick, budget, rounds, batch: BATCH,
    load: { start: loadStart, end: os.loadavg()[0] }, native, latency, bandwidth, targets: evaluateDevicesTargets(bandwidth, latency, native),
    notes, durationMs: Math.round(performance.now() - started),
  };
}

export function evaluateDevicesTargets(rows: DeviceBandwidthRow[], latency: DeviceLatencyRow[], native: NativeStatus): TargetResult[] {
  const find = (kind: DeviceBandwidthRow["kind"], workers: number) => rows.find((r) => r.kind === kind && r.workers === workers);
  const [d1, d2, n1, n2, ref] = [find("device", 1), find("device", 2), find("native", 1), find("native", 2), find("reference", 1)];
  const description = "aggregate copy bandwidth, two devices vs native memcpy on two threads";
  const threshold = `>= ${TARGET.toFixed(2)}x native`;
  if (d2 === undefined || n2 === undefined || d2.vsNative === null) {
    return [{ id: "devices-2-vs-native-2", description, threshold, measured: null, unit: "x native", met: null,
      detail: `not measured: ${native.reason ?? "no native two-thread row"}` }];
  }
  const gb = (r: DeviceBandwidthRow | undefined) => (r === undefined ? "-" : `${r.gbps.toFixed(2)} GB/s`);
  const x = (v: number | null | undefined) => (v === null || v === undefined ? "-" : `${v.toFixed(2)}x`);
  const met = d2.vsNative >= TARGET;
  let detail = `devices x2 ${gb(d2)} vs native x2 ${gb(n2)} (${d2.vsNative.toFixed(3)}x); one device ${gb(d1)} vs one native thread ${gb(n1)} (${x(d1?.vsNative)}); ` +
    `from one to two: devices ${x(d1 && d2.gbps / d1.gbps)}, native ${x(n1 && n2.gbps / n1.gbps)}`;
  if (!met && d1 !== undefined && ref !== undefined) {
    const nop = latency.find((l) => l.job === "nop")?.stats.p50Ns;
    detail += ref.vsNative !== null && ref.vsNative < TARGET
      ? `; why: the engine copying on this thread without a device reaches only ${x(ref.vsNative)} one native thread: ` +
        "the copy inside wasm memory is the gap, not the devices"
      : d1.vsNative !== null && d1.vsNative < TARGET
        ? `; why: the engine copying on this thread reaches ${x(ref.vsNative)} one native thread, a device ${x(d1.vsNative)}: ` +
          `each ${sizeLabel(d1.bytes)} job takes ${durationLabel(d1.stats.p50Ns - ref.stats.p50Ns)} longer on a device than the ` +
          `same copy here (an empty job's submit-to-complete p50: ${durationLabel(nop ?? NaN)}), the device path's cost`
        : "; why: one device keeps up with one native thread, but two devices scale less than two threads: the device " +
          "workers share the CPUs with this thread and the lab's watchdog";
  }
  return [{ id: "devices-2-vs-native-2", description, threshold, measured: d2.vsNative, unit: "x native", met, detail }];
}

// ---------------------------------------------------------------------------
// Rendering

const latHead = ["job", "p50", "p90", "p99", "±rme%", "samples"];
const latWidths = [16, 9, 9, 9, 6, 7];
const bwHead = ["method", "GB/s", "×native", "ns/copy", "±rme%", "p99/p50", "samples"];
const bwWidths = [40, 6, 7, 9, 6, 7, 7];
const right = (n: number) => [false, ...Array<boolean>(n - 1).fill(true)];

export function renderDevicesTable(result: DevicesBenchResult): string {
  const b = result.bandwidth[0];
  const out = [
    `dmabuf-lab bench devices${result.quick ? " --quick" : ""}: ${result.date}, ${(result.durationMs / 1000).toFixed(0)} s`,
    ...machineLines(result.machine),
    `native:  ${result.native.status === "ran" ? `memcpy built with ${result.native.compiler}` : `SKIPPED: ${result.native.reason}`}`,
    `budget:  ${result.budget.timeMs} ms per row in ${result.rounds} round${result.rounds === 1 ? "" : "s"}, each after ` +
      `${result.budget.warmupMs} ms warm-up; load ${result.load.start.toFixed(2)} -> ${result.load.end.toFixed(2)}`,
    "",
    "latency: submit -> the out-fence's timestamp (lab clock), one job at a time on one device",
    row(latHead, latWidths, right(latHead.length)),
    ...result.latency.map((r) => row([r.job, durationLabel(r.stats.p50Ns), durationLabel(r.stats.p90Ns), durationLabel(r.stats.p99Ns),
      r.stats.rme.toFixed(1), String(r.stats.samples)], latWidths, right(latHead.length))),
    "",
    `bandwidth: aggregate, ${b ? sizeLabel(b.bytes) : "-"} copies, each device or thread its own buffers; devices: ` +
      `${result.batch} jobs in flight each`,
    row(bwHead, bwWidths, right(bwHead.length)),
    ...result.bandwidth.map((r) => row([r.method + (r.kind === "reference" ? " *" : ""), r.gbps.toFixed(2),
      r.vsNative === null ? "-" : r.vsNative.toFixed(2), durationLabel(r.stats.p50Ns), r.stats.rme.toFixed(1),
      (r.stats.p99Ns / r.stats.p50Ns).toFixed(2), String(r.stats.samples)], bwWidths, right(bwHead.length))),
    "  ×native: against native memcpy with as many threads; * reference, not a peer",
    "",
    ...renderTargets(result.targets, "targets: p50s of the same run"),
    "",
    ...renderNotes(result.notes),
  ];
  return out.join("\n") + "\n";
}

export function devicesJson(result: DevicesBenchResult): object {
  const { machine, date, quick, budget, rounds, batch, load, native, durationMs, targets, latency, bandwidth, notes } = result;
  return { machine, date, quick, budget, rounds, batch, load, native, durationMs, targets, latency, bandwidth, notes };
}

/** Latency per job (p50, bars p10..p90) and aggregate bandwidth per method (GB/s at the p50, bars p10..p90). */
export function devicesCharts(result: DevicesBenchResult): Chart[] {
  const subtitle = `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}; ` +
    "p50, bars p10..p90 of the samples";
  return [
    {
      kind: "bars", title: "bench devices: submit-to-complete latency, one job at a time", subtitle,
      value: { label: "latency (log scale)", scale: "log10", unit: "ns" },
      groups: [{ name: "job", bars: result.latency.map((r) => bar(r.job, r.stats)) }],
    },
    {
      kind: "bars", title: "bench devices: aggregate copy bandwidth", subtitle,
      value: { label: "GB/s", scale: "linear", unit: "GB/s" },
      groups: [{
        name: result.bandwidth[0] ? `${sizeLabel(result.bandwidth[0].bytes)} copies` : "copies",
        bars: result.bandwidth.map((r) => bar(r.method, r.stats, (ns) => (r.gbps * r.stats.p50Ns) / ns)),
      }],
    },
  ];
}

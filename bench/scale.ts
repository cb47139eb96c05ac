/*
 * The scaling benchmark (`dmabuf-lab bench scale`): does the lab scale with
 * threads as the kernel and memcpy do, or is it its own bottleneck? For
 * N = 1, 2, 4, ... up to os.availableParallelism() (the last N the machine's
 * count when it is no power of two), in the same run:
 *
 *   rw        N worker threads (workers/bench-scale.ts), each with its own
 *             Process, its own system-heap dma-buf and its own arena
 *             buffer, calling pwrite or pread of 64 B and 64 KiB through the
 *             uapi; beside the same N threads calling fs.writeSync/readSync
 *             of the same size on a /dev/shm file of their own (the kernel's
 *             read/write path). A sample is one window (WINDOW_MS; --quick
 *             less) in which every thread calls as fast as it can between
 *             a START and a STOP word; the aggregate is the sum of each
 *             thread's calls over its own time. A half window of each
 *             first warms up, uncounted; then lab and peer windows
 *             alternate, rounds pooled. A steps row beside them: the 64 B
 *             pwrite in a lab with fenceCache "shared" (every fence record
 *             through the shared depot, the design before per-thread
 *             magazines), to show what the magazines bought; and the 64 B
 *             pwrite with the read/write fast path off (the full path in
 *             JavaScript around one engine copy), to show what the whole
 *             call in one engine call bought.
 *   devices   N devices, each copying its own 16 MiB (--quick 8 MiB)
 *             system-heap buffers, BATCH jobs in flight each (bench
 *             devices' copyRound); beside native memcpy on N pthreads, each
 *             its own buffers (bench/native/memcpy.c "threads").
 *   contend   the contention experiment's default mix (copy, checksum,
 *             fill; 64 KiB buffers; atomics waits) at N writers, N readers
 *             and N devices on 2N buffers, with --sharing 0 (every thread on
 *             buffers of its own); writer plus reader operations per second.
 *
 * Each row: aggregate throughput (calls/s, GB/s or ops/s) from the p50 of
 * its samples, scaling efficiency = throughput(N) / (N x throughput(1)),
 * and the speed ratio to its peer of the same N (>1 faster). Targets are
 * evaluated at the largest N measured (and N <= 8 for devices and contend)
 * and printed met/MISSED.
 *
 * Contract: runScaleBench() returns data and prints nothing; progress goes
 * to onProgress. Every wait is bounded. However the run ends, the threads
 * are terminated, their /dev/shm files unlinked, the devices shut down, the
 * buffers closed and the lab closed.
 */
import * as Comlink from "comlink";
import { unlinkSync } from "node:fs";
import os from "node:os";
import { Lab } from "../src/api/lab.js";
import type { DmaBuf } from "../src/api/dma_buf.js";
import type { Device } from "../src/devices/device.js";
import { DmaBufError } from "../src/errno.js";
import { runContend } from "../src/contend/run.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import { workerUrl } from "../src/thread/host.js";
import { spawnWorker, type SpawnedWorker } from "../src/thread/spawn.js";
import { machineInfo, summarize, type MachineInfo, type SampleStats, type TargetResult } from "../src/report.js";
import { budgetFor, fillPattern, sizeLabel } from "./harness.js";
import { BATCH, copyRound, makeCopier, sample, type Copier } from "./devices.js";
import { nativePeer, nativeCaseKey, runNative, type NativeBudget, type NativeCase, type NativeStatus } from "./native.js";
import {
  SCALE_CONTROL_BYTES, SCALE_READY, SCALE_START, SCALE_STOP,
  type ScaleJob, type ScaleOp, type ScalePath, type ScaleThreadApi, type ScaleThreadData,
} from "./scale_protocol.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const SETUP_MS = 30_000;
const RW_SIZES = [64, 64 * KiB] as const;
const RW_OPS: readonly ScaleOp[] = ["pwrite", "pread"];

export type ScaleSection = "rw" | "devices" | "contend";
export type ScaleUnit = "calls/s" | "GB/s" | "ops/s";

export interface ScaleBenchOptions {
  quick?: boolean;
  /** Run the native C peer (default true). */
  native?: boolean;
  /** The largest N (default os.availableParallelism()). */
  maxThreads?: number;
}

export interface ScaleRow {
  section: ScaleSection;
  /** What is measured, without N: "uapi pwrite 64 B", "fs pwrite 64 B", "devices 16 MiB", ... */
  method: string;
  /** The lab's rows and their peers (the kernel's fs path, native memcpy). */
  kind: "lab" | "peer";
  /** Rows of one series share it: the lab row and its peer have the same `case`. */
  case: string;
  threads: number;
  unit: ScaleUnit;
  /** Aggregate throughput over all N, in `unit`, from the p50. */
  throughput: number;
  /** throughput(N) / (N x throughput(1)) of the same method. */
  efficiency: number | null;
  /** Lab rows: speed against the peer of the same case and N (>1 faster). */
  vsPeer: number | null;
  /** Per-operation time of the aggregate (ns per call, copy or operation): 1e9 / rate per sample. */
  stats: SampleStats;
}

export interface ScaleBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  threads: number[];
  windowMs: number;
  rounds: number;
  copyBytes: number;
  load: { start: number; end: number };
  native: NativeStatus;
  rows: ScaleRow[];
  targets: TargetResult[];
  notes: string[];
  durationMs: number;
}

export type ScaleBenchProgress = { index: number; total: number; label: string } | { index: -1; total: 0; label: string };

/** 1, 2, 4, ... below max, then max. */
export function threadCounts(max: number): number[] {
  const out: number[] = [];
  for (let n = 1; n < max; n *= 2) out.push(n);
  out.push(max);
  return out;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DmaBufError("ETIMEDOUT", "bench_scale", `${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Thread {
  worker: SpawnedWorker;
  api: Comlink.Remote<ScaleThreadApi>;
  shmFile: string;
}

/** The rw section's threads and their control words; windows open and close them together. */
class Threads {
  private readonly control = new Int32Array(new SharedArrayBuffer(SCALE_CONTROL_BYTES));
  private generation = 0;
  readonly list: Thread[] = [];
  private static sets = 0;
  /** Names this set's threads and files apart from another set's. */
  private readonly tag = `${Threads.sets++}-`;

  async spawn(lab: Lab, count: number): Promise<void> {
    for (let i = this.list.length; i < count; i++) {
      const name = `bench-scale-${i}`;
      const data: ScaleThreadData = {
        handle: lab.share(), name, control: this.control.buffer as SharedArrayBuffer,
        shmFile: `/dev/shm/dmabuf-lab-bench-scale-${process.pid}-${this.tag}${i}`, maxBytes: Math.max(...RW_SIZES),
      };
      const worker = await spawnWorker(workerUrl("bench-scale"), data, name);
      this.list.push({ worker, api: Comlink.wrap<ScaleThreadApi>(worker.endpoint), shmFile: data.shmFile });
    }
  }

  job(path: ScalePath, op: ScaleOp, bytes: number): ScaleJob {
    return { path, op, bytes, batch: bytes <= 4 * KiB ? 256 : 8, generation: ++this.generation, timeoutMs: SETUP_MS };
  }

  /** Checks the job's bytes on each of the first n threads. */
  async prepare(n: number, path: ScalePath, op: ScaleOp, bytes: number): Promise<void> {
    const job = this.job(path, op, bytes);
    await within(Promise.all(this.list.slice(0, n).map((t) => t.api.prepare(job))), SETUP_MS, "preparing the threads");
  }

  /** One window of the first n threads: ns per call of the aggregate. */
  async window(n: number, path: ScalePath, op: ScaleOp, bytes: number, windowMs: number): Promise<number> {
    const job = this.job(path, op, bytes);
    Atomics.store(this.control, SCALE_READY, 0);
    const runs = Promise.all(this.list.slice(0, n).map((t) => t.api.run(job)));
    runs.catch(() => {});
    const deadline = performance.now() + SETUP_MS;
    const ready = async () => {
      while (Atomics.load(this.control, SCALE_READY) < n) {
        if (performance.now() > deadline) throw new DmaBufError("ETIMEDOUT", "bench_scale", `${n} threads were not ready within ${SETUP_MS} ms`);
        await sleep(1);
      }
    };
    await Promise.race([ready(), runs]);
    // START and STOP: seq-cst stores the threads read with Atomics.load; the
    // generation makes every window's value new.
    Atomics.store(this.control, SCALE_START, job.generation);
    Atomics.notify(this.control, SCALE_START);
    await sleep(windowMs);
    Atomics.store(this.control, SCALE_STOP, job.generation);
    const got = await within(runs, SETUP_MS, "the threads' window");
    const rate = got.reduce((a, r) => a + (r.elapsedMs > 0 ? (r.calls * 1000) / r.elapsedMs : 0), 0);
    return 1e9 / rate;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.list.splice(0).map(async (t) => {
      try {
        await within(t.api.close(), 5000, "closing a thread");
      } finally {
        t.api[Comlink.releaseProxy]();
        await t.worker.terminate();
        try { unlinkSync(t.shmFile); } catch { /* closed it itself */ }
      }
    }));
  }
}

export async function runScaleBench(options: ScaleBenchOptions = {}, onProgress: (e: ScaleBenchProgress) => void = () => {}): Promise<ScaleBenchResult> {
  const started = performance.now();
  const quick = options.quick ?? false;
  const maxThreads = options.maxThreads ?? os.availableParallelism();
  if (!Number.isSafeInteger(maxThreads) || maxThreads < 1 || maxThreads > 64) {
    throw new DmaBufError("EINVAL", "bench_scale", `the largest thread count ${maxThreads} must be an integer in 1..64`);
  }
  const ns = threadCounts(maxThreads);
  const windowMs = quick ? 60 : 200;
  const rounds = quick ? 3 : 5;
  const copyBytes = quick ? 8 * MiB : 16 * MiB;
  const contendMs = quick ? 400 : 1500;
  const budget = budgetFor(quick);
  const loadStart = os.loadavg()[0];
  const notes: string[] = [];
  installErrorTransfer();

  const rwCases = RW_SIZES.flatMap((bytes) => RW_OPS.map((op) => ({ op, bytes })));
  const total = 1 + ns.length * rwCases.length + ns.length * 2;
  let index = 0;
  const progress = (label: string) => onProgress({ index: index++, total, label });

  progress(options.native ?? true ? "building the native memcpy peer (bench/native/memcpy.c)" : "no native memcpy peer (--no-native)");
  const { native, binary } = await nativePeer(options.native ?? true);

  const poolBytes = Math.ceil((maxThreads * 2 * copyBytes + 32 * MiB) / (2 * MiB)) * 2 * MiB;
  const lab = await Lab.create({ memoryBytes: poolBytes + 2 * copyBytes + 64 * MiB, poolBytes });
  const threads = new Threads();
  const beforeThreads = new Threads();
  let before: Lab | undefined;
  const devices: Device[] = [];
  const bufs: DmaBuf[] = [];
  const samples = new Map<string, { row: Omit<ScaleRow, "throughput" | "efficiency" | "vsPeer" | "stats">; ns: number[] }>();
  const add = (row: Omit<ScaleRow, "throughput" | "efficiency" | "vsPeer" | "stats">, got: number[]) => {
    const key = `${row.method}|${row.threads}`;
    const s = samples.get(key) ?? { row, ns: [] };
    s.ns.push(...got);
    samples.set(key, s);
  };
  const pattern = lab.alloc(copyBytes, { align: 4096, zero: false });
  const back = lab.alloc(copyBytes, { align: 4096 });
  try {
    // ---- rw: the uapi against the kernel's fs path, window by window ----------
    // The steps row: the same 64 B pwrite in a lab whose fence records go
    // through the shared depot only (the design before per-thread magazines).
    before = await Lab.create({ memoryBytes: 64 * MiB, fenceCache: "shared" });
    await threads.spawn(lab, maxThreads);
    await beforeThreads.spawn(before, maxThreads);
    for (const n of ns) {
      for (const { op, bytes } of rwCases) {
        const c = `${op} ${sizeLabel(bytes)}`;
        const variants: { path: ScalePath; set: Threads; method: string }[] = [
          { path: "uapi", set: threads, method: `uapi ${c}` }, { path: "fs", set: threads, method: `fs ${c}` },
          ...(op === "pwrite" && bytes === 64 ? [
            { path: "uapi" as const, set: beforeThreads, method: `uapi ${c}, shared fence cache` },
            { path: "uapi-full" as const, set: threads, method: `uapi ${c}, full path (fast path off)` },
          ] : []),
        ];
        progress(`rw x${n}: ${c}, ${variants.map((v) => v.method.replace(` ${c}`, "")).join(", ")}`);
        for (const v of variants) {
          await v.set.prepare(n, v.path, op, bytes);
          await v.set.window(n, v.path, op, bytes, windowMs / 2); // warm-up, not counted
        }
        for (let r = 0; r < rounds; r++) {
          for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
            const row = { section: "rw" as const, method: v.method, kind: v.path === "fs" ? "peer" as const : "lab" as const,
              case: c, threads: n, unit: "calls/s" as const };
            add(row, [await v.set.window(n, v.path, op, bytes, windowMs)]);
          }
        }
      }
    }
    await threads.close();
    await beforeThreads.close();

    // ---- devices: N devices against memcpy on N pthreads ------------------------
    fillPattern(pattern, 7);
    const copiers: Copier[] = [];
    const roundBudget: NativeBudget = { ...budget, timeMs: budget.timeMs / 2, minSamples: Math.ceil(budget.minSamples / 2) };
    const c = `copy ${sizeLabel(copyBytes)}`;
    for (const n of ns) {
      progress(`devices x${n} and native memcpy x${n}: ${sizeLabel(copyBytes)} copies`);
      // One at a time: spawnDevice() calls racing for the lab's first watchdog would each start one.
      while (devices.length < n) {
        const dev = await lab.spawnDevice({ name: `bench-scale-dev-${devices.length}`, jobTimeoutMs: 10_000 });
        devices.push(dev);
        copiers.push(await makeCopier(lab, dev, copyBytes, pattern, back, bufs));
      }
      const nc: NativeCase = { kind: "threads", bytes: copyBytes, threads: n, batch: BATCH };
      for (let r = 0; r < 2; r++) {
        if (binary !== undefined) {
          const run = await runNative(binary, [nc], roundBudget);
          const got = run.status === "ran" ? run.results.get(nativeCaseKey(nc)) : undefined;
          if (got === undefined) notes.push(`native x${n}: ${run.status === "failed" ? run.reason : "no result"}`);
          else add({ section: "devices", method: `native memcpy ${sizeLabel(copyBytes)}`, kind: "peer", case: c, threads: n, unit: "GB/s" }, got.samples);
        }
        add({ section: "devices", method: `devices ${sizeLabel(copyBytes)}`, kind: "lab", case: c, threads: n, unit: "GB/s" },
          sample(roundBudget, () => copyRound(lab, copiers.slice(0, n))));
      }
    }
    await Promise.all(devices.splice(0).map((d) => d.shutdown({ drain: false })));

    // ---- contend: the default mix at N writers, N readers, N devices ---------------
    for (const n of ns) {
      progress(`contend x${n}: ${n} writers, ${n} readers, ${n} devices on ${2 * n} buffers, sharing 0`);
      const got: number[] = [];
      for (let r = 0; r < (quick ? 1 : 2); r++) {
        const result = await runContend({ writers: n, readers: n, devices: n, buffers: 2 * n, sharing: 0, durationMs: contendMs });
        if (result.tornReads !== 0) throw new DmaBufError("EIO", "bench_scale", `contend x${n}: ${result.tornReads} torn reads with fences`);
        const ops = result.roles.filter((x) => x.role === "writer" || x.role === "reader").reduce((a, x) => a + x.opsPerSec, 0);
        got.push(1e9 / ops);
      }
      add({ section: "contend", method: "contend writers + readers", kind: "lab", case: "contend", threads: n, unit: "ops/s" }, got);
    }
    if (binary === undefined) notes.push(`native memcpy skipped: ${native.reason}`);
  } finally {
    await threads.close();
    await beforeThreads.close();
    before?.close();
    const stopped = await Promise.allSettled(devices.map((d) => d.shutdown({ drain: false })));
    for (const b of bufs) b.close();
    lab.free(pattern);
    lab.free(back);
    lab.close();
    const failed = stopped.find((s) => s.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  const rows = scaleRows([...samples.values()], copyBytes);
  notes.push(
    `rw: each thread has its own Process, dma-buf and arena buffer (uapi) or /dev/shm file (fs); a sample is one ${windowMs} ms ` +
      "window of all N threads calling at once, the aggregate the sum of each thread's calls per second of its own window.",
    `devices: ${BATCH} jobs in flight per device, submitted from this thread; native: N pthreads with their own buffers.`,
    `contend: ${contendMs} ms per run, the default job mix and waits, --sharing 0; writer plus reader operations per second.`,
    `${os.availableParallelism()} CPUs: at N = ${maxThreads} the lab's threads share them with this thread and the lab's watchdog.`,
  );
  return {
    machine: machineInfo(native.compiler), date: new Date().toISOString(), quick, threads: ns, windowMs, rounds, copyBytes,
    load: { start: loadStart, end: os.loadavg()[0] }, native, rows, targets: evaluateScaleTargets(rows, native), notes,
    durationMs: Math.round(performance.now() - started),
  };
}

/** Rows from pooled samples: throughput from the p50, efficiency against N = 1, ratio to the peer. */
export function scaleRows(pooled: { row: Omit<ScaleRow, "throughput" | "efficiency" | "vsPeer" | "stats">; ns: number[] }[],
  copyBytes: number): ScaleRow[] {
  const rows: ScaleRow[] = pooled.map(({ row, ns }) => {
    const stats = summarize(ns);
    const throughput = row.unit === "GB/s" ? copyBytes / stats.p50Ns : 1e9 / stats.p50Ns;
    return { ...row, throughput, efficiency: null, vsPeer: null, stats };
  });
  for (const r of rows) {
    const one = rows.find((o) => o.method === r.method && o.threads === 1);
    if (one !== undefined) r.efficiency = r.throughput / (r.threads * one.throughput);
    const peer = rows.find((p) => p.kind === "peer" && p.case === r.case && p.threads === r.threads);
    if (r.kind === "lab" && peer !== undefined) r.vsPeer = r.throughput / peer.throughput;
  }
  return rows;
}

export function evaluateScaleTargets(rows: ScaleRow[], native: NativeStatus): TargetResult[] {
  const find = (method: string, n: number) => rows.find((r) => r.method === method && r.threads === n);
  const maxN = Math.max(...rows.map((r) => r.threads));
  const x = (v: number | null | undefined) => (v === null || v === undefined ? "-" : `${v.toFixed(2)}x`);
  const M = (r: ScaleRow | undefined) => (r === undefined ? "-" : `${(r.throughput / 1e6).toFixed(2)} M calls/s`);
  const out: TargetResult[] = [];

  const w = find("uapi pwrite 64 B", maxN);
  out.push({
    id: "pwrite-64-scaling", description: `64 B pwrite, scaling efficiency at ${maxN} threads`, threshold: ">= 0.70",
    measured: w?.efficiency ?? null, unit: "", met: w?.efficiency == null ? null : w.efficiency >= 0.7,
    detail: `uapi ${M(find("uapi pwrite 64 B", 1))} at 1 thread, ${M(w)} at ${maxN}; fs ${M(find("fs pwrite 64 B", 1))} -> ` +
      `${M(find("fs pwrite 64 B", maxN))} (efficiency ${find("fs pwrite 64 B", maxN)?.efficiency?.toFixed(2) ?? "-"})`,
  });
  out.push({
    id: "pwrite-64-vs-fs", description: `64 B pwrite, aggregate at ${maxN} threads against fs.writeSync on as many`,
    threshold: ">= 1.00x fs", measured: w?.vsPeer ?? null, unit: "x fs", met: w?.vsPeer == null ? null : w.vsPeer >= 1,
    detail: `${M(w)} vs ${M(find("fs pwrite 64 B", maxN))}`,
  });
  const w1 = find("uapi pwrite 64 B", 1);
  const cost = w1?.vsPeer ? 1 / w1.vsPeer : null;
  out.push({
    id: "pwrite-64-cost", description: "64 B pwrite, one thread: cost against fs.writeSync (ns per call)",
    threshold: "<= 0.50x fs (stretch 0.30x)", measured: cost, unit: "x fs cost", met: cost === null ? null : cost <= 0.5,
    detail: `${w1 ? w1.stats.p50Ns.toFixed(0) : "-"} ns vs ${find("fs pwrite 64 B", 1)?.stats.p50Ns.toFixed(0) ?? "-"} ns; ` +
      `with the fast path off ${find("uapi pwrite 64 B, full path (fast path off)", 1)?.stats.p50Ns.toFixed(0) ?? "-"} ns`,
  });

  const dev = rows.filter((r) => r.section === "devices" && r.kind === "lab" && r.threads <= 8 && r.vsPeer !== null);
  const worst = dev.reduce<ScaleRow | undefined>((a, r) => (a === undefined || r.vsPeer! < a.vsPeer! ? r : a), undefined);
  out.push({
    id: "devices-vs-native", description: "N devices against native memcpy on N threads, worst N <= 8", threshold: ">= 0.90x native",
    measured: worst?.vsPeer ?? null, unit: "x native", met: worst === undefined ? null : worst.vsPeer! >= 0.9,
    detail: worst === undefined ? `not measured: ${native.reason ?? "no native rows"}`
      : dev.map((r) => `x${r.threads} ${r.throughput.toFixed(1)} GB/s (${x(r.vsPeer)})`).join(", "),
  });

  const cn = Math.max(...rows.filter((r) => r.section === "contend" && r.threads <= 8).map((r) => r.threads));
  const ct = find("contend writers + readers", cn);
  out.push({
    id: "contend-scaling", description: `contend --sharing 0, writers + readers: scaling efficiency at N = ${cn}`, threshold: ">= 0.60",
    measured: ct?.efficiency ?? null, unit: "", met: ct?.efficiency == null ? null : ct.efficiency >= 0.6,
    detail: `${ct ? (ct.throughput / 1e3).toFixed(1) : "-"} k ops/s at N = ${cn}, ` +
      `${((find("contend writers + readers", 1)?.throughput ?? NaN) / 1e3).toFixed(1)} k at N = 1` +
      (cn < 8 ? "; the target is stated at N = 8, which this machine cannot reach" : ""),
  });
  return out;
}

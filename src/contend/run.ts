/*
 * The contention experiment (`dmabuf-lab contend`, issue 5 section 5): CPU
 * writer and reader threads and device workers hammer a few shared dma-bufs
 * at once, and every reader checks that it saw one whole generation.
 *
 * runContend(options, onProgress):
 *   1. a lab of its own (Lab.create({ coherent }), sized for the run), the
 *      shared buffers on the heap, the control block (protocol.ts);
 *   2. the CPU threads (real workers, workers/contend-cpu.ts) and the
 *      devices (devices.ts: one device worker each, and with submitters
 *      "own" a submitter thread each, workers/contend-submitter.ts), all set
 *      up and ready;
 *   3. START; the host thread drives the devices (in rounds: a job submitted
 *      to every device, then each waited for, so that the devices run at
 *      once), or each submitter thread its own device, until the duration
 *      is over or every device did its iterations, reporting progress every
 *      PROGRESS_MS; then STOP, and the threads' results (each thread ends
 *      its current operation);
 *   4. the result: per role (writer, reader, device:KIND) operations and
 *      bytes per second over the run's wall time, the fence waits (p50, p90,
 *      p99, max and a percentile curve for charts), the resv lock
 *      statistics summed over the shared buffers, and the integrity verdict:
 *      `tornReads`, the reads (CPU reads and device checksums) that saw no
 *      whole generation, out of `checkedReads`.
 * With fences (the default) every access goes through implicit sync and
 * tornReads is 0: anything else is a bug in the lab. With bypassFences
 * nobody waits for or publishes fences (cpu.ts, devices.ts) and the tears
 * that happen are counted, not made up.
 *
 * Contract: returns data and prints nothing; progress goes to onProgress.
 * Bad options are EINVAL before anything starts (options.ts). However the
 * run ends, every worker is terminated, every device shut down, every
 * buffer put and the lab closed. Every wait is bounded (timeoutMs, or
 * SETUP_MS for starting and answering).
 */
import * as Comlink from "comlink";
import { DmaBufError } from "../errno.js";
import { Lab } from "../api/lab.js";
import type { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { nowMs } from "../memory/futex.js";
import type { MutexStats } from "../memory/mutex.js";
import type { TraceData } from "../trace/events.js";
import type { SanitizeReport } from "../sanitize/check.js";
import { installErrorTransfer } from "../thread/errors.js";
import { shippedWorker } from "../thread/host.js";
import type { ShippedWorker } from "../thread/entries.js";
import { spawnWorker, type SpawnedWorker } from "../thread/spawn.js";

import { ContendDevice, driveDevices, type DeviceDriver, type SubmitterCounts } from "./devices.js";
import { SANITIZE_BYTES, TRACE_BYTES, labBytes, resolveOptions, type ContendOptions, type ResolvedOptions } from "./options.js";
import {
  Control, controlBytes, type ContendCpuApi, type ContendSubmitterApi, type CpuRole, type CpuRunResult, type CpuThreadData,
} from "./protocol.js";
import { machineInfo, quantile, summarize, type MachineInfo, type SampleStats } from "../report.js";

/** summarize() of the waits (ns), with the percentiles 0, 1, ..., 100 for charts (empty without waits). */
export interface WaitSummary extends SampleStats {
  percentilesNs: number[];
}

export interface RoleResult {
  /** writer, reader, or device:copy, device:checksum, device:fill. */
  role: string;
  /** Threads (CPU roles) or devices playing it. */
  threads: number;
  ops: number;
  bytes: number;
  opsPerSec: number;
  bytesPerSec: number;
  /** Operations that checked what they read (reads, checksum jobs). */
  checked: number;
  tears: number;
  waits: WaitSummary;
}

export interface ContendResult {
  machine: MachineInfo;
  date: string;
  options: ResolvedOptions;
  /** Wall time from START to the last thread's end. */
  elapsedMs: number;
  roles: RoleResult[];
  /** The shared buffers' resv locks, summed. */
  locks: MutexStats;
  checkedReads: number;
  tornReads: number;
  /** With options.trace: every thread's and device's events from START to the end (chromeTrace() for JSON). */
  trace?: TraceData;
  /** With options.sanitize: the race detector's report over the whole run. */
  sanitize?: SanitizeReport;
}

/** Bound of spawning a thread or device and of a thread's answer once STOP is set (besides timeoutMs). */
const SETUP_MS = 30_000;
const PROGRESS_MS = 500;
/** How long a failed run lets its threads finish their operation, besides timeoutMs. */
const ENDING_MS = 2000;

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DmaBufError("ETIMEDOUT", "contend", `${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function waitSummary(samplesNs: readonly number[]): WaitSummary {
  const s = [...samplesNs].sort((a, b) => a - b);
  return { ...summarize(s), percentilesNs: s.length ? Array.from({ length: 101 }, (_, i) => quantile(s, i / 100)) : [] };
}

interface Thread<Api> {
  worker: SpawnedWorker;
  api: Comlink.Remote<Api>;
  /** Rejects when the worker ends before answering. */
  gone: Promise<never>;
}

interface CpuThread extends Thread<ContendCpuApi> {
  role: CpuRole;
  slot: number;
}

/** Spawns a worker of the run and waits for its hello(). */
async function spawnThread<Api extends { hello(): string }>(entry: ShippedWorker, data: unknown, name: string, threads: Thread<unknown>[]): Promise<Thread<Api>> {
  const worker = await spawnWorker(shippedWorker(entry), data, name);
  const api = Comlink.wrap<Api>(worker.endpoint);
  const gone = worker.exited.then(({ error }): never => {
    throw new DmaBufError("EIO", "contend", `${name} ended` + (error ? `: ${String(error)}` : ""));
  });
  gone.catch(() => {});
  const t: Thread<Api> = { worker, api, gone };
  threads.push(t as Thread<unknown>);
  await within(Promise.race([(api.hello as () => Promise<string>)(), gone]), SETUP_MS, name);
  return t;
}

export async function runContend(options: ContendOptions, onProgress: (message: string) => void = () => {}): Promise<ContendResult> {
  const o = resolveOptions(options);
  installErrorTransfer();
  const date = new Date().toISOString();
  const lab = await Lab.create({ coherent: o.coherent, memoryBytes: labBytes(o), sanitize: o.sanitize && { logBytes: SANITIZE_BYTES } });
  const buffers: DmaBufRecord[] = [];
  /** Each CPU thread's own buffer, then each device's own two (sharing < 1). */
  const own: DmaBufRecord[] = [];
  const threads: CpuThread[] = [];
  /** Every worker of the run (CPU and submitter threads), for the clean-up. */
  const all: Thread<unknown>[] = [];
  const devices: ContendDevice[] = [];
  /** The host's drivers (submitters "host"). */
  const drivers: DeviceDriver[] = [];
  const submitters: Thread<ContendSubmitterApi>[] = [];
  const cpus = o.writers + o.readers;
  const block = lab.alloc(controlBytes(cpus + (o.submitters === "own" ? o.devices : 0)));
  const control = new Control(lab.sync, block.byteOffset);
  let runs: Promise<CpuRunResult>[] = [];
  let failed = false;
  try {
    for (let i = 0; i < o.buffers; i++) buffers.push(lab.exporter(o.heap).alloc(o.size));
    const owners = o.sharing < 1 ? o.writers + o.readers + 2 * o.devices : 0;
    for (let i = 0; i < owners; i++) own.push(lab.exporter(o.heap).alloc(o.size));
    onProgress(`starting ${o.writers + o.readers} CPU threads and ${o.devices} device workers`);
    const roles: CpuRole[] = [...Array<CpuRole>(o.writers).fill("writer"), ...Array<CpuRole>(o.readers).fill("reader")];
    // Settled, all of them, before a failure ends the run: none is left starting.
    const spawned = await Promise.allSettled(roles.map(async (role, slot) => {
      const index = role === "writer" ? slot : slot - o.writers;
      const data: CpuThreadData = {
        handle: lab.share(), role, index, slot, control: block.byteOffset,
        buffers: buffers.map((b) => b.offset), own: own.length ? [own[slot].offset] : [], sharing: o.sharing, size: o.size, chunks: o.chunks, wait: o.wait, bypassFences: o.bypassFences,
        iterations: o.iterations, timeoutMs: o.timeoutMs,
      };
      threads.push({ ...await spawnThread<ContendCpuApi>("contend-cpu", data, `contend-${role}-${index}`, all), role, slot });
    }));
    const refused = spawned.find((p): p is PromiseRejectedResult => p.status === "rejected");
    if (refused) throw refused.reason;
    for (let i = 0; i < o.devices; i++) {
      const d = await ContendDevice.create(lab, i, o, buffers, own.slice(cpus + 2 * i, own.length ? cpus + 2 * i + 2 : 0));
      devices.push(d);
      if (o.submitters === "host") drivers.push(d.driver(lab, i, o));
      else {
        submitters.push(await spawnThread<ContendSubmitterApi>("contend-submitter", {
          handle: lab.share(), index: i, slot: cpus + i, control: block.byteOffset, options: o, device: d.submitterData(),
        }, `contend-submitter-${i}`, all));
      }
    }

    runs = threads.map((t) => Promise.race([t.api.run(), t.gone]));
    for (const r of runs) r.catch(() => {});
    const submitted: Promise<SubmitterCounts[]>[] = submitters.map((t) => Promise.race([t.api.run(), t.gone]));
    for (const r of submitted) r.catch(() => {});
    onProgress(`running ${o.durationMs === null ? `${o.iterations} iterations` : `for ${o.durationMs} ms`}` +
      `${o.bypassFences ? ", fences BYPASSED" : ""}`);
    const t0 = nowMs();
    if (o.trace) lab.trace.start({ bufferBytes: TRACE_BYTES });
    control.start();
    const progress = (): void => onProgress(progressLine(control, threads, drivers, submitters.length, t0));
    await drive(o, drivers, t0, progress);
    const counts = await within(Promise.all(submitted), (o.durationMs ?? 0) + o.timeoutMs + SETUP_MS, "the submitter threads");
    // A duration ends every thread; iterations end each thread by its own
    // count (one that starts late, on a loaded machine, still does them all).
    if (o.durationMs !== null) control.stop();
    const results = await within(Promise.all(runs), o.timeoutMs + SETUP_MS, "the CPU threads");
    control.stop();
    const elapsedMs = nowMs() - t0;
    const trace = o.trace ? lab.trace.stop() : undefined;
    progress();
    if (o.sanitize) onProgress("checking the run's accesses for races");
    const sanitize = o.sanitize ? lab.sanitizer.report() : undefined;

    const roleResults = [
      ...cpuRoles(control, threads, results, elapsedMs),
      ...(devices.length === 0 ? [] : o.jobs.map((kind) => {
        const cs = [...drivers.map((d) => d.report()), ...counts].map((r) => r.find((c) => c.kind === kind)!);
        const sum = (f: (c: SubmitterCounts) => number) => cs.reduce((a, c) => a + f(c), 0);
        return role(`device:${kind}`, devices.length, sum((c) => c.ops), sum((c) => c.bytes),
          kind === "checksum" ? sum((c) => c.ops) : 0, sum((c) => c.tears), cs.flatMap((c) => Array.from(c.waitsNs)), elapsedMs);
      })),
    ];
    const locks = buffers.map((b) => b.resv.lockStats()).reduce(
      (a, s) => ({ acquisitions: a.acquisitions + s.acquisitions, contended: a.contended + s.contended, waitMs: a.waitMs + s.waitMs }),
      { acquisitions: 0, contended: 0, waitMs: 0 });
    return {
      machine: machineInfo(), date, options: o, elapsedMs, roles: roleResults, locks,
      checkedReads: roleResults.reduce((a, r) => a + r.checked, 0),
      tornReads: roleResults.reduce((a, r) => a + r.tears, 0),
      ...(trace === undefined ? {} : { trace }),
      ...(sanitize === undefined ? {} : { sanitize }),
    };
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    // STOP, then the devices (their pending jobs fail, which wakes any thread
    // waiting for one), then the threads once their operation is over (a
    // thread ended inside a resv critical section would leave its lock held).
    control.stop();
    if (lab.trace.recording) lab.trace.stop();
    const ends = await Promise.allSettled(devices.map((d) => d.shutdown()));
    for (const d of drivers) d.release();
    await within(Promise.allSettled(runs), o.timeoutMs + ENDING_MS, "the CPU threads").catch(() => {});
    ends.push(...await Promise.allSettled(all.map(async (t) => {
      t.api[Comlink.releaseProxy]();
      await t.worker.terminate();
    })));
    for (const b of [...buffers, ...own]) b.put();
    lab.free(block);
    lab.close();
    // A failed clean-up is the run's error, unless the run failed first.
    const end = ends.find((e): e is PromiseRejectedResult => e.status === "rejected");
    if (end && !failed) throw end.reason;
  }
}

/** The host's part: device jobs in turn (submitters "host"), or the duration waited out, with progress. */
async function drive(o: ResolvedOptions, drivers: DeviceDriver[], t0: number, progress: () => void): Promise<void> {
  const end = o.durationMs === null ? Infinity : t0 + o.durationMs;
  let next = t0 + PROGRESS_MS;
  const tick = () => {
    if (nowMs() < next) return;
    progress();
    next += PROGRESS_MS;
  };
  if (drivers.length > 0) return driveDevices(o, drivers, t0, tick);
  // Nothing to drive here: wait out the duration; with iterations the
  // threads count their own, and their answers end the run.
  if (o.durationMs === null) return;
  while (nowMs() < end) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(PROGRESS_MS / 5, end - nowMs())));
    tick();
  }
}

function progressLine(control: Control, threads: CpuThread[], drivers: DeviceDriver[], submitters: number, t0: number): string {
  const count = (role: CpuRole) => threads.filter((t) => t.role === role).map((t) => control.counters(t.slot))
    .reduce((a, c) => ({ ops: a.ops + c.ops, tears: a.tears + c.tears }), { ops: 0, tears: 0 });
  const w = count("writer");
  const r = count("reader");
  // The submitter threads' slots follow the CPU threads'.
  const jobs = [...drivers.map((d) => d.totals()), ...Array.from({ length: submitters }, (_, i) => control.counters(threads.length + i))];
  return `at ${((nowMs() - t0) / 1000).toFixed(1)} s: ${w.ops} writes, ${r.ops} reads, ` +
    `${jobs.reduce((a, c) => a + c.ops, 0)} device jobs; ${r.tears + jobs.reduce((a, c) => a + c.tears, 0)} torn`;
}

function role(name: string, threads: number, ops: number, bytes: number, checked: number, tears: number,
  waitsNs: number[], elapsedMs: number): RoleResult {
  const s = elapsedMs / 1000;
  return { role: name, threads, ops, bytes, opsPerSec: ops / s, bytesPerSec: bytes / s, checked, tears, waits: waitSummary(waitsNs) };
}

function cpuRoles(control: Control, threads: CpuThread[], results: CpuRunResult[], elapsedMs: number): RoleResult[] {
  return (["writer", "reader"] as const).flatMap((name) => {
    const mine = threads.map((t, i) => ({ t, r: results[i] })).filter(({ t }) => t.role === name);
    if (mine.length === 0) return [];
    const cs = mine.map(({ t }) => control.counters(t.slot));
    const ops = cs.reduce((a, c) => a + c.ops, 0);
    return [role(name, mine.length, ops, cs.reduce((a, c) => a + c.bytes, 0), name === "reader" ? ops : 0,
      cs.reduce((a, c) => a + c.tears, 0), mine.flatMap(({ r }) => Array.from(r.waitsNs)), elapsedMs)];
  });
}

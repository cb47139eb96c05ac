/*
 * The contention experiment's parameters (`dmabuf-lab contend`): what runs,
 * on what, for how long, and how its threads wait.
 *
 *   writers, readers   CPU threads (workers/contend-cpu.ts), 0..64 each
 *   devices            device workers (lab.spawnDevice), 0..16
 *   buffers, size      shared dma-bufs on `heap`; size a multiple of 4 KiB
 *                      (4 KiB..64 MiB), the unit every role moves at once
 *   sharing            0..1: the fraction of each thread's and device's
 *                      operations that go to the shared buffers; the rest go
 *                      to buffers of its own (one per CPU thread, two per
 *                      device), so that the lab's own contention can be told
 *                      from the protocol's (default 1: everything shared)
 *   durationMs         how long the run lasts, or
 *   iterations         how many operations each thread and device does
 *                      (exactly one of the two; default: 2000 ms)
 *   jobs               the device job mix, taken in turn: copy, checksum, fill
 *   wait               how a thread waits for a fence: atomics, spin,
 *                      postMessage (src/contend/wait.ts)
 *   coherent           Lab.create({ coherent })
 *   bypassFences       skip implicit sync everywhere (see run.ts)
 *   chunks             pieces a writer writes its payload in (1..1024)
 *   timeoutMs          the bound of every wait in the run
 *   sanitize           Lab.create({ sanitize }): the race detector records
 *                      every access; the result carries its report
 *   submitters         who submits the device jobs: "host" (default), the
 *                      host thread for every device in rounds, or "own", a
 *                      submitter thread per device (a DeviceHandle in a
 *                      worker), so that one thread does not cap the devices
 * Contract: resolveOptions() validates everything before anything starts:
 * a bad value is EINVAL (syscall "contend") with a message naming it.
 */
import { DmaBufError } from "../errno.js";
import { MAX_MEMORY_BYTES } from "../memory/layout.js";
import { heapNames, type HeapName } from "../dmabuf/heap.js";

export const jobKinds = ["copy", "checksum", "fill"] as const;
export type JobKind = (typeof jobKinds)[number];
export const waitStrategies = ["atomics", "spin", "postMessage"] as const;
export const submitterModes = ["host", "own"] as const;
export type SubmitterMode = (typeof submitterModes)[number];
export type WaitStrategy = (typeof waitStrategies)[number];

export interface ContendOptions {
  writers?: number;
  readers?: number;
  devices?: number;
  buffers?: number;
  sharing?: number;
  size?: number;
  heap?: HeapName;
  durationMs?: number;
  iterations?: number;
  jobs?: JobKind[];
  wait?: WaitStrategy;
  coherent?: boolean;
  bypassFences?: boolean;
  chunks?: number;
  timeoutMs?: number;
  /** Record a trace of the run (every thread and device: src/trace); the result carries it. */
  trace?: boolean;
  /** Run the race detector (src/sanitize); the result carries its report. */
  sanitize?: boolean;
  /** Who submits the device jobs: the host thread ("host", default) or a thread per device ("own"). */
  submitters?: SubmitterMode;
}

export type ResolvedOptions = Required<Omit<ContendOptions, "durationMs" | "iterations">> &
  { durationMs: number | null; iterations: number | null };

const KiB = 1024;

export const defaults = {
  writers: 2, readers: 2, devices: 1, buffers: 4, sharing: 1, size: 64 * KiB, heap: "system" as HeapName, durationMs: 2000,
  jobs: [...jobKinds] as JobKind[], wait: "atomics" as WaitStrategy, coherent: true, bypassFences: false, chunks: 8,
  timeoutMs: 5000, trace: false, sanitize: false, submitters: "host" as SubmitterMode,
};

const bad = (message: string) => new DmaBufError("EINVAL", "contend", message);

function integer(name: string, v: number, min: number, max: number): number {
  if (!Number.isSafeInteger(v) || v < min || v > max) throw bad(`${name} ${v} must be an integer in ${min}..${max}`);
  return v;
}

function fraction(name: string, v: number): number {
  if (typeof v !== "number" || !(v >= 0 && v <= 1)) throw bad(`${name} ${v} must be a number in 0..1`);
  return v;
}

/**
 * Whether operation k of a thread goes to the shared buffers: exactly
 * floor(k x sharing) of its first k operations do, spread evenly (the
 * Bresenham step), so a run's split is the asked one without a random draw.
 */
export const sharedAt = (sharing: number, k: number): boolean => Math.floor((k + 1) * sharing) > Math.floor(k * sharing);

function oneOf<T extends string>(name: string, v: T, allowed: readonly string[]): T {
  if (!allowed.includes(v)) throw bad(`${name} '${v}' is not one of ${allowed.join(", ")}`);
  return v;
}

export function resolveOptions(o: ContendOptions): ResolvedOptions {
  const d = defaults;
  if (o.durationMs !== undefined && o.iterations !== undefined) {
    throw bad(`a duration (${o.durationMs} ms) and iterations (${o.iterations}) were both given: choose one`);
  }
  const r: ResolvedOptions = {
    writers: integer("writers", o.writers ?? d.writers, 0, 64),
    readers: integer("readers", o.readers ?? d.readers, 0, 64),
    devices: integer("devices", o.devices ?? d.devices, 0, 16),
    buffers: integer("buffers", o.buffers ?? d.buffers, 1, 256),
    sharing: fraction("sharing", o.sharing ?? d.sharing),
    size: integer("size", o.size ?? d.size, 4 * KiB, 64 * KiB * KiB),
    heap: oneOf("heap", o.heap ?? d.heap, heapNames),
    durationMs: o.iterations === undefined ? integer("duration (ms)", o.durationMs ?? d.durationMs, 1, 3_600_000) : null,
    iterations: o.iterations === undefined ? null : integer("iterations", o.iterations, 1, 1e9),
    jobs: o.jobs ?? d.jobs,
    wait: oneOf("wait strategy", o.wait ?? d.wait, waitStrategies),
    coherent: o.coherent ?? d.coherent,
    bypassFences: o.bypassFences ?? d.bypassFences,
    chunks: integer("chunks", o.chunks ?? d.chunks, 1, 1024),
    timeoutMs: integer("timeout (ms)", o.timeoutMs ?? d.timeoutMs, 1, 600_000),
    trace: o.trace ?? d.trace,
    sanitize: o.sanitize ?? d.sanitize,
    submitters: oneOf("submitters", o.submitters ?? d.submitters, submitterModes),
  };
  if (r.size % (4 * KiB) !== 0) throw bad(`size ${r.size} must be a multiple of 4 KiB (whole pages)`);
  if (r.jobs.length === 0) throw bad("the job mix is empty (expected some of copy, checksum, fill)");
  for (const j of r.jobs) oneOf("job", j, jobKinds);
  if (r.writers + r.readers + r.devices === 0) throw bad("nothing to run: no writers, readers or devices");
  if (labBytes(r) > MAX_MEMORY_BYTES) {
    throw bad(`${r.buffers} buffers of ${r.size} bytes with ${r.writers + r.readers} CPU threads and ${r.devices} devices ` +
      `need a lab of ${labBytes(r)} bytes, more than the ${MAX_MEMORY_BYTES} an arena can have: use fewer or smaller buffers`);
  }
  return r;
}

const MiB = KiB * KiB;

/** A traced run's trace buffer per thread. */
export const TRACE_BYTES = 16 * MiB;
/** A sanitized run's log per thread (about 50k accesses). */
export const SANITIZE_BYTES = 4 * MiB;

/** Each device's IOVA space: every shared buffer and its own (two more with sharing < 1), mapped at once, with room to spare. */
export function iovaBytes(o: ResolvedOptions): number {
  return Math.max(256 * MiB, Math.ceil(((o.buffers + 4) * o.size + MiB) / (4 * KiB)) * 4 * KiB);
}

/** A lab with room for the buffers, the devices' page tables and everyone's own memory (the page pool is half of it). */
export function labBytes(o: ResolvedOptions): number {
  const own = o.sharing < 1 ? o.writers + o.readers + 2 * o.devices : 0;
  const pages = (o.buffers + own + o.devices) * o.size + o.devices * (4096 + iovaBytes(o) / 512);
  // A traced run: each thread (the host and the watchdog too) may fill TRACE_BYTES of user memory.
  const threads = o.writers + o.readers + o.devices * (o.submitters === "own" ? 2 : 1) + 2;
  const traces = o.trace ? threads * TRACE_BYTES : 0;
  // A sanitized run: each thread may fill SANITIZE_BYTES, plus the record-clock table (a u32 per 64 sync bytes).
  const logs = o.sanitize ? threads * SANITIZE_BYTES + MiB : 0;
  const user = (threads + (o.coherent ? 0 : 2 * (o.buffers + o.devices))) * o.size + traces + logs;
  return Math.max(32 * MiB, Math.ceil((2.5 * Math.max(pages, user) + 16 * MiB) / (2 * MiB)) * 2 * MiB);
}

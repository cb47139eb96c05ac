/*
 * The hand-off benchmark (`dmabuf-lab bench handoff`): a frame handed from
 * the main thread to a worker and back, the way an embedder would write it,
 * for every way of doing so in the same run:
 *
 *   raw                  the floor: a SharedArrayBuffer payload, a SEQ word
 *                        (Atomics.store + notify) and an ACK word the main
 *                        thread Atomics.wait()s on
 *   postMessage          the payload ArrayBuffer cloned into the message;
 *                        a small message back
 *   postMessage-transfer the ArrayBuffer transferred there and back
 *   comlink-transfer     a comlink call with the ArrayBuffer transferred,
 *                        returned transferred
 *   lab-rw               a buffer queue of one cma dma-buf: the producer
 *                        fills arena memory and write()s it, the consumer
 *                        read()s it into arena memory; acquire/release signal
 *   lab-mmap-sync        the same queue, both sides on the mapping inside
 *                        DMA_BUF_IOCTL_SYNC (beginCpuAccess/endCpuAccess)
 *   lab-queue            the same queue, both sides on the mapping (one
 *                        contiguous view): the queue alone orders them
 *
 * A round: the producer writes every word of the payload (round k's
 * pattern), hands it over; the consumer checks every word and acknowledges;
 * the round ends when the producer has the acknowledgement. Payloads 4 KiB,
 * 64 KiB, 1 MiB, 16 MiB. Each (path, size) runs for the budget after a
 * warm-up, in several passes over the paths (every other one in reverse
 * order: a machine whose load changes affects every path alike), samples
 * pooled. Round trips/s = 1e9 / mean ns per round; p50/p99
 * of the round's duration; ratios against raw and postMessage-transfer of
 * the same size (from p50s, and from means). A check that fails anywhere
 * fails the run.
 *
 * Targets: the lab's best path >= 0.9x raw at every size; >= 1.2x
 * postMessage-transfer at 4 KiB.
 *
 * Contract: runHandoffBench() returns data and prints nothing (progress to
 * onProgress); every wait is bounded (TIMEOUT_MS); the workers are
 * terminated and the lab closed however the run ends.
 */
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Worker } from "node:worker_threads";
import { DmaBufError } from "../src/errno.js";
import { Lab } from "../src/api/lab.js";
import type { BufferQueue, QueueBuffer } from "../src/api/queue.js";
import { workerUrl } from "../src/thread/host.js";
import {
  durationLabel, machineInfo, machineLines, renderNotes, renderTargets, row, summarize,
  type Chart, type MachineInfo, type SampleStats, type TargetResult,
} from "../src/report.js";
import { sizeLabel } from "./harness.js";
import {
  RAW_ACK, RAW_CTRL_WORDS, RAW_SEQ, STOP_ROUND, checkPayload, fillPayload, paths,
  type HandoffApi, type HandoffData, type HandoffDone, type HandoffFrame, type HandoffPath, type HandoffStart,
} from "./handoff_protocol.js";

const KiB = 1024;
const MiB = 1024 * KiB;
export const handoffSizes = [4 * KiB, 64 * KiB, MiB, 16 * MiB];
const TIMEOUT_MS = 10_000;
const labPaths: HandoffPath[] = ["lab-rw", "lab-mmap-sync", "lab-queue"];
const wait = { timeoutMs: TIMEOUT_MS };

export interface HandoffOptions {
  /** Two short passes instead of six. */
  quick?: boolean;
  /** Payload sizes in bytes, multiples of 4 (default 4 KiB, 64 KiB, 1 MiB, 16 MiB). */
  sizes?: number[];
}

export interface HandoffBudget {
  /** Measured time per (path, size) in one pass, ms. */
  timeMs: number;
  warmupMs: number;
  /** At least this many measured rounds per (path, size) in one pass. */
  minRounds: number;
}

export interface HandoffRow {
  path: HandoffPath;
  bytes: number;
  roundTripsPerSec: number;
  /** ns per round trip. */
  stats: SampleStats;
  /** raw's p50 round trip over this path's, same size (the ratio the targets use: robust to a shared machine's load bursts). */
  vsRaw: number;
  /** Round trips/s (mean) over raw's, same size. */
  vsRawMean: number;
  /** postMessage-transfer's p50 round trip over this path's, same size. */
  vsTransfer: number;
}

export interface HandoffResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  budget: HandoffBudget;
  passes: number;
  sizes: number[];
  rows: HandoffRow[];
  targets: TargetResult[];
  notes: string[];
  durationMs: number;
}

export type HandoffProgress = { index: number; total: number; label: string };

/** One path's producer side: start a size, run round k, stop (the consumer's tally). */
interface Driver {
  start(bytes: number): Promise<void>;
  round(k: number): void | Promise<void>;
  stop(): Promise<{ rounds: number; bad: number }>;
}

const words = (v: Uint8Array | ArrayBuffer | SharedArrayBuffer, bytes: number): Int32Array =>
  v instanceof Uint8Array ? new Int32Array(v.buffer, v.byteOffset, bytes >> 2) : new Int32Array(v, 0, bytes >> 2);

/** Messages of one worker, one at a time, each bounded by TIMEOUT_MS. */
class Inbox {
  private readonly queue: unknown[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(readonly worker: Worker, readonly name: string) {
    worker.on("message", (m: { type: string; message?: string }) => {
      if (m.type === "error") this.failure ??= new Error(`${name}: ${m.message}`);
      else this.queue.push(m);
      this.wake?.();
    });
    worker.on("error", (e) => { this.failure ??= e; this.wake?.(); });
    worker.on("exit", (code) => { this.failure ??= new Error(`${name} exited (${code})`); this.wake?.(); });
  }

  async next<T extends { type: string }>(type: T["type"]): Promise<T> {
    const deadline = performance.now() + TIMEOUT_MS;
    for (;;) {
      if (this.failure) throw this.failure;
      const m = this.queue.shift() as T | undefined;
      if (m !== undefined) {
        if (m.type !== type) throw new Error(`${this.name}: expected '${type}', got '${m.type}'`);
        return m;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.name}: no '${type}' within ${TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      this.wake = undefined;
    }
  }
}

function rawDriver(inbox: Inbox, payload: SharedArrayBuffer, ctrlBuffer: SharedArrayBuffer): Driver {
  const ctrl = new Int32Array(ctrlBuffer);
  let view: Int32Array = new Int32Array(0);
  return {
    async start(bytes) {
      view = words(payload, bytes);
      Atomics.store(ctrl, RAW_SEQ, STOP_ROUND);
      Atomics.store(ctrl, RAW_ACK, STOP_ROUND);
      inbox.worker.postMessage({ type: "start", bytes } satisfies HandoffStart);
    },
    round(k) {
      fillPayload(view, k);
      Atomics.store(ctrl, RAW_SEQ, k);
      Atomics.notify(ctrl, RAW_SEQ);
      const deadline = performance.now() + TIMEOUT_MS;
      // Sleep only while ACK still holds the value just seen (else the consumer's notify could fall in between).
      for (let ack = Atomics.load(ctrl, RAW_ACK); ack !== k; ack = Atomics.load(ctrl, RAW_ACK)) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`raw: round ${k} not acknowledged within ${TIMEOUT_MS} ms`);
        Atomics.wait(ctrl, RAW_ACK, ack, left);
      }
    },
    async stop() {
      view[0] = STOP_ROUND;
      Atomics.store(ctrl, RAW_SEQ, Atomics.load(ctrl, RAW_SEQ) + 1);
      Atomics.notify(ctrl, RAW_SEQ);
      return inbox.next<HandoffDone>("done");
    },
  };
}

/** An ordinary ArrayBuffer payload, made once per size (postMessage and comlink paths). */
class Payload {
  data = new ArrayBuffer(0);
  bytes = 0;

  resize(n: number): void {
    this.bytes = n;
    this.data = new ArrayBuffer(n);
  }

  fill(k: number): ArrayBuffer {
    fillPayload(words(this.data, this.bytes), k);
    return this.data;
  }
}

function messageDriver(inbox: Inbox, transfer: boolean): Driver {
  const p = new Payload();
  return {
    async start(n) {
      p.resize(n);
    },
    async round(k) {
      const data = p.fill(k);
      inbox.worker.postMessage({ type: "frame", round: k, data } satisfies HandoffFrame, transfer ? [data] : []);
      const ack = await inbox.next<HandoffFrame>("frame");
      if (transfer) p.data = ack.data!;
    },
    async stop() {
      inbox.worker.postMessage({ type: "frame", round: STOP_ROUND } satisfies HandoffFrame);
      return inbox.next<HandoffDone>("done");
    },
  };
}

function comlinkDriver(api: Comlink.Remote<HandoffApi>): Driver {
  const p = new Payload();
  return {
    async start(n) {
      p.resize(n);
      await api.tally();
    },
    async round(k) {
      const data = p.fill(k);
      p.data = await api.check(k, Comlink.transfer(data, [data]));
    },
    stop: () => api.tally(),
  };
}

/** The lab paths: one cma buffer cycling; the acknowledgement of a round is its release (the next dequeue). */
function labDriver(lab: Lab, inbox: Inbox, path: HandoffPath): Driver {
  let q: BufferQueue | undefined;
  let b: QueueBuffer | undefined;
  let staging: Uint8Array | undefined;
  /** The payload's words, made once per size (the buffer's mapping, or the staging memory): no allocation per round. */
  let payload: Int32Array = new Int32Array(0);
  let bytes = 0;
  const close = () => {
    if (staging !== undefined) lab.free(staging);
    staging = undefined;
    q?.close();
    q = b = undefined;
  };
  return {
    async start(n) {
      close();
      bytes = n;
      q = lab.queue({ buffers: 1, size: n, heap: "cma" });
      if (path === "lab-rw") staging = lab.alloc(n, { zero: false });
      inbox.worker.postMessage({ type: "start", bytes: n, queue: q.share() } satisfies HandoffStart);
      b = q.dequeue(wait);
      payload = words(staging ?? b.view, n);
    },
    round(k) {
      const buf = b!;
      if (staging !== undefined) {
        fillPayload(payload, k);
        buf.buf.write(staging, 0, wait);
      } else if (path === "lab-mmap-sync") {
        buf.buf.beginCpuAccess("write", TIMEOUT_MS);
        fillPayload(payload, k);
        buf.buf.endCpuAccess("write");
      } else {
        fillPayload(payload, k);
      }
      q!.queue(buf);
      b = q!.dequeue(wait); // the consumer's release: the acknowledgement
    },
    async stop() {
      words(b!.view, bytes)[0] = STOP_ROUND;
      q!.queue(b!);
      b = q!.dequeue(wait);
      const done = await inbox.next<HandoffDone>("done");
      close();
      return done;
    },
  };
}

function budgetOf(quick: boolean): HandoffBudget {
  return quick ? { timeMs: 40, warmupMs: 10, minRounds: 4 } : { timeMs: 120, warmupMs: 30, minRounds: 8 };
}

/** Runs rounds for the warm-up, then for the budget; the measured rounds' durations in ns. */
async function measurePath(d: Driver, bytes: number, budget: HandoffBudget): Promise<number[]> {
  await d.start(bytes);
  const samples: number[] = [];
  let k = 0;
  for (const phase of ["warmup", "measure"] as const) {
    const until = performance.now() + (phase === "warmup" ? budget.warmupMs : budget.timeMs);
    for (let n = 0; performance.now() < until || (phase === "measure" && n < budget.minRounds); n++, k++) {
      const t0 = performance.now();
      const r = d.round(k);
      if (r !== undefined) await r;
      if (phase === "measure") samples.push((performance.now() - t0) * 1e6);
    }
  }
  const { rounds, bad } = await d.stop();
  if (rounds !== k || bad !== 0) {
    throw new Error(`the consumer checked ${rounds} of ${k} rounds of ${sizeLabel(bytes)}, ${bad} of them wrong`);
  }
  return samples;
}

/** The producer checks nothing itself; this checks that the payload functions agree before anything is timed. */
function selfTest(): void {
  const w = new Int32Array(1024);
  fillPayload(w, 7);
  if (!checkPayload(w, 7) || checkPayload(w, 8)) throw new Error("bench handoff: the payload check does not work");
  w[1000] ^= 1;
  if (checkPayload(w, 7)) throw new Error("bench handoff: the payload check misses a changed word");
}

export async function runHandoffBench(options: HandoffOptions = {}, onProgress: (e: HandoffProgress) => void = () => {}): Promise<HandoffResult> {
  const t0 = performance.now();
  const quick = options.quick ?? false;
  const budget = budgetOf(quick);
  // Many short passes, alternating the order, so that every path sees the same load.
  const passes = quick ? 2 : 6;
  const sizes = options.sizes ?? handoffSizes;
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 4 || n % 4 !== 0 || n > 64 * MiB)) {
    throw new DmaBufError("EINVAL", "bench_handoff", `sizes ${JSON.stringify(sizes)}: each must be a multiple of 4 in 4..64 MiB`);
  }
  selfTest();
  const lab = await Lab.create({ memoryBytes: 256 * MiB });
  const maxBytes = Math.max(...sizes);
  const payload = new SharedArrayBuffer(maxBytes);
  const ctrl = new SharedArrayBuffer(4 * RAW_CTRL_WORDS);
  const workers: Worker[] = [];
  const proxies: Comlink.Remote<HandoffApi>[] = [];
  try {
    const drivers = new Map<HandoffPath, Driver>();
    for (const path of paths) {
      const data: HandoffData = { path, timeoutMs: TIMEOUT_MS };
      if (path === "raw") Object.assign(data, { payload, ctrl });
      if (labPaths.includes(path)) data.handle = lab.share();
      const worker = new Worker(workerUrl("bench-handoff"), { workerData: data, name: `handoff-${path}` });
      workers.push(worker);
      if (path === "comlink-transfer") {
        const api = Comlink.wrap<HandoffApi>(nodeEndpoint(worker));
        proxies.push(api);
        drivers.set(path, comlinkDriver(api));
        continue;
      }
      const inbox = new Inbox(worker, `handoff-${path}`);
      await inbox.next("ready");
      drivers.set(path, path === "raw" ? rawDriver(inbox, payload, ctrl)
        : path === "postMessage" || path === "postMessage-transfer" ? messageDriver(inbox, path === "postMessage-transfer")
        : labDriver(lab, inbox, path));
    }
    const samples = new Map<string, number[]>();
    const total = passes * sizes.length * paths.length;
    let index = 0;
    for (let pass = 0; pass < passes; pass++) {
      for (const bytes of sizes) {
        const order = pass % 2 === 0 ? [...paths] : [...paths].reverse();
        for (const path of order) {
          onProgress({ index: index++, total, label: `${path} ${sizeLabel(bytes)}` });
          const key = `${path}|${bytes}`;
          samples.set(key, [...(samples.get(key) ?? []), ...(await measurePath(drivers.get(path)!, bytes, budget))]);
        }
      }
    }
    const rows = rowsOf(samples, sizes);
    return {
      machine: machineInfo(), date: new Date().toISOString(), quick, budget, passes, sizes, rows,
      targets: targetsOf(rows, sizes), notes: notesOf(), durationMs: performance.now() - t0,
    };
  } finally {
    for (const p of proxies) p[Comlink.releaseProxy]();
    await Promise.all(workers.map((w) => w.terminate()));
    lab.close();
  }
}

function rowsOf(samples: Map<string, number[]>, sizes: number[]): HandoffRow[] {
  const rows: HandoffRow[] = [];
  for (const bytes of sizes) {
    const statsOf = (path: HandoffPath) => summarize(samples.get(`${path}|${bytes}`)!);
    const raw = statsOf("raw");
    const transfer = statsOf("postMessage-transfer");
    for (const path of paths) {
      const stats = statsOf(path);
      rows.push({
        path, bytes, roundTripsPerSec: 1e9 / stats.meanNs, stats,
        vsRaw: raw.p50Ns / stats.p50Ns, vsRawMean: raw.meanNs / stats.meanNs, vsTransfer: transfer.p50Ns / stats.p50Ns,
      });
    }
  }
  return rows;
}

/** The lab's best path at each size (by p50). */
function bestLab(rows: HandoffRow[], bytes: number): HandoffRow {
  return rows.filter((r) => r.bytes === bytes && labPaths.includes(r.path)).reduce((a, b) => (b.vsRaw > a.vsRaw ? b : a));
}

/** The targets: the worst size's best lab path against raw; the best lab path at 4 KiB (when measured) against postMessage-transfer. */
export function targetsOf(rows: HandoffRow[], sizes: number[]): TargetResult[] {
  const best = sizes.map((bytes) => bestLab(rows, bytes));
  const worst = best.reduce((a, b) => (b.vsRaw < a.vsRaw ? b : a));
  const small = sizes.includes(4 * KiB) ? bestLab(rows, 4 * KiB) : null;
  return [
    {
      id: "floor", description: "the lab's best path against the raw SharedArrayBuffer + Atomics floor, worst size",
      threshold: ">= 0.9x raw", measured: worst.vsRaw, unit: "x raw", met: worst.vsRaw >= 0.9,
      detail: best.map((r) => `${sizeLabel(r.bytes)} ${r.path} ${r.vsRaw.toFixed(2)}x`).join(", "),
    },
    {
      id: "transfer", description: "the lab's best path against postMessage with transfer at 4 KiB",
      threshold: ">= 1.2x postMessage-transfer", measured: small?.vsTransfer ?? null, unit: "x postMessage-transfer",
      met: small === null ? null : small.vsTransfer >= 1.2,
      detail: small === null ? "4 KiB was not run" : `${small.path}: p50 ${durationLabel(small.stats.p50Ns)}, ${Math.round(small.roundTripsPerSec)} round trips/s`,
    },
  ];
}

function notesOf(): string[] {
  return [
    "x raw and x pM-transfer compare p50 round trips (the peer's p50 over the path's), which the load bursts of a shared " +
      "machine move little; x raw mean compares round trips/s (means), which they move a lot; the targets use p50",
    "every path does the same work per round: the producer writes every word of the payload, the consumer checks every word; " +
      "lab-rw adds a copy on each side (write() from and read() into arena memory)",
    "the main thread blocks (Atomics.wait) on the raw and lab paths; postMessage and comlink wait in the event loop",
    "lab paths: lab.queue({ buffers: 1, heap: \"cma\" }), so the buffer is one contiguous mapping and a round is " +
      "dequeue -> fill -> queue -> (worker: acquire -> check -> release) -> dequeue",
  ];
}

// ---- rendering -----------------------------------------------------------------

export function renderHandoffTable(r: HandoffResult): string {
  const head = ["size", "path", "round trips/s", "p50", "p99", "x raw", "x raw mean", "x pM-transfer", "samples"];
  const widths = [7, 21, 13, 9, 9, 6, 10, 13, 7];
  const right = [false, false, true, true, true, true, true, true, true];
  const out = [
    `dmabuf-lab bench handoff${r.quick ? " --quick" : ""}: ${r.date}, ${(r.durationMs / 1000).toFixed(0)} s`,
    ...machineLines(r.machine),
    `budget:  ${r.budget.timeMs} ms per path and size in ${r.passes} pass${r.passes === 1 ? "" : "es"}, after ${r.budget.warmupMs} ms warm-up, ` +
      `at least ${r.budget.minRounds} rounds`,
    "",
    row(head, widths, right),
  ];
  for (const bytes of r.sizes) {
    r.rows.filter((x) => x.bytes === bytes).forEach((x, i) => out.push(row([
      i === 0 ? sizeLabel(bytes) : "", x.path, Math.round(x.roundTripsPerSec).toString(), durationLabel(x.stats.p50Ns),
      durationLabel(x.stats.p99Ns), x.vsRaw.toFixed(2), x.vsRawMean.toFixed(2), x.vsTransfer.toFixed(2), String(x.stats.samples),
    ], widths, right)));
    out.push("");
  }
  out.push(...renderTargets(r.targets, "targets: the lab's best path at each size"), "", ...renderNotes(r.notes));
  return out.join("\n") + "\n";
}

/** The whole result: table() and charts() read nothing else. */
export function handoffJson(r: HandoffResult): object {
  return r;
}

/** Each path against raw at each size: the ratio of p50 round trips, bars p10..p90 of the path's samples. */
export function handoffCharts(r: HandoffResult): Chart[] {
  const raw = (bytes: number) => r.rows.find((x) => x.bytes === bytes && x.path === "raw")!.stats.p50Ns;
  return [{
    kind: "bars",
    title: "bench handoff: each path against raw SharedArrayBuffer + Atomics (x raw, p50 round trips)",
    subtitle: `${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${r.date.slice(0, 10)}; bars p10..p90 of the samples`,
    value: { label: "x raw (higher is faster)", scale: "linear", unit: "ratio" },
    groups: r.sizes.map((bytes) => ({
      name: sizeLabel(bytes),
      bars: r.rows.filter((x) => x.bytes === bytes).map((x) => ({
        name: x.path, value: x.vsRaw, lo: raw(bytes) / x.stats.p90Ns, hi: raw(bytes) / x.stats.p10Ns,
      })),
    })),
    notes: ["targets: the lab's best path >= 0.9x raw at every size; >= 1.2x postMessage-transfer at 4 KiB"],
  }];
}

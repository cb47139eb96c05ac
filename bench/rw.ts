/*
 * The read/write benchmark: pread and pwrite on dma-buf fds (the uapi's
 * read/write path, src/dmabuf/rw.ts) against their peers, in the same run.
 *
 *   throughput  for each heap (system, cma, system-uncached) and size (4 KiB
 *               .. 64 MiB; --quick 4 KiB, 1 MiB, 16 MiB): Process.pwrite and
 *               Process.pread of a user buffer from lab.alloc() (the arena:
 *               one engine call) at position 0 of a dma-buf of that size;
 *               at 1 MiB also a foreign buffer (an ordinary ArrayBuffer: the
 *               TypedArray.set slow path) on the system heap.
 *   small-op    64-byte pwrite and pread on the system heap, ns per call.
 *   parts       reference rows: the pieces of one 64-byte pwrite (the fd
 *               lookup, the path without the fd layer, the whole call with
 *               the fast path off, fence create/signal/put, the resv
 *               critical section with a fence, one engine copy of 64
 *               bytes), to show which part dominates the per-call cost and
 *               what the fast path (one engine call) buys.
 *
 * Peers, per size: native:memcpy (bench/native/memcpy.c, the contiguous case
 * of bench copy at the same size), sab:set (Uint8Array.set arena -> arena)
 * and fs:pwrite / fs:pread (fs.writeSync / fs.readSync with a position, of
 * the same arena buffer, on a file in /dev/shm opened once: a real kernel
 * read/write path).
 *
 * Ratios are speed ratios from p50s (>1 is faster): vsNative, vsSabSet, and
 * vsFs (a uapi row against the fs row of the same direction and size).
 * Measurement and statistics are bench copy's (measure, summarize); the full
 * run takes two rounds per case (native first, then the JavaScript side in
 * alternating order), samples pooled. Every uapi method is checked to move
 * the right bytes once before it is timed.
 *
 * Contract: runRwBench() returns data and prints nothing; progress goes to
 * onProgress. A missing C compiler skips the native rows (null vsNative).
 * The /dev/shm file is closed and unlinked, the Process closed and the Lab
 * closed however the run ends.
 */
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import os from "node:os";
import { Lab } from "../src/api/lab.js";
import { Process } from "../src/uapi/process.js";
import { DMA_HEAP_IOCTL_ALLOC, O_RDWR } from "../src/uapi/uapi.js";
import type { HeapName } from "../src/dmabuf/heap.js";
import { pwritev } from "../src/dmabuf/rw.js";
import { rwFastPath } from "../src/dmabuf/rw_fast.js";
import { bufferRuns } from "../src/dmabuf/runs.js";
import { contiguousBatch } from "./copy.js";
import { budgetFor, fillPattern, measure, sizeLabel } from "./harness.js";
import { nativePeer, nativeCaseKey, runNative, type NativeBudget, type NativeCase, type NativeStatus } from "./native.js";
import { machineInfo, summarize, type MachineInfo, type SampleStats, type TargetResult } from "../src/report.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const SMALL = 64;
const SMALL_BATCH = 4096;
const LAB_MEMORY = 512 * MiB;
/** The parts row of the whole call with the fast path off (src/dmabuf/rw_fast.ts). */
const FULL_PATH = "pwrite, fast path off (the full path)";
const POOL_BYTES = 192 * MiB;

export const rwHeaps: readonly HeapName[] = ["system", "cma", "system-uncached"];
export type RwRegime = "throughput" | "small-op" | "parts";
export type RwKind = "uapi" | "native" | "builtin" | "fs" | "reference";

export interface RwBenchOptions {
  quick?: boolean;
  /** Run the native C peer (default true). */
  native?: boolean;
}

export interface RwBenchRow {
  regime: RwRegime;
  method: string;
  kind: RwKind;
  /** The heap of the dma-buf (uapi rows), else null. */
  heap: HeapName | null;
  /** Where the user buffer lives: the arena (lab.alloc) or an ordinary ArrayBuffer; null for references. */
  memory: "arena" | "foreign" | null;
  bytes: number;
  batch: number;
  gbps: number;
  nsPerOp: number;
  vsNative: number | null;
  vsSabSet: number | null;
  /** uapi rows: speed against fs.writeSync / fs.readSync of the same size and direction. */
  vsFs: number | null;
  stats: SampleStats;
}

export interface RwBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  budget: NativeBudget;
  rounds: number;
  load: { start: number; end: number };
  native: NativeStatus;
  shmFile: string;
  rows: RwBenchRow[];
  targets: TargetResult[];
  notes: string[];
  durationMs: number;
}

export type RwBenchProgress = { index: number; total: number; label: string } | { index: -1; total: 0; label: string };

interface Method {
  id: string;
  kind: RwKind;
  heap: HeapName | null;
  memory: "arena" | "foreign" | null;
  body: () => void;
}

interface Case {
  regime: RwRegime;
  bytes: number;
  batch: number;
  label: string;
  native: NativeCase | null;
  methods: Method[];
  /** Releases what the case made besides the fds (after it is measured). */
  dispose?: () => void;
}

const speed = (peer: number | undefined, own: number): number | null =>
  peer === undefined || !Number.isFinite(peer) || !(own > 0) ? null : peer / own;

export async function runRwBench(options: RwBenchOptions = {}, onProgress: (e: RwBenchProgress) => void = () => {}): Promise<RwBenchResult> {
  const started = performance.now();
  const quick = options.quick ?? false;
  const sizes = quick ? [4 * KiB, MiB, 16 * MiB] : [4 * KiB, 64 * KiB, MiB, 16 * MiB, 64 * MiB];
  const maxSize = sizes[sizes.length - 1];
  const budget = budgetFor(quick);
  const rounds = quick ? 1 : 2;
  const roundBudget: NativeBudget = { ...budget, timeMs: budget.timeMs / rounds, minSamples: Math.ceil(budget.minSamples / rounds) };
  const loadStart = os.loadavg()[0];
  const notes: string[] = [];

  if (options.native ?? true) onProgress({ index: -1, total: 0, label: "building the native memcpy peer (bench/native/memcpy.c)" });
  const { native, binary } = await nativePeer(options.native ?? true);

  const lab = await Lab.create({ memoryBytes: LAB_MEMORY, poolBytes: POOL_BYTES });
  const proc = new Process(lab);
  const shmFile = `/dev/shm/dmabuf-lab-bench-rw-${process.pid}`;
  let shmFd: number | undefined;
  const rows: RwBenchRow[] = [];
  try {
    shmFd = openSync(shmFile, "w+", 0o600);
    ftruncateSync(shmFd, maxSize);
    const src = lab.alloc(maxSize, { align: 4096 });
    const dst = lab.alloc(maxSize, { align: 4096 });
    fillPattern(src, 7);
    const foreign = new Uint8Array(MiB);
    fillPattern(foreign, 7);
    const heapFds = new Map(rwHeaps.map((h) => [h, proc.open(`/dev/dma_heap/${h}`, O_RDWR)]));
    const allocFd = (heap: HeapName, len: number): number => {
      const data = { len, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
      proc.ioctl(heapFds.get(heap)!, DMA_HEAP_IOCTL_ALLOC, data);
      return data.fd;
    };
    const fd = shmFd;

    const peers = (bytes: number, batch: number, s: Uint8Array, d: Uint8Array): Method[] => [
      { id: "sab:set", kind: "builtin", heap: null, memory: "arena", body: () => { for (let i = 0; i < batch; i++) d.set(s); } },
      { id: "fs:pwrite", kind: "fs", heap: null, memory: "arena", body: () => { for (let i = 0; i < batch; i++) writeSync(fd, s, 0, bytes, 0); } },
      { id: "fs:pread", kind: "fs", heap: null, memory: "arena", body: () => { for (let i = 0; i < batch; i++) readSync(fd, d, 0, bytes, 0); } },
    ];
    const uapi = (heap: HeapName, bufFd: number, batch: number, s: Uint8Array, d: Uint8Array, memory: "arena" | "foreign"): Method[] => {
      const tag = memory === "foreign" ? " (ArrayBuffer)" : "";
      return [
        { id: `uapi:pwrite${tag}`, kind: "uapi", heap, memory, body: () => { for (let i = 0; i < batch; i++) proc.pwrite(bufFd, s, 0); } },
        { id: `uapi:pread${tag}`, kind: "uapi", heap, memory, body: () => { for (let i = 0; i < batch; i++) proc.pread(bufFd, d, 0); } },
      ];
    };
    /** One pwrite then one pread must move exactly the bytes. */
    const check = (bufFd: number, s: Uint8Array, d: Uint8Array, label: string): void => {
      d.fill(0);
      const w = proc.pwrite(bufFd, s, 0);
      const r = proc.pread(bufFd, d, 0);
      if (w !== s.length || r !== d.length || Buffer.compare(Buffer.from(s.buffer, s.byteOffset, s.length), Buffer.from(d.buffer, d.byteOffset, d.length)) !== 0) {
        throw new Error(`bench rw: ${label} moved wrong bytes (wrote ${w}, read ${r})`);
      }
    };

    // ---- cases -----------------------------------------------------------------
    const cases: (() => Case)[] = [];
    const bufFds: number[] = [];
    const release = () => { for (const f of bufFds.splice(0)) proc.close(f); };
    for (const bytes of sizes) {
      cases.push(() => {
        const batch = contiguousBatch(bytes);
        const s = src.subarray(0, bytes);
        const d = dst.subarray(0, bytes);
        const methods = peers(bytes, batch, s, d);
        for (const heap of rwHeaps) {
          const bufFd = allocFd(heap, bytes);
          bufFds.push(bufFd);
          check(bufFd, s, d, `${heap} ${sizeLabel(bytes)}`);
          methods.push(...uapi(heap, bufFd, batch, s, d, "arena"));
          if (heap === "system" && bytes === MiB) {
            const back = new Uint8Array(MiB);
            check(bufFd, foreign, back, `${heap} ${sizeLabel(bytes)} foreign`);
            methods.push(...uapi(heap, bufFd, batch, foreign, back, "foreign"));
          }
        }
        return {
          regime: "throughput", bytes, batch, label: `throughput ${sizeLabel(bytes)}`,
          native: { kind: "contig", bytes, srcOff: 0, dstOff: 0, batch }, methods,
        };
      });
    }
    cases.push(() => {
      const s = src.subarray(0, SMALL);
      const d = dst.subarray(0, SMALL);
      const bufFd = allocFd("system", 64 * KiB);
      bufFds.push(bufFd);
      check(bufFd, s, d, "system 64 B");
      return {
        regime: "small-op", bytes: SMALL, batch: SMALL_BATCH, label: "small-op 64 B",
        native: { kind: "contig", bytes: SMALL, srcOff: 0, dstOff: 0, batch: SMALL_BATCH },
        methods: [...peers(SMALL, SMALL_BATCH, s, d), ...uapi("system", bufFd, SMALL_BATCH, s, d, "arena")],
      };
    });
    cases.push(() => partsCase(lab, proc, allocFd, bufFds, src.subarray(0, SMALL)));

    // ---- measurement ---------------------------------------------------------------
    for (const [index, make] of cases.entries()) {
      const c = make();
      onProgress({ index, total: cases.length, label: c.label });
      let nativeSamples: number[] | undefined = binary === undefined || c.native === null ? undefined : [];
      const samples = new Map<string, number[]>(c.methods.map((m) => [m.id + "|" + m.heap, []]));
      for (let round = 0; round < rounds; round++) {
        if (nativeSamples !== undefined) {
          const run = await runNative(binary!, [c.native!], roundBudget);
          const n = run.status === "ran" ? run.results.get(nativeCaseKey(c.native!)) : undefined;
          if (n === undefined) {
            notes.push(`native: ${c.label}: ${run.status === "failed" ? run.reason : "no result"}; its row is left out`);
            nativeSamples = undefined;
          } else nativeSamples.push(...n.samples);
        }
        const order = round % 2 === 0 ? c.methods : [...c.methods].reverse();
        const got = measure(order.map((m) => ({ name: m.id + "|" + m.heap, body: m.body, batch: c.batch })), roundBudget);
        for (const [k, v] of got) samples.get(k)!.push(...v);
      }
      const caseRows = c.methods.map((m) => makeRow(c, m, samples.get(m.id + "|" + m.heap)!));
      if (nativeSamples) {
        caseRows.unshift(makeRow(c, { id: "native:memcpy", kind: "native", heap: null, memory: null, body: () => {} }, nativeSamples));
      }
      const p50 = (id: string) => caseRows.find((r) => r.method === id)?.nsPerOp;
      for (const r of caseRows) {
        if (r.kind !== "native") r.vsNative = speed(p50("native:memcpy"), r.nsPerOp);
        if (r.method !== "sab:set") r.vsSabSet = speed(p50("sab:set"), r.nsPerOp);
        if (r.kind === "uapi") r.vsFs = speed(p50(r.method.startsWith("uapi:pwrite") ? "fs:pwrite" : "fs:pread"), r.nsPerOp);
      }
      rows.push(...caseRows);
      release();
      c.dispose?.();
    }
    if (binary === undefined) notes.push(`native memcpy skipped: ${native.reason}`);
  } finally {
    if (shmFd !== undefined) closeSync(shmFd);
    try { unlinkSync(shmFile); } catch { /* never created */ }
    proc.closeAll();
    lab.close();
  }

  notes.push(
    "uapi rows: Process.pwrite/pread(fd, view, 0) of a whole dma-buf of that size; the Process fd lookup, the read/write path's " +
      "validation, resv lock, fence create/publish/signal/put and one engine sgCopy are all inside each call.",
    `fs rows: fs.writeSync/readSync(fd, view, 0, n, 0) on ${shmFile} (tmpfs; unlinked at the end) from the same arena view.`,
    "parts rows (reference) are components of one 64-byte pwrite on the system heap, re-enacted with the same public " +
      "pieces the path uses; they are not peers and need not add up exactly.",
  );
  return {
    machine: machineInfo(native.compiler), date: new Date().toISOString(), quick, budget, rounds,
    load: { start: loadStart, end: os.loadavg()[0] }, native, shmFile, rows, targets: evaluateRwTargets(rows, native), notes,
    durationMs: Math.round(performance.now() - started),
  };
}

/** Reference rows: the parts of one 64-byte pwrite on the system heap. */
function partsCase(lab: Lab, proc: Process, allocFd: (h: HeapName, len: number) => number, bufFds: number[], s: Uint8Array): Case {
  const batch = SMALL_BATCH;
  const bufFd = allocFd("system", 64 * KiB);
  bufFds.push(bufFd);
  const buf = lab.exporter("system").alloc(64 * KiB);
  const { sync } = lab;
  const timeline = sync.timeline({ driver: "bench-rw", name: "parts" });
  const ref = (id: string, body: () => void): Method => ({ id, kind: "reference", heap: "system", memory: null, body });
  // The pieces as the path uses them: an untracked fence put in the same
  // call, the one resv critical section (publishAccess), one engine copy.
  const fenceCycle = () => { const f = timeline.createFence(undefined, false); f.signal(); f.put(); };
  const resvCycle = () => {
    const own = timeline.createFence(undefined, false);
    for (const d of buf.resv.publishAccess(own, true, false, "pwrite")) d.put();
    own.signal();
    own.put();
  };
  const [run] = bufferRuns(buf, 0, SMALL);
  const copy = () => sync.engine.copy(run.addr, s.byteOffset, SMALL, "auto");
  const methods: Method[] = [
    ref("pwrite (the whole call)", () => { for (let i = 0; i < batch; i++) proc.pwrite(bufFd, s, 0); }),
    ref("pwritev(DmaBufRecord), no fd layer", () => { for (let i = 0; i < batch; i++) pwritev(buf, [s], 0); }),
    ref(FULL_PATH, () => {
      rwFastPath.enabled = false;
      try {
        for (let i = 0; i < batch; i++) proc.pwrite(bufFd, s, 0);
      } finally {
        rwFastPath.enabled = true;
      }
    }),
    ref("fd: process.file(fd)", () => { for (let i = 0; i < batch; i++) proc.file(bufFd, "pwrite"); }),
    ref("fence: create, signal, put", () => { for (let i = 0; i < batch; i++) fenceCycle(); }),
    ref("fence + resv section", () => { for (let i = 0; i < batch; i++) resvCycle(); }),
    ref("engine: copy of 64 B", () => { for (let i = 0; i < batch; i++) copy(); }),
  ];
  return {
    regime: "parts", bytes: SMALL, batch, label: "parts of a 64 B pwrite", native: null, methods,
    dispose: () => { buf.put(); timeline.unref(); },
  };
}

function makeRow(c: Case, m: Method, samples: number[]): RwBenchRow {
  const stats = summarize(samples);
  return {
    regime: c.regime, method: m.id, kind: m.kind, heap: m.heap, memory: m.memory, bytes: c.bytes, batch: c.batch,
    gbps: c.bytes / stats.p50Ns, nsPerOp: stats.p50Ns, vsNative: null, vsSabSet: null, vsFs: null, stats,
  };
}

const fx = (v: number): string => `${v.toFixed(2)}x`;

export function evaluateRwTargets(rows: RwBenchRow[], native: NativeStatus): TargetResult[] {
  const targets: TargetResult[] = [];
  // 1. >= 0.9x native memcpy at 1 MiB and above, system heap, arena memory, both directions.
  const big = rows.filter((r) => r.regime === "throughput" && r.kind === "uapi" && r.heap === "system" && r.memory === "arena" && r.bytes >= MiB);
  const worst = big.filter((r) => r.vsNative !== null).sort((a, b) => a.vsNative! - b.vsNative!)[0];
  if (native.status !== "ran" || worst === undefined) {
    targets.push({ id: "system-native-1mib", description: "uapi pread/pwrite on the system heap vs native memcpy, >= 1 MiB",
      threshold: ">= 0.90x native", measured: null, unit: "x native", met: null,
      detail: `not measured: ${native.reason ?? "no rows at 1 MiB and above"}` });
  } else {
    const met = worst.vsNative! >= 0.9;
    const all = big.map((r) => `${r.method.slice(5)} ${sizeLabel(r.bytes)} ${fx(r.vsNative ?? NaN)}`).join(", ");
    const sab = rows.find((r) => r.regime === "throughput" && r.method === "sab:set" && r.bytes === worst.bytes);
    const smallCall = rows.find((r) => r.regime === "small-op" && r.method === "uapi:pwrite")?.nsPerOp;
    const callShare = smallCall === undefined ? "" : `; the per-call cost (a 64-byte pwrite, ${smallCall.toFixed(0)} ns) is ` +
      `${((100 * smallCall) / worst.nsPerOp).toPrecision(2)}% of that call`;
    const why = met ? "" : `; why: worst is ${worst.method} at ${sizeLabel(worst.bytes)}, ` +
      `${worst.gbps.toFixed(2)} GB/s against native ${(worst.bytes / (worst.nsPerOp * worst.vsNative!)).toFixed(2)} GB/s; ` +
      `Uint8Array.set on the same memory reaches ${sab ? fx(sab.vsNative ?? NaN) : "-"} native there${callShare}, ` +
      (smallCall !== undefined && smallCall / worst.nsPerOp > 0.1
        ? "so the path's fixed per-call cost is a large part of the gap"
        : "so the gap is mostly the copy inside wasm memory, not the path's fixed cost");
    targets.push({ id: "system-native-1mib", description: "uapi pread/pwrite on the system heap vs native memcpy, >= 1 MiB (worst)",
      threshold: ">= 0.90x native", measured: worst.vsNative, unit: "x native", met, detail: all + why });
  }
  // 2. A 64-byte pwrite costs at most a quarter of a 64-byte fs.writeSync to /dev/shm.
  const small = (id: string) => rows.find((r) => r.regime === "small-op" && r.method === id);
  const pw = small("uapi:pwrite");
  const fsw = small("fs:pwrite");
  const pr = small("uapi:pread");
  const fsr = small("fs:pread");
  if (!pw || !fsw) {
    targets.push({ id: "pwrite-64-vs-fs", description: "64-byte pwrite (system heap) ns over 64-byte fs.writeSync to /dev/shm ns",
      threshold: "<= 0.25x fs", measured: null, unit: "x fs ns", met: null, detail: "not measured" });
  } else {
    const cost = pw.nsPerOp / fsw.nsPerOp;
    const met = cost <= 0.25;
    let detail = `pwrite ${pw.nsPerOp.toFixed(0)} ns vs fs.writeSync ${fsw.nsPerOp.toFixed(0)} ns` +
      (pr && fsr ? `; pread ${pr.nsPerOp.toFixed(0)} ns vs fs.readSync ${fsr.nsPerOp.toFixed(0)} ns (${(pr.nsPerOp / fsr.nsPerOp).toFixed(2)}x)` : "");
    const full = rows.find((r) => r.regime === "parts" && r.method === FULL_PATH);
    if (full) {
      detail += `; with the fast path off (the full path) pwrite costs ${full.nsPerOp.toFixed(0)} ns ` +
        `(${(full.nsPerOp / fsw.nsPerOp).toFixed(2)}x fs; the fast path is ${(full.nsPerOp / pw.nsPerOp).toFixed(2)}x faster)`;
    }
    const parts = rows.filter((r) => r.regime === "parts" && /^(fd|fence|table|engine)/.test(r.method));
    if (parts.length) {
      // The resv row includes a fence cycle: show its own share as the difference.
      const fence = parts.find((r) => r.method.startsWith("fence: "))?.nsPerOp ?? 0;
      const shares = parts.map((r) => ({ name: r.method, ns: r.method.startsWith("fence + resv") ? r.nsPerOp - fence : r.nsPerOp }))
        .map((p) => (p.name.startsWith("fence + resv") ? { ...p, name: "resv section (minus the fence)" } : p))
        .sort((a, b) => b.ns - a.ns);
      const whole = rows.find((r) => r.regime === "parts" && r.method.startsWith("pwrite (the whole"))?.nsPerOp ?? pw.nsPerOp;
      const known = shares.reduce((a, p) => a + Math.max(0, p.ns), 0);
      detail += `; parts of the call (${whole.toFixed(0)} ns): ` + shares.map((p) => `${p.name} ${p.ns.toFixed(0)} ns`).join(", ") +
        `, the rest (plan/validation, closures, arrays) ~${Math.max(0, whole - known).toFixed(0)} ns`;
      if (!met) detail += `; the largest part is ${shares[0].name}`;
    }
    targets.push({ id: "pwrite-64-vs-fs", description: "64-byte pwrite (system heap) ns over 64-byte fs.writeSync to /dev/shm ns",
      threshold: "<= 0.25x fs", measured: cost, unit: "x fs ns", met, detail });
  }
  return targets;
}

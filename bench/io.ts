/*
 * The storage benchmark: reads from a real file into dma-bufs, every path
 * the proposals compare, in one run:
 *
 *   fixed dma-buf      io_uring READ_FIXED into a registered dma-buf (the
 *                      series: premapped once, no IOMMU work per I/O)
 *   mapped strict|lazy|passthrough
 *                      io_uring READ into user memory from a storage device
 *                      whose IOMMU is in that mode: a mapping per I/O
 *   READ + pwrite      io_uring READ into user memory (strict), then pwrite
 *                      of it to the dma-buf: what users do today
 *   copy_file_range direct|buffered
 *                      copy_file_range from the file (O_DIRECT: the storage
 *                      device's DMA, per-I/O mapped, strict; else the CPU
 *                      from the page cache) into the dma-buf; a blocking
 *                      call, queue depth 1
 *   fs.readSync        the host kernel's read straight into a view of the
 *                      dma-buf's pages in this thread: the ceiling, depth 1
 *
 * Patterns: 4 KiB random reads and 128 KiB sequential reads, at queue
 * depths 1, 32 and 128 (the io_uring paths; the blocking ones at 1). Every
 * storage device is backed by the same file (spawnStorage's `path`), the
 * first one (strict) under the lab's directory. Every case is first run
 * untimed (warm-up), then measured in two passes of half the time budget,
 * the second in reverse order, their samples pooled: IOPS, GB/s, p50/p99
 * latency (submit to completion, in this thread), and ratios against the
 * fixed dma-buf path and the ceiling. Every completed read is checked
 * against the file's pattern at one byte, read from the destination's
 * memory by a plain load on every path. With `trace`, a short extra pass
 * of the io_uring paths is recorded (src/trace): the storage device's jobs,
 * the fences and waits, for `--trace FILE.json`.
 *
 * Contract: runIoBench() returns data and prints nothing; progress goes to
 * onProgress (bench/benchmarks.ts makes it `dmabuf-lab bench io`). Every
 * lab, device, ring and file is closed and the directory removed however
 * it ends.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../src/api/lab.js";
import { spawnStorage, type StorageDevice } from "../src/devices/storage.js";
import { bufferRuns } from "../src/dmabuf/runs.js";
import { nowMs } from "../src/memory/futex.js";
import { IOTLB_INVALIDATE_NS } from "../src/dmabuf/iommu.js";
import type { TraceData } from "../src/trace/events.js";
import { Process } from "../src/uapi/process.js";
import type { DmaBufFile } from "../src/uapi/dma_buf_file.js";
import { DMA_HEAP_IOCTL_ALLOC, O_DIRECT, O_RDONLY, O_RDWR } from "../src/uapi/uapi.js";
import { IORING_REGISTER_BUFFERS_UPDATE, IORING_RSRC_F_EXTENDED_UPDATE } from "../src/io_uring/io_uring.js";
import {
  io_uring_cqe_seen, io_uring_get_sqe, io_uring_peek_cqe, io_uring_prep_read, io_uring_prep_read_fixed, io_uring_queue_exit,
  io_uring_queue_init, io_uring_register_buffers, io_uring_sqe_set_data, io_uring_submit, io_uring_wait_cqe_timeout, type IoUring, type Sqe,
} from "../src/io_uring/liburing.js";
import { fillPattern, mulberry32, sizeLabel, type Progress } from "./harness.js";
import {
  machineInfo, renderNotes, renderTargets, summarize, table, type Chart, type MachineInfo, type TargetResult,
} from "../src/report.js";

export interface IoBenchOptions {
  quick?: boolean;
  /** The IOMMUs' modelled IOTLB invalidation latency, ns (default IOTLB_INVALIDATE_NS): what per-I/O mapping pays and premapping saves. */
  iotlbInvalidateNs?: number;
  /**
   * Record a trace (src/trace) of a short extra pass after the measured
   * ones: every io_uring path at 4 KiB QD 32 for TRACE_MS each, so the
   * figures are not measured with tracing on. The result carries it.
   */
  trace?: boolean;
}

export type IoPattern = "4 KiB random" | "128 KiB sequential";

export interface IoBenchRow {
  pattern: IoPattern;
  method: string;
  /** Requests in flight (1 for the blocking paths). */
  qd: number;
  ios: number;
  iops: number;
  gbps: number;
  p50Us: number;
  p99Us: number;
  /** iops / the fixed dma-buf path's at the same pattern and depth (null where that was not run). */
  vsFixed: number | null;
  /** iops / fs.readSync's at the same pattern (the ceiling). */
  vsCeiling: number;
}

export interface IoBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  iotlbInvalidateNs: number;
  fileBytes: number;
  budgetMs: number;
  rows: IoBenchRow[];
  targets: TargetResult[];
  notes: string[];
  /** With options.trace: the traced pass (chromeTrace() for JSON). */
  trace?: TraceData;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const UADDR = 0x1000_0000;
export const IO_DEPTHS = [1, 32, 128] as const;
const PATTERNS: { name: IoPattern; size: number; random: boolean }[] = [
  { name: "4 KiB random", size: 4 * KiB, random: true },
  { name: "128 KiB sequential", size: 128 * KiB, random: false },
];
const FIXED = "fixed dma-buf";
const CEILING = "fs.readSync (ceiling)";
const WAIT_MS = 10_000;
/** The traced pass: each io_uring path for this long. */
const TRACE_MS = 20;
const TRACE_BYTES = 8 * MiB;

/** The file's pattern byte at `pos` (fillPattern's period). */
interface Checker { (pos: number, got: number): void }

interface Env {
  lab: Lab;
  proc: Process;
  ring: IoUring;
  dmabuf: number;
  /** The arena address of each 4 KiB page of the dma-buf, found once (dmaBufByte reads through it). */
  dmaPages: Uint32Array;
  user: Uint8Array;
  disks: Record<"strict" | "lazy" | "passthrough", number>;
  direct: number;
  buffered: number;
  hostFd: number;
  fileBytes: number;
  check: Checker;
}

/** The positions of one pattern, from a seeded generator. */
function positions(p: typeof PATTERNS[number], fileBytes: number): () => number {
  if (p.random) {
    const next = mulberry32(4242);
    const blocks = fileBytes / p.size;
    return () => (next() % blocks) * p.size;
  }
  let at = 0;
  return () => {
    const pos = at;
    at = (at + p.size) % fileBytes;
    return pos;
  };
}

interface Sampled { ios: number; elapsedMs: number; latNs: number[] }

/**
 * Keeps `qd` reads in flight on the ring for `budgetMs`: `prep` fills an SQE
 * for slot k at pos; `done` (optional) runs when slot k's read completed
 * (inside its latency). Returns the completions and their latencies.
 */
function ringLoop(env: Env, qd: number, size: number, nextPos: () => number, budgetMs: number,
  prep: (sqe: Sqe, slot: number, pos: number) => void, done?: (slot: number, pos: number) => void): Sampled {
  const { ring } = env;
  const started = new Float64Array(qd);
  const at = new Float64Array(qd);
  const latNs: number[] = [];
  const t0 = nowMs();
  let inflight = 0;
  const issue = (slot: number) => {
    const sqe = io_uring_get_sqe(ring);
    if (sqe === null) throw new Error("the SQ is full");
    const pos = nextPos();
    prep(sqe, slot, pos);
    io_uring_sqe_set_data(sqe, slot);
    at[slot] = pos;
    started[slot] = nowMs();
    inflight++;
  };
  for (let k = 0; k < qd; k++) issue(k);
  io_uring_submit(ring);
  while (inflight > 0) {
    let { err, cqe } = io_uring_wait_cqe_timeout(ring, WAIT_MS);
    if (err !== 0) throw new Error(`no completion within ${WAIT_MS} ms (${err})`);
    const more = nowMs() - t0 < budgetMs;
    while (cqe !== undefined) {
      const slot = cqe.user_data;
      if (cqe.res !== size) throw new Error(`a read of ${size} bytes at ${at[slot]} completed with ${cqe.res}`);
      io_uring_cqe_seen(ring, cqe);
      inflight--;
      done?.(slot, at[slot]);
      latNs.push((nowMs() - started[slot]) * 1e6);
      if (more) issue(slot);
      ({ err, cqe } = io_uring_peek_cqe(ring));
    }
    if (more) io_uring_submit(ring);
  }
  return { ios: latNs.length, elapsedMs: nowMs() - t0, latNs };
}

/** A blocking read path, one call at a time, for `budgetMs`. */
function syncLoop(nextPos: () => number, budgetMs: number, call: (pos: number) => void): Sampled {
  const latNs: number[] = [];
  const t0 = nowMs();
  do {
    const pos = nextPos();
    const s = nowMs();
    call(pos);
    latNs.push((nowMs() - s) * 1e6);
  } while (nowMs() - t0 < budgetMs);
  return { ios: latNs.length, elapsedMs: nowMs() - t0, latNs };
}

interface Method {
  name: string;
  /** Blocking: queue depth 1 only. */
  sync: boolean;
  run(env: Env, qd: number, size: number, nextPos: () => number, budgetMs: number): Sampled;
}

/** Slot k's region of the dma-buf and of the user memory: k * size. */
const methods: Method[] = [
  {
    name: FIXED, sync: false,
    run: (env, qd, size, next, budget) => ringLoop(env, qd, size, next, budget,
      (sqe, k, pos) => io_uring_prep_read_fixed(sqe, env.disks.strict, UADDR + k * size, size, pos, 0),
      (k, pos) => env.check(pos, dmaBufByte(env, k * size))),
  },
  ...(["strict", "lazy", "passthrough"] as const).map((mode): Method => ({
    name: `mapped ${mode}`, sync: false,
    run: (env, qd, size, next, budget) => ringLoop(env, qd, size, next, budget,
      (sqe, k, pos) => io_uring_prep_read(sqe, env.disks[mode], env.user.subarray(k * size, (k + 1) * size), size, pos),
      (k, pos) => env.check(pos, env.user[k * size])),
  })),
  {
    name: "READ + pwrite", sync: false,
    run: (env, qd, size, next, budget) => ringLoop(env, qd, size, next, budget,
      (sqe, k, pos) => io_uring_prep_read(sqe, env.disks.strict, env.user.subarray(k * size, (k + 1) * size), size, pos),
      (k, pos) => {
        if (env.proc.pwrite(env.dmabuf, env.user.subarray(k * size, (k + 1) * size), k * size) !== size) throw new Error("a short pwrite");
        env.check(pos, dmaBufByte(env, k * size));
      }),
  },
  ...(["direct", "buffered"] as const).map((how): Method => ({
    name: `copy_file_range ${how}`, sync: true,
    run: (env, _qd, size, next, budget) => syncLoop(next, budget, (pos) => {
      const n = env.proc.copy_file_range(how === "direct" ? env.direct : env.buffered, pos, env.dmabuf, 0, size);
      if (n !== size) throw new Error(`copy_file_range moved ${n} of ${size} bytes`);
      env.check(pos, dmaBufByte(env, 0));
    }),
  })),
  {
    name: CEILING, sync: true,
    run: (env, _qd, size, next, budget) => {
      const buf = (env.proc.file(env.dmabuf) as DmaBufFile).buf;
      const views = bufferRuns(buf, 0, size).map((r) => env.lab.arena.view(r.addr, r.len));
      return syncLoop(next, budget, (pos) => {
        let n = 0;
        for (const v of views) n += readSync(env.hostFd, v, 0, v.byteLength, pos + n);
        if (n !== size) throw new Error(`readSync read ${n} of ${size} bytes`);
        env.check(pos, views[0][0]);
      });
    },
  },
];

/**
 * The dma-buf's byte at `off`, read from its pages as the user-memory paths
 * read theirs (a plain load through a page table built once, no allocation):
 * every path's check costs the same, inside its
 * latency. (A pread per completion would add a whole read/write-path call
 * to the dma-buf paths only.)
 */
function dmaBufByte(env: Env, off: number): number {
  return env.lab.arena.u8[env.dmaPages[off >>> 12] + (off & 4095)];
}

/** The arena address of each page of a dma-buf (its runs are whole pages of the pool). */
function pagesOf(buf: DmaBufFile["buf"], bytes: number): Uint32Array {
  const pages = new Uint32Array(Math.ceil(bytes / 4096));
  let at = 0;
  for (const r of bufferRuns(buf, 0, bytes)) for (let o = 0; o < r.len; o += 4096) pages[at++] = r.addr + o;
  return pages;
}

export async function runIoBench(options: IoBenchOptions = {}, onProgress: (e: Progress) => void = () => {}): Promise<IoBenchResult> {
  const quick = options.quick ?? false;
  const fileBytes = quick ? 16 * MiB : 64 * MiB;
  const budgetMs = quick ? 60 : 400;
  const warmMs = quick ? 10 : 50;
  const iotlbInvalidateNs = options.iotlbInvalidateNs ?? IOTLB_INVALIDATE_NS;
  const slotBytes = Math.max(...IO_DEPTHS) * Math.max(...PATTERNS.map((p) => p.size));
  const date = new Date().toISOString();
  const dir = mkdtempSync(join(tmpdir(), "dmabuf-lab-bench-io-"));
  const path = join(dir, "data.bin");
  const pattern = new Uint8Array(fileBytes);
  fillPattern(pattern, 7);
  const out = openSync(path, "w");
  try {
    writeSync(out, pattern);
  } finally {
    closeSync(out);
  }
  const check: Checker = (pos, got) => {
    if (got !== pattern[pos]) throw new Error(`the byte at ${pos} read ${got}, the file holds ${pattern[pos]}`);
  };
  const lab = await Lab.create({ memoryBytes: 4 * slotBytes + 64 * MiB + (options.trace === true ? 8 * TRACE_BYTES : 0), poolBytes: 2 * slotBytes });
  const storages: StorageDevice[] = [];
  const hostFd = openSync(path, "r");
  let ring: IoUring | undefined;
  const proc = new Process(lab, { root: dir });
  try {
    for (const [i, mode] of (["strict", "lazy", "passthrough"] as const).entries()) {
      storages.push(await spawnStorage(lab, { name: `nvme${i}n1`, path, size: fileBytes, blockSize: 512, iommu: { mode, iotlbInvalidateNs } }));
    }
    const disk = (i: number) => proc.open(`/dev/nvme${i}n1`, O_RDONLY | O_DIRECT);
    const disks = { strict: disk(0), lazy: disk(1), passthrough: disk(2) };
    ring = io_uring_queue_init(proc, Math.max(...IO_DEPTHS));
    const heap = proc.open("/dev/dma_heap/system", O_RDWR);
    const alloc = { len: slotBytes, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
    proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
    proc.close(heap);
    if (io_uring_register_buffers(ring, [{ iov_base: 0, iov_len: 0 }]) !== 0) throw new Error("io_uring_register_buffers failed");
    proc.io_uring_register(ring.fd, IORING_REGISTER_BUFFERS_UPDATE,
      { offset: 0, flags: IORING_RSRC_F_EXTENDED_UPDATE, data: [{ iov_uaddr: UADDR, target_fd: disks.strict, dmabuf_fd: alloc.fd }], nr: 1 }, 1);
    const env: Env = {
      lab, proc, ring, dmabuf: alloc.fd, dmaPages: pagesOf((proc.file(alloc.fd) as DmaBufFile).buf, slotBytes),
      user: lab.alloc(slotBytes, { align: 4096 }), disks,
      direct: proc.open("data.bin", O_RDONLY | O_DIRECT), buffered: proc.open("data.bin", O_RDONLY), hostFd, fileBytes, check,
    };
    const cases = PATTERNS.flatMap((p) => methods.flatMap((m) => (m.sync ? [1] : [...IO_DEPTHS]).map((qd) => ({ p, m, qd }))));
    // An untimed warm-up of every case first (the first map of the registered
    // buffer, the page cache, the JIT of every path): the first case measured
    // would otherwise pay for what the later ones get for free.
    for (const { p, m, qd } of cases) m.run(env, qd, p.size, positions(p, fileBytes), warmMs);
    // Two passes, the second in reverse order, each case's samples pooled:
    // a drift in the machine's load weighs on every case alike.
    const pooled = cases.map((): Sampled => ({ ios: 0, elapsedMs: 0, latNs: [] }));
    const order = [...cases.keys()];
    let step = 0;
    for (const pass of [order, [...order].reverse()]) {
      for (const i of pass) {
        const { p, m, qd } = cases[i];
        onProgress({ index: step++, total: 2 * cases.length, label: `${p.name}, ${m.name}, QD ${qd}` });
        const s = m.run(env, qd, p.size, positions(p, fileBytes), budgetMs / 2);
        pooled[i].ios += s.ios;
        pooled[i].elapsedMs += s.elapsedMs;
        for (const ns of s.latNs) pooled[i].latNs.push(ns);
      }
    }
    const measured: Omit<IoBenchRow, "vsFixed" | "vsCeiling">[] = cases.map(({ p, m, qd }, i) => {
      const s = pooled[i];
      const st = summarize(s.latNs);
      const iops = s.ios / (s.elapsedMs / 1000);
      return { pattern: p.name, method: m.name, qd, ios: s.ios, iops, gbps: (iops * p.size) / 1e9, p50Us: st.p50Ns / 1000, p99Us: st.p99Ns / 1000 };
    });
    let trace: TraceData | undefined;
    if (options.trace === true) {
      onProgress({ index: 2 * cases.length, total: 2 * cases.length, label: "a traced pass of the io_uring paths" });
      lab.trace.start({ bufferBytes: TRACE_BYTES });
      try {
        for (const m of methods.filter((x) => !x.sync)) m.run(env, 32, PATTERNS[0].size, positions(PATTERNS[0], fileBytes), TRACE_MS);
      } finally {
        trace = lab.trace.stop();
      }
    }
    const find = (pattern: IoPattern, method: string, qd: number) => measured.find((r) => r.pattern === pattern && r.method === method && r.qd === qd);
    const rows: IoBenchRow[] = measured.map((r) => ({
      ...r,
      vsFixed: ((f) => (f === undefined ? null : r.iops / f.iops))(find(r.pattern, FIXED, r.qd)),
      vsCeiling: r.iops / find(r.pattern, CEILING, 1)!.iops,
    }));
    return {
      machine: machineInfo(), date, quick, iotlbInvalidateNs, fileBytes, budgetMs, rows, targets: ioTargets(rows), notes: ioNotes(iotlbInvalidateNs),
      ...(trace === undefined ? {} : { trace }),
    };
  } finally {
    if (ring !== undefined) io_uring_queue_exit(ring);
    proc.closeAll();
    closeSync(hostFd);
    for (const st of storages) await st.shutdown();
    lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function ioTargets(rows: IoBenchRow[]): TargetResult[] {
  const get = (pattern: IoPattern, method: string, qd: number) => rows.find((r) => r.pattern === pattern && r.method === method && r.qd === qd);
  const ratio = (id: string, description: string, pattern: IoPattern, a: string, b: string, qd: number, min: number, qdB = qd): TargetResult => {
    const x = get(pattern, a, qd);
    const y = get(pattern, b, qdB);
    const measured = x !== undefined && y !== undefined ? x.iops / y.iops : null;
    return {
      id, description, threshold: `>= ${min}x`, measured, unit: "x", met: measured === null ? null : measured >= min,
      detail: x !== undefined && y !== undefined ? `${Math.round(x.iops)} against ${Math.round(y.iops)} IOPS` : "not run",
    };
  };
  return [
    ratio("io-fixed-strict", "4 KiB random, QD 32: fixed dma-buf reads against per-I/O mapped reads, strict IOMMU", "4 KiB random", FIXED, "mapped strict", 32, 1.1),
    ratio("io-fixed-pwrite", "4 KiB random, QD 32: fixed dma-buf reads against READ + pwrite", "4 KiB random", FIXED, "READ + pwrite", 32, 1.1),
    ratio("io-fixed-passthrough", "4 KiB random, QD 32: fixed dma-buf reads against per-I/O mapped reads, passthrough IOMMU (the series: equal)", "4 KiB random", FIXED, "mapped passthrough", 32, 0.8),
    ratio("io-seq-ceiling", "128 KiB sequential, QD 32: fixed dma-buf reads against fs.readSync at depth 1 (the ceiling)", "128 KiB sequential", FIXED, CEILING, 32, 0.5, 1),
  ];
}

function ioNotes(iotlbInvalidateNs: number): string[] {
  return [
    "every storage device is one worker thread over the same host file; its reads are fs.readSync from the host's page cache straight into the pages its IOMMU translates, so the file is cached after its first read, as on a machine with the file in memory",
    `the IOMMU's IOTLB invalidation is a modelled ${iotlbInvalidateNs} ns wait (src/dmabuf/iommu.ts; --iotlb-ns sets it): strict pays it per I/O, lazy per 256, passthrough and a registered dma-buf never`,
    "copy_file_range and fs.readSync are blocking calls: depth 1 only; buffered and direct both read the host's page cache here, so the published direct-I/O gain (1032 -> 3776 MB/s on UFS 4.0) cannot show: direct adds the device's hop and its per-I/O mapping",
    "published (Optane, the io_uring dma-buf series): 570 K IOPS with a strict IOMMU and per-I/O mapping, 5.01 M premapped; equal with passthrough",
  ];
}

export function renderIoTable(r: IoBenchResult): string {
  const f = (x: number | null, d = 2) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(d));
  return [
    `dmabuf-lab bench io${r.quick ? " --quick" : ""}: ${r.date}`,
    `machine: ${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}; a ${sizeLabel(r.fileBytes)} file, ${r.budgetMs} ms per case, ` +
      `IOTLB invalidation ${r.iotlbInvalidateNs} ns`,
    "",
    table(["pattern", "method", "QD", "IOPS", "GB/s", "p50 us", "p99 us", "x fixed", "x ceiling"], r.rows.map((x) => [
      x.pattern, x.method, String(x.qd), Math.round(x.iops).toString(), f(x.gbps, 3), f(x.p50Us, 1), f(x.p99Us, 1), f(x.vsFixed), f(x.vsCeiling),
    ])),
    "",
    ...renderTargets(r.targets, "targets: ratios of IOPS in the same run"),
    "",
    ...renderNotes(r.notes),
  ].join("\n") + "\n";
}

/** The result as JSON, without the trace (--trace writes that to its own file). */
export const ioJson = ({ trace: _trace, ...r }: IoBenchResult): object => r;

export function ioCharts(r: IoBenchResult): Chart[] {
  const subtitle = `${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${r.date.slice(0, 10)}; ${sizeLabel(r.fileBytes)} file`;
  return PATTERNS.map((p): Chart => ({
    kind: "bars",
    title: `bench io: ${p.name} reads into a dma-buf, ${p.random ? "IOPS" : "GB/s"} by queue depth`,
    subtitle,
    value: p.random ? { label: "IOPS (log scale)", scale: "log10", unit: "count" } : { label: "GB/s", scale: "linear", unit: "GB/s" },
    groups: IO_DEPTHS.map((qd) => ({
      name: `QD ${qd}`,
      bars: r.rows.filter((x) => x.pattern === p.name && x.qd === qd).map((x) => ({ name: x.method, value: p.random ? x.iops : x.gbps })),
    })),
  }));
}

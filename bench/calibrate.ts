/*
 * Calibrating AUTO: for each size bucket and alignment class, which fixed
 * strategy (bulk, simd, words, bytes) copies fastest on this machine.
 *
 * Sizes are the powers of two 1 B .. 64 MiB; a size of 2^k falls in bucket
 * k + 1 (the engine's bucket is the bit length of the segment length).
 * Bucket 0 (empty segments) takes bucket 1's choice and buckets above 64 MiB
 * take the 64 MiB choice. "aligned" puts source and destination on 64-byte
 * boundaries; "misaligned" at +3 and +13 (AUTO's misaligned class is any
 * segment with (dst | src) & 7 != 0).
 *
 * Each measurement copies through one sgCopy call per table, the way AUTO
 * runs: a table of k segments of the size (k = 256 KiB / size, between 1 and
 * 4096), `batch` tables per timed sample, in three rounds over the four
 * strategies (alternating their order) whose samples are pooled. Every
 * segment of a table copies the same source to the same destination, so the
 * data is as hot as its size allows (a 4 KiB copy runs from L1, a 64 KiB one
 * from L2, 64 MiB from DRAM), as in the contiguous regime of bench copy: the
 * winner differs between those levels. The winner is the lowest p50, except
 * that bulk (memory.copy) keeps a bucket unless the fastest leads it by more
 * than 3% and by more than the two rme (95% margins of error of the means)
 * added, so noise does not flip the table between runs. Segments of up to
 * 256 bytes always take the inline SIMD paths inside the engine, so buckets
 * 0..8 are measured and written but never consulted (bucket 9 is, for
 * 257..511 bytes).
 *
 * Contract: runCalibration() returns data and prints nothing.
 */
import { Lab } from "../src/api/lab.js";
import type { Calibration } from "../src/engine/calibration.js";
import { AUTO_BUCKETS } from "../src/engine/abi.js";
import { fixedStrategyNames, type FixedStrategy } from "../src/engine/strategy.js";
import { budgetFor, fillPattern, measure, sizeLabel } from "./harness.js";
import { machineInfo, summarize, type Chart, type MachineInfo } from "../src/report.js";
export { saveCalibration } from "../src/cli/calibration_file.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const MAX_SIZE_LOG2 = 26;
const TIE_MARGIN = 0.03;

export interface CalibrationCell {
  bucket: number;
  bytes: number;
  alignment: "aligned" | "misaligned";
  segments: number;
  batch: number;
  /** GB/s from the p50, per strategy. */
  gbps: Record<FixedStrategy, number>;
  /** rme (%) of each strategy's mean. */
  rme: Record<FixedStrategy, number>;
  fastest: FixedStrategy;
  chosen: FixedStrategy;
}

export interface CalibrationResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  calibration: Calibration;
  cells: CalibrationCell[];
  notes: string[];
  durationMs: number;
}

export type CalibrationProgress = { index: number; total: number; label: string };

export async function runCalibration(
  options: { quick?: boolean } = {},
  onProgress: (event: CalibrationProgress) => void = () => {},
): Promise<CalibrationResult> {
  const started = performance.now();
  const quick = options.quick ?? false;
  const rounds = quick ? 1 : 3;
  const budget = quick
    ? { ...budgetFor(true), timeMs: 25 }
    : { ...budgetFor(false), timeMs: 50, warmupMs: 10, minSamples: 3 };
  const lab = await Lab.create({ memoryBytes: 512 * MiB, poolBytes: 2 * MiB });
  const engine = lab.engine;
  const region = 128 * MiB;
  const src = lab.alloc(region);
  const dst = lab.alloc(region);
  fillPattern(src, 4);
  const table = lab.sgTable(4096);
  const cells: CalibrationCell[] = [];
  const total = 2 * (MAX_SIZE_LOG2 + 1);
  try {
    for (let k = 0; k <= MAX_SIZE_LOG2; k++) {
      for (const alignment of ["aligned", "misaligned"] as const) {
        const bytes = 2 ** k;
        const so = alignment === "aligned" ? 0 : 3;
        const dO = alignment === "aligned" ? 0 : 13;
        const segments = Math.max(1, Math.min(4096, Math.floor((256 * KiB) / bytes)));
        table.clear();
        for (let i = 0; i < segments; i++) table.push(dst.byteOffset + dO, src.byteOffset + so, bytes);
        const batch = Math.max(1, Math.min(64, Math.ceil(MiB / (segments * bytes))));
        onProgress({ index: cells.length, total, label: `${sizeLabel(bytes)} ${alignment}` });
        // Rounds, each over all four strategies, pooled: a passing change of
        // the host's state then falls on every strategy alike.
        const samples = new Map<FixedStrategy, number[]>(fixedStrategyNames.map((s) => [s, []]));
        for (let round = 0; round < rounds; round++) {
          const order = round % 2 === 0 ? fixedStrategyNames : [...fixedStrategyNames].reverse();
          const got = measure(order.map((s) => ({
            name: s, batch, body: () => { for (let b = 0; b < batch; b++) engine.sgCopy(table, s); },
          })), budget);
          for (const s of fixedStrategyNames) samples.get(s)!.push(...got.get(s)!);
        }
        const stats = Object.fromEntries(fixedStrategyNames.map((s) => [s, summarize(samples.get(s)!)])) as
          Record<FixedStrategy, ReturnType<typeof summarize>>;
        const gbps = Object.fromEntries(fixedStrategyNames.map((s) => [s, (segments * bytes) / stats[s].p50Ns])) as Record<FixedStrategy, number>;
        const rme = Object.fromEntries(fixedStrategyNames.map((s) => [s, stats[s].rme])) as Record<FixedStrategy, number>;
        const fastest = fixedStrategyNames.reduce((a, b) => (gbps[b] > gbps[a] ? b : a));
        // Another strategy displaces bulk only when it is faster by more than
        // the tie margin and by more than the two margins of error together.
        const lead = gbps[fastest] / gbps.bulk - 1;
        const chosen = lead > Math.max(TIE_MARGIN, (rme.bulk + rme[fastest]) / 100) ? fastest : "bulk";
        cells.push({ bucket: k + 1, bytes, alignment, segments, batch, gbps, rme, fastest, chosen });
      }
    }
  } finally {
    table.free();
    lab.free(src);
    lab.free(dst);
    lab.close();
  }

  const machine = machineInfo();
  const date = new Date().toISOString();
  const row = (alignment: "aligned" | "misaligned"): FixedStrategy[] => {
    const byBucket = new Map(cells.filter((c) => c.alignment === alignment).map((c) => [c.bucket, c.chosen]));
    return Array.from({ length: AUTO_BUCKETS }, (_, b) => byBucket.get(Math.min(Math.max(b, 1), MAX_SIZE_LOG2 + 1))!);
  };
  const calibration: Calibration = {
    source: `measured by dmabuf-lab bench calibrate${quick ? " --quick" : ""} on ${machine.cpu} (${machine.cpus} CPUs), ` +
      `Node ${machine.node}, ${date.slice(0, 10)}`,
    aligned: row("aligned"),
    misaligned: row("misaligned"),
  };
  return {
    machine, date, quick, calibration, cells,
    notes: [
      "GB/s are p50s through one sgCopy call per table of `segments` segments (all the same src and dst); `batch` tables per sample",
      `bulk keeps a bucket unless the fastest leads by more than ${TIE_MARGIN * 100}% and by more than both rme added; ` +
        "buckets 0..8 (<= 256 B) are never consulted (inline SIMD)",
    ],
    durationMs: Math.round(performance.now() - started),
  };
}

/** The table for people: GB/s per strategy, per bucket and alignment. */
export function renderCalibration(result: CalibrationResult): string {
  const names = fixedStrategyNames;
  const w = 7;
  const half = (label: string) => [label.padEnd(w), ...names.map((n) => n.padStart(w)), " chosen"].join("");
  const out = [
    `dmabuf-lab bench calibrate${result.quick ? " --quick" : ""}: ${result.date}, ${(result.durationMs / 1000).toFixed(0)} s`,
    `machine: ${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}`,
    "GB/s (p50) through sgCopy; * marks the fastest",
    "",
    `${"bucket".padEnd(7)}${"size".padEnd(8)}| ${half("aligned")} | ${half("misal.")}`,
  ];
  const byBucket = new Map<number, CalibrationCell[]>();
  for (const c of result.cells) byBucket.set(c.bucket, [...(byBucket.get(c.bucket) ?? []), c]);
  for (const [bucket, cs] of byBucket) {
    const part = (c: CalibrationCell | undefined) => c === undefined ? "" : [
      "".padEnd(w),
      ...names.map((n) => `${c.gbps[n] >= 100 ? c.gbps[n].toFixed(0) : c.gbps[n].toFixed(1)}${n === c.fastest ? "*" : " "}`.padStart(w)),
      ` ${c.chosen.padEnd(6)}`,
    ].join("");
    out.push(`${String(bucket).padEnd(7)}${sizeLabel(cs[0].bytes).padEnd(8)}| ${part(cs.find((c) => c.alignment === "aligned"))} | ` +
      part(cs.find((c) => c.alignment === "misaligned")));
  }
  out.push("", `source: ${result.calibration.source}`, ...result.notes.map((n) => `note: ${n}`));
  return out.join("\n") + "\n";
}

/** GB/s (p50) per strategy against the segment size, one chart per alignment class; bars: the p50 +- rme. */
export function calibrationCharts(result: CalibrationResult): Chart[] {
  return (["aligned", "misaligned"] as const).map((alignment) => {
    const cells = result.cells.filter((c) => c.alignment === alignment);
    return {
      kind: "lines", title: `bench calibrate: ${alignment} segments, GB/s by strategy`,
      subtitle: `${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${result.machine.node}, ${result.date.slice(0, 10)}; ` +
        "p50, bars the 95% margin of error of the mean",
      x: { label: "segment size (log scale)", scale: "log2", unit: "bytes" },
      y: { label: "GB/s (log scale)", scale: "log10", unit: "GB/s" },
      series: fixedStrategyNames.map((s) => ({
        name: s,
        points: cells.map((c) => ({ x: c.bytes, y: c.gbps[s], lo: c.gbps[s] * (1 - c.rme[s] / 100), hi: c.gbps[s] * (1 + c.rme[s] / 100) })),
      })),
    };
  });
}

/*
 * AUTO calibrated on the machine it runs on, at first use.
 *
 * Where memory.copy (bulk) and the v128 loop (simd) trade places depends on
 * the CPU: on one Intel Xeon VM simd wins from 32 KiB to 1 MiB, on the
 * 16-core Xeon and on AMD EPYC bulk wins there by up to 1.5x. So a shipped
 * table is right on one machine and wrong on others. measureAutoTable()
 * times both strategies in the buckets where they trade places
 * (MEASURED_BUCKETS: 16 KiB .. 1 MiB, aligned and misaligned) and keeps the
 * shipped table's choice everywhere else (bulk from 257 bytes up; below,
 * the engine's inline SIMD paths, whatever the table says). simd takes a
 * bucket only when it beats bulk by more than MARGIN, so that noise keeps
 * bulk, which is native memcpy.
 *
 * The measurement: per cell (bucket x alignment) a copy of 3/4 of the
 * bucket's upper bound (24 KiB, 48 KiB, ... 768 KiB; misaligned at +3 and
 * +13), the same source to the same destination (data as hot as its size
 * allows, as in bench copy's contiguous regime), batches of about 256 KiB
 * copied, the strategies alternating, rounds until BUDGET_MS have passed
 * (at least MIN_ROUNDS); the best batch of each strategy decides.
 *
 * Contract: measureAutoTable(engine, scratch) reads and writes only
 * `scratch` (two buffers of SCRATCH_BYTES in the DMA range: lab.alloc) and
 * returns a table; it takes under 50 ms. Lab.create() calls it once per
 * JavaScript realm (the first lab; later ones reuse the table), unless
 * given a table or "static" (calibration.json).
 */
import { defaultCalibration, type Calibration } from "./calibration.js";
import type { Engine } from "./engine.js";
import type { FixedStrategy } from "./strategy.js";

export const MEASURED_BUCKETS = [15, 16, 17, 18, 19, 20] as const;
/** Bytes of each of the two scratch buffers: the largest copy plus the misalignment. */
export const SCRATCH_BYTES = 1 << 20;
const MARGIN = 0.05;
const BUDGET_MS = 40;
const MIN_ROUNDS = 3;
const BATCH_BYTES = 256 * 1024;
const contenders: FixedStrategy[] = ["bulk", "simd"];

export interface AutoMeasurement {
  table: Calibration;
  /** Per cell, the best ns per copy of each contender. */
  cells: { bucket: number; bytes: number; misaligned: boolean; ns: Record<string, number> }[];
  rounds: number;
  ms: number;
}

export function measureAutoTable(engine: Engine, dst: Uint8Array, src: Uint8Array): AutoMeasurement {
  const t0 = performance.now();
  const cells = MEASURED_BUCKETS.flatMap((bucket) => [false, true].map((misaligned) => {
    const bytes = 3 << (bucket - 2);
    return { bucket, bytes, misaligned, batch: Math.max(1, Math.round(BATCH_BYTES / bytes)), ns: { bulk: Infinity, simd: Infinity } as Record<string, number> };
  }));
  let rounds = 0;
  for (; rounds < MIN_ROUNDS || performance.now() - t0 < BUDGET_MS; rounds++) {
    for (const c of cells) {
      const d = dst.byteOffset + (c.misaligned ? 13 : 0);
      const s = src.byteOffset + (c.misaligned ? 3 : 0);
      for (const strategy of rounds % 2 === 0 ? contenders : [...contenders].reverse()) {
        const start = performance.now();
        for (let i = 0; i < c.batch; i++) engine.copy(d, s, c.bytes, strategy);
        const ns = ((performance.now() - start) * 1e6) / c.batch;
        if (ns < c.ns[strategy]) c.ns[strategy] = ns;
      }
    }
  }
  const aligned = [...defaultCalibration.aligned];
  const misaligned = [...defaultCalibration.misaligned];
  for (const c of cells) {
    const row = c.misaligned ? misaligned : aligned;
    row[c.bucket] = c.ns.simd * (1 + MARGIN) < c.ns.bulk ? "simd" : "bulk";
  }
  const ms = performance.now() - t0;
  return {
    table: { source: `measured at first use (${rounds} rounds, ${ms.toFixed(0)} ms); elsewhere ${defaultCalibration.source}`, aligned, misaligned },
    cells: cells.map(({ bucket, bytes, misaligned: m, ns }) => ({ bucket, bytes, misaligned: m, ns })), rounds, ms,
  };
}

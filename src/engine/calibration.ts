/*
 * The AUTO calibration table: for each size bucket (b = bit length of the
 * segment length, 0..32) and each alignment class (source and destination
 * both 8-byte aligned, or not), the strategy AUTO uses. Segments of up to
 * 256 bytes always take the inline SIMD paths inside the engine, whatever
 * the table says (so buckets 0..8 are never consulted).
 * calibration.json is the table shipped; `dmabuf-lab bench calibrate --write`
 * saves one measured on the machine at hand in the user's cache directory
 * (src/cli/calibration_file.ts), which the CLI installs with
 * setDefaultCalibration().
 */
import { AUTO_BUCKETS, AUTO_TABLE_SIZE } from "./abi.js";
import { fixedStrategyNames, strategies, type FixedStrategy } from "./strategy.js";
import { DmaBufError } from "../errno.js";
import defaults from "./calibration.json" with { type: "json" };

export interface Calibration {
  /** Where the table came from (machine, date), for people. */
  source: string;
  /** Per size class, smallest first: the strategy `auto` uses when source and destination share their alignment. */
  aligned: FixedStrategy[];
  /** The same for a source and destination of different alignment. */
  misaligned: FixedStrategy[];
}

export const defaultCalibration = defaults as Calibration;

let fallback: Calibration = defaultCalibration;

/**
 * The table Lab.create uses when given none: defaultCalibration, or what a
 * program installs here for all its labs (the CLI installs this machine's
 * saved table). Checked first: EINVAL changes nothing.
 */
export function setDefaultCalibration(table: Calibration): void {
  encodeCalibration(table);
  fallback = table;
}

export const currentDefaultCalibration = (): Calibration => fallback;

/** Checks a table and encodes it as the engine's 66 strategy bytes. */
export function encodeCalibration(table: Calibration): Uint8Array {
  const bytes = new Uint8Array(AUTO_TABLE_SIZE);
  const rows: [string, FixedStrategy[]][] = [["aligned", table.aligned], ["misaligned", table.misaligned]];
  rows.forEach(([name, row], r) => {
    if (!Array.isArray(row) || row.length !== AUTO_BUCKETS) {
      throw new DmaBufError("EINVAL", "set_calibration", `${name} must list ${AUTO_BUCKETS} strategies, one per size bucket`);
    }
    row.forEach((s, b) => {
      if (!fixedStrategyNames.includes(s)) {
        throw new DmaBufError("EINVAL", "set_calibration",
          `${name}[${b}] is '${s}'; AUTO may choose ${fixedStrategyNames.join(", ")}`);
      }
      bytes[r * AUTO_BUCKETS + b] = strategies[s];
    });
  });
  return bytes;
}

/** The bucket of a segment length, as the engine computes it. */
export function sizeBucket(len: number): number {
  return len === 0 ? 0 : 32 - Math.clz32(len);
}

/*
 * Runs: a range of memory as a list of contiguous pieces. A range of a
 * dma-buf is the pieces of its scatter list that hold it; a list of user
 * iovecs is one run each; zipRuns pairs two such lists of equal length
 * piece by piece, which is how the read/write path and cache maintenance
 * turn "these bytes of the buffer against those bytes" into one descriptor
 * table for the engine.
 */
import { SG_SEG_ADDR, SG_SEG_LEN, SG_SEG_SIZE } from "../engine/abi.js";
import type { DmaBufRecord } from "./dma_buf.js";

export interface Run {
  /** Arena offset of the first byte (when `view` is undefined or inside the arena). */
  addr: number;
  len: number;
  /** The user's view, for iovecs (possibly of memory outside the arena). */
  view?: Uint8Array;
}

/**
 * The buffer's runs holding [pos, pos + len), clipped to the buffer. Reads
 * the scatter list's words directly and stops once the range is covered: a
 * hot path, called for every read and write.
 */
export function bufferRuns(buf: DmaBufRecord, pos: number, len: number): Run[] {
  const runs: Run[] = [];
  const { offset: list, count } = buf.segmentTable;
  const u32 = buf.sync.u32;
  let skip = pos;
  let left = len;
  for (let i = 0; i < count && left > 0; i++) {
    const at = (list + i * SG_SEG_SIZE) >>> 2;
    const segLen = u32[at + (SG_SEG_LEN >>> 2)];
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = Math.min(segLen - skip, left);
    runs.push({ addr: u32[at + (SG_SEG_ADDR >>> 2)] + skip, len: n });
    left -= n;
    skip = 0;
  }
  return runs;
}

/** Iovecs as runs (addr is the view's offset, meaningful for arena views). */
export const iovRuns = (iov: Uint8Array[]): Run[] => iov.map((v) => ({ addr: v.byteOffset, len: v.byteLength, view: v }));

/**
 * Calls fn for each piece where runs of `a` and `b` overlap, in order, with
 * the two runs and the offsets into them; stops when either list ends.
 */
export function zipRuns(a: Run[], b: Run[], fn: (ra: Run, aOff: number, rb: Run, bOff: number, n: number) => void): void {
  let i = 0;
  let j = 0;
  let aOff = 0;
  let bOff = 0;
  while (i < a.length && j < b.length) {
    const n = Math.min(a[i].len - aOff, b[j].len - bOff);
    if (n > 0) fn(a[i], aOff, b[j], bOff, n);
    aOff += n;
    bOff += n;
    if (aOff === a[i].len) { i++; aOff = 0; }
    if (bOff === b[j].len) { j++; bOff = 0; }
  }
}

/*
 * Cache-line splitting, the TypeScript twin of assembly/lines.ts: a range
 * [offset, offset + len) is a head up to the first 64-byte boundary, whole
 * lines, and a tail. The coherence model and write-combined buffers work on
 * this split; a maintenance range with a head or tail is partial-line.
 */
import { CACHE_LINE } from "./abi.js";

export interface LineSplit {
  head: number;
  lines: number;
  tail: number;
}

export function lineSplit(offset: number, len: number): LineSplit {
  const head = Math.min(len, (CACHE_LINE - (offset % CACHE_LINE)) % CACHE_LINE);
  const lines = Math.floor((len - head) / CACHE_LINE);
  return { head, lines, tail: len - head - lines * CACHE_LINE };
}

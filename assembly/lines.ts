/*
 * Cache-line splitting: a segment [addr, addr + len) is cut into an unaligned
 * head (up to the first 64-byte boundary), whole 64-byte lines, and a tail.
 * The SIMD strategy copies lines with four v128 moves; the coherence model
 * and write-combined buffers of later layers work on the same split
 * (src/engine/lines.ts is its TypeScript twin).
 */
import { CACHE_LINE } from "./abi";

/** Bytes from addr to the next line boundary, at most len. */
// @ts-ignore: decorator
@inline export function lineHead(addr: usize, len: usize): usize {
  const head = (CACHE_LINE - (addr & (CACHE_LINE - 1))) & (CACHE_LINE - 1);
  return head < len ? head : len;
}

/** Bytes of whole lines after a head of `head` bytes. */
// @ts-ignore: decorator
@inline export function lineBody(len: usize, head: usize): usize {
  return (len - head) & ~(CACHE_LINE - 1);
}

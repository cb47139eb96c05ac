/*
 * The integrity stamp of the contention experiment: what a whole buffer
 * looks like, so that anyone who reads one can tell whether it saw one
 * generation or a mix.
 *
 *   header (16 bytes)  u32 MAGIC, u32 generation, u32 checksum, u32 writer
 *   payload (the rest) u32 word i = generation ^ (i + 1) * 0x9e3779b1
 *   checksum           xxHash32 (seed 0, the engine's) of the payload
 *
 * Generations are unique in a run (one counter for every writer), so two
 * whole images never share a payload. A buffer is whole when it is
 *   - a stamp: the header has MAGIC, every payload word decodes to the
 *     header's generation and the payload's xxHash is the header's; or
 *   - a fill: every byte is the same (a fresh zeroed buffer, a device fill).
 * Anything else is torn. A device copy moves whole images unchanged, so a
 * copy of a whole buffer is whole.
 *
 * Contract: stamp() and classify() work on views inside the arena (the
 * checksum is one engine call); the view's offset must be 4-byte aligned and
 * its length a multiple of 4, at least 16.
 */
import type { Engine } from "../engine/engine.js";

export const HEADER_BYTES = 16;
export const MAGIC = 0x444e5443; // "CTND", little-endian
const GOLDEN = 0x9e3779b1;
/** The header's u32 words. */
const S_MAGIC = 0;
const S_GENERATION = 1;
const S_CHECKSUM = 2;
const S_WRITER = 3;

export type Header =
  | { kind: "stamp"; generation: number; checksum: number; writer: number }
  | { kind: "fill"; value: number }
  | { kind: "torn" };

const words = (v: Uint8Array): Uint32Array => new Uint32Array(v.buffer, v.byteOffset, v.byteLength >>> 2);

/** Writes generation `generation` of writer `writer` into the whole image. */
export function stamp(image: Uint8Array, generation: number, writer: number, engine: Engine): void {
  const w = words(image);
  for (let i = HEADER_BYTES >>> 2, k = 1; i < w.length; i++, k++) w[i] = (generation ^ Math.imul(k, GOLDEN)) >>> 0;
  w[S_MAGIC] = MAGIC;
  w[S_GENERATION] = generation >>> 0;
  w[S_CHECKSUM] = engine.checksumRange(image.byteOffset + HEADER_BYTES, image.byteLength - HEADER_BYTES);
  w[S_WRITER] = writer >>> 0;
}

/** What the first 16 bytes claim: a stamp, a fill, or nothing whole. */
export function headerOf(view: Uint8Array): Header {
  const w = words(view.subarray(0, HEADER_BYTES));
  if (w[S_MAGIC] === MAGIC) return { kind: "stamp", generation: w[S_GENERATION], checksum: w[S_CHECKSUM], writer: w[S_WRITER] };
  const value = view[0];
  for (let i = 1; i < HEADER_BYTES; i++) if (view[i] !== value) return { kind: "torn" };
  return { kind: "fill", value };
}

/** Whether the whole view is one generation or one fill (see the module comment). */
export function isWhole(view: Uint8Array, engine: Engine): boolean {
  const h = headerOf(view);
  if (h.kind === "torn") return false;
  const w = words(view);
  if (h.kind === "fill") {
    const word = Math.imul(h.value, 0x01010101) >>> 0;
    for (let i = 0; i < w.length; i++) if (w[i] !== word) return false;
    return true;
  }
  for (let i = HEADER_BYTES >>> 2, k = 1; i < w.length; i++, k++) {
    if (w[i] !== ((h.generation ^ Math.imul(k, GOLDEN)) >>> 0)) return false;
  }
  return engine.checksumRange(view.byteOffset + HEADER_BYTES, view.byteLength - HEADER_BYTES) === h.checksum;
}

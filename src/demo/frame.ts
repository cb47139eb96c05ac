/*
 * The demo's frame format, shared by the camera, gpu and display kernels
 * (workers/kernel-*.ts) and the CPU reader (pipeline.ts). Runs anywhere:
 * no Node-only imports.
 *
 * A frame is a 64-byte header, then width x height RGBA pixels (u32 words,
 * little-endian, R in the low byte):
 *   H_MAGIC     FRAME_MAGIC
 *   H_FRAME     the frame number k
 *   H_WIDTH, H_HEIGHT
 *   H_CHECKSUM  the checksum of the pixels as the camera rendered them
 *   H_MASK      what every pixel has been XORed with since (0 from the
 *               camera, INVERT_MASK after the gpu), so that
 *               checksum(pixels ^ mask) == H_CHECKSUM for a whole frame
 * A frame is "whole" when its magic and size are right and its pixels
 * match its checksum: half of frame k and half of frame k+N is not.
 *
 * Frames are reached through views: a kernel's Uint8Array per physically
 * contiguous run of its range (KernelContext.buffers[i]), or one view of a
 * copy read with pread. Each view must start 4-byte aligned and hold a
 * multiple of 4 bytes, and the first must hold the header (page runs do).
 *
 * The verdict is what the display kernel writes for each frame it shows
 * into a small buffer of its own (VERDICT_*: magic, the frame number it
 * saw, 1 if that frame was whole and the expected one, else 0, and 1 if its
 * pixels were whole, whichever frame it was).
 */
import { DmaBufError } from "../errno.js";
import { iovRuns, zipRuns } from "../dmabuf/runs.js";

export const FRAME_MAGIC = 0x4d415246; // "FRAM"
export const HEADER_BYTES = 64;
const H_MAGIC = 0;
const H_FRAME = 1;
const H_WIDTH = 2;
const H_HEIGHT = 3;
const H_CHECKSUM = 4;
const H_MASK = 5;
/** The gpu's transform: RGB inverted, alpha kept. */
export const INVERT_MASK = 0x00ffffff;
/** Width of the camera's moving bar, in pixels. */
const BAR = 16;

export const VERDICT_MAGIC = 0x54434456; // "VDCT"
export const VERDICT_BYTES = 16;
/** The verdict's u32 words. */
const V_MAGIC = 0;
const V_FRAME = 1;
const V_OK = 2;
const V_WHOLE = 3;

export interface FrameInfo {
  /** The header's frame number (meaningless unless whole). */
  frame: number;
  /** The header's mask: 0 from the camera, INVERT_MASK after the gpu. */
  mask: number;
  whole: boolean;
}

export interface Verdict {
  frame: number;
  whole: boolean;
  ok: boolean;
}

export const frameBytes = (width: number, height: number): number => HEADER_BYTES + width * height * 4;

function words(view: Uint8Array, offset: number, bytes: number): Uint32Array {
  return new Uint32Array(view.buffer, view.byteOffset + offset, bytes >>> 2);
}

function header(views: Uint8Array[], width: number, height: number): Uint32Array {
  const total = views.reduce((n, v) => n + v.length, 0);
  const v = views[0];
  if (total < frameBytes(width, height) || v.length < HEADER_BYTES || v.byteOffset % 4 !== 0) {
    throw new DmaBufError("EINVAL", "demo_frame", `a ${width}x${height} frame needs ${frameBytes(width, height)} bytes with a 4-aligned ` +
      `header run; got ${total} bytes in ${views.length} views`);
  }
  return words(v, 0, HEADER_BYTES);
}

/** Calls fn for each contiguous piece of the pixels: their words and the index of the first pixel. */
function pixelSpans(views: Uint8Array[], pixels: number, fn: (px: Uint32Array, first: number) => void): void {
  const end = HEADER_BYTES + pixels * 4;
  let pos = 0;
  for (const v of views) {
    const from = Math.max(pos, HEADER_BYTES);
    const to = Math.min(pos + v.length, end);
    if (to > from) fn(words(v, from - pos, to - from), (from - HEADER_BYTES) >>> 2);
    pos += v.length;
  }
}

/** A 32-bit FNV-1a over the pixels XORed with mask, with a shift for diffusion; order-sensitive. */
export function pixelChecksum(views: Uint8Array[], width: number, height: number, mask: number): number {
  let h = 0x811c9dc5;
  pixelSpans(views, width * height, (px) => {
    for (let i = 0; i < px.length; i++) {
      h = Math.imul(h ^ (px[i] ^ mask), 0x01000193);
      h ^= h >>> 13;
    }
  });
  return h >>> 0;
}

/** The camera: frame k, a diagonal gradient drifting with k and a white bar moving across. */
export function renderFrame(views: Uint8Array[], k: number, width: number, height: number): void {
  const hd = header(views, width, height);
  const barX = (4 * k) % width;
  pixelSpans(views, width * height, (px, first) => {
    let x = first % width;
    let y = (first - x) / width;
    for (let i = 0; i < px.length; i++) {
      const bar = x >= barX && x < barX + BAR;
      const r = bar ? 255 : (x + 3 * k) & 255;
      const g = bar ? 255 : (y + 2 * k) & 255;
      const b = bar ? 255 : ((x ^ y) + k) & 255;
      px[i] = (r | (g << 8) | (b << 16) | (255 << 24)) >>> 0;
      if (++x === width) { x = 0; y++; }
    }
  });
  hd.fill(0);
  hd[H_MAGIC] = FRAME_MAGIC;
  hd[H_FRAME] = k;
  hd[H_WIDTH] = width;
  hd[H_HEIGHT] = height;
  hd[H_CHECKSUM] = pixelChecksum(views, width, height, 0);
}

/** The gpu: dst = src with RGB inverted; the header travels along, its mask updated. */
export function invertFrame(src: Uint8Array[], dst: Uint8Array[], width: number, height: number): void {
  const sh = header(src, width, height);
  const dh = header(dst, width, height);
  zipRuns(iovRuns(src), iovRuns(dst), (a, aOff, b, bOff, n) => {
    const from = words(a.view!, aOff, n);
    const to = words(b.view!, bOff, n);
    for (let i = 0; i < from.length; i++) to[i] = from[i] ^ INVERT_MASK;
  });
  dh.set(sh);
  dh[H_MASK] = (sh[H_MASK] ^ INVERT_MASK) >>> 0;
}

/** Reads a frame's header and checks it is whole. */
export function inspectFrame(views: Uint8Array[], width: number, height: number): FrameInfo {
  const hd = header(views, width, height);
  const whole = hd[H_MAGIC] === FRAME_MAGIC && hd[H_WIDTH] === width && hd[H_HEIGHT] === height &&
    pixelChecksum(views, width, height, hd[H_MASK]) === hd[H_CHECKSUM];
  return { frame: hd[H_FRAME], mask: hd[H_MASK], whole };
}

/** The display's verdict on frame k, written into the first VERDICT_BYTES of view. */
export function writeVerdict(view: Uint8Array, k: number, info: FrameInfo): void {
  const w = words(view, 0, VERDICT_BYTES);
  w[V_MAGIC] = VERDICT_MAGIC;
  w[V_FRAME] = info.frame;
  w[V_OK] = info.whole && info.frame === k && info.mask === INVERT_MASK ? 1 : 0;
  w[V_WHOLE] = info.whole ? 1 : 0;
}

export function readVerdict(view: Uint8Array): Verdict {
  const w = words(view, 0, VERDICT_BYTES);
  if (w[V_MAGIC] !== VERDICT_MAGIC) throw new DmaBufError("EIO", "demo_verdict", `no display verdict (magic 0x${w[V_MAGIC].toString(16)})`);
  return { frame: w[V_FRAME], whole: w[V_WHOLE] === 1, ok: w[V_OK] === 1 };
}

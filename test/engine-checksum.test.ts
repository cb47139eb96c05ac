/*
 * The engine's xxHash32 over segment lists (Engine.checksum/checksumRange),
 * against a plain-JS reference implementation of XXH32 that is itself
 * checked against published test vectors.
 *
 *  - every length 0..300 at every start alignment mod 16, with random seeds,
 *    and larger inputs;
 *  - independence from segmentation: the same bytes split into random
 *    segment lists (contiguous or scattered over the arena, with zero-length
 *    pieces) give the digest of the whole (fast-check, seeded, shrinking);
 *  - out-of-range segments: EFAULT naming the segment, nothing changed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Lab } from "../src/api/lab.js";
import { hex } from "../src/errno.js";
import { dmaBufError } from "./helpers/errors.js";
import { testSeed, withSeed } from "./helpers/prng.js";
import { xxh32 } from "./helpers/xxh32.js";

const seed = testSeed();

// ---- XXH32, the reference (test/helpers/xxh32.ts) -------------------------

const text = (s: string) => new TextEncoder().encode(s);

/** Published vectors: xxhash's sanity checks, Fastly's digest.hash_xxh32, python-xxhash's README. */
const VECTORS: [Uint8Array, number, number][] = [
  [text(""), 0, 0x02cc5d05],
  [text(""), 0x9e3779b1, 0x36b78ae7],
  [text("abc"), 0, 0x32d153ff],
  [text("Nobody inspects the spammish repetition"), 0, 0xe2293b2f],
];

// ---- the engine side ----------------------------------------------------

let lab: Lab;
let data: Uint8Array;
let dataBase: number;

const hex32 = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;

/** The engine's digest of bytes placed at data + at. */
function engineDigest(bytes: Uint8Array, at: number, seedValue: number): number {
  data.set(bytes, at);
  return lab.engine.checksumRange(dataBase + at, bytes.length, seedValue) >>> 0;
}

beforeAll(async () => {
  lab = await Lab.create();
  data = lab.alloc(1 << 21);
  dataBase = lab.offsetOf(data);
});

afterAll(() => {
  lab?.close();
});

describe("the JS reference", () => {
  it("matches the published XXH32 test vectors", () => {
    for (const [bytes, s, want] of VECTORS) expect(hex32(xxh32(bytes, s)), `${bytes.length} bytes, seed ${hex32(s)}`).toBe(hex32(want));
  });
});

describe("the engine's xxHash32", () => {
  it("matches the published test vectors, whole and split", () => {
    for (const [bytes, s, want] of VECTORS) {
      expect(hex32(engineDigest(bytes, 3, s)), `${bytes.length} bytes, seed ${hex32(s)}`).toBe(hex32(want));
    }
    // python-xxhash's streaming example: "Nobody inspects" + " the spammish repetition"
    const a = text("Nobody inspects");
    const b = text(" the spammish repetition");
    data.set(a, 1000);
    data.set(b, 5001);
    const list = lab.segmentList().push(dataBase + 1000, a.length).push(dataBase + 5001, b.length);
    expect(hex32(lab.engine.checksum(list))).toBe(hex32(0xe2293b2f));
    list.free();
  });

  it("matches the reference for every length 0..300, every start mod 16, random seeds", () => withSeed((rng) => {
    const bytes = rng.bytes(new Uint8Array(300 + 64));
    for (let len = 0; len <= 300; len++) {
      for (let align = 0; align < 16; align++) {
        const s = rng.pick([0, 1, 0x9e3779b1, 0xffffffff, rng.int(0, 0xffffffff)]);
        const from = rng.int(0, 64);
        const input = bytes.subarray(from, from + len);
        const want = xxh32(input, s);
        const got = engineDigest(input, 64 * rng.int(0, 100) + align, s);
        if (got !== want) {
          throw new Error(`len=${len} align=${align} seed=${hex32(s)}: engine ${hex32(got)}, reference ${hex32(want)}`);
        }
      }
    }
  }, seed));

  it("matches the reference for larger inputs", () => withSeed((rng) => {
    const bytes = rng.bytes(new Uint8Array((1 << 20) + 64));
    const lengths = [301, 1023, 4096, 4097, 65535, 65536 + 15, (1 << 20) + 7];
    for (let i = 0; i < 20; i++) lengths.push(rng.int(300, 200_000));
    for (const len of lengths) {
      const s = rng.int(0, 0xffffffff);
      const input = bytes.subarray(0, len);
      const align = rng.int(0, 63);
      expect(hex32(engineDigest(input, align, s)), `len=${len} align=${align} seed=${hex32(s)}`).toBe(hex32(xxh32(input, s)));
    }
  }, seed));

  it("takes the seed modulo 2^32", () => {
    const input = text("the seed wraps");
    expect(engineDigest(input, 0, -1)).toBe(engineDigest(input, 0, 0xffffffff));
    expect(engineDigest(input, 0, 2 ** 32 + 5)).toBe(xxh32(input, 5));
  });
});

describe("independence from segmentation", () => {
  it("any split of the same bytes into a segment list gives the digest of the whole (fast-check)", () => withSeed((rng) => {
    const list = lab.segmentList(4);
    const scatterBase = 1 << 20; // pieces are placed in the upper half of `data`
    fc.assert(fc.property(
      fc.uint8Array({ maxLength: 1500 }),
      fc.array(fc.integer({ min: 0, max: 1500 }), { maxLength: 40 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 63 }),
      (bytes, cuts, scattered, s, align) => {
        const want = xxh32(bytes, s);
        // the pieces: between sorted cut points, zero-length pieces included
        const points = [0, ...cuts.map((c) => Math.min(c, bytes.length)).sort((x, y) => x - y), bytes.length];
        const whole = engineDigest(bytes, align, s);
        list.clear();
        let place = scatterBase + align;
        for (let i = 0; i + 1 < points.length; i++) {
          const [a, b] = [points[i], points[i + 1]];
          if (scattered) {
            // each piece somewhere else, at its own misalignment, out of order in memory
            place += 64 + ((a * 7 + b) & 63);
            data.set(bytes.subarray(a, b), place);
            list.push(dataBase + place, b - a);
            place += b - a;
          } else {
            list.push(dataBase + align + a, b - a);
          }
        }
        const split = lab.engine.checksum(list, s) >>> 0;
        const where = `${bytes.length} bytes in ${points.length - 1} ${scattered ? "scattered" : "contiguous"} pieces, seed ${hex32(s)}`;
        expect(hex32(whole), `${where}: whole range`).toBe(hex32(want));
        expect(hex32(split), `${where}: segment list`).toBe(hex32(want));
      },
    ), { seed: rng.seed, numRuns: 400 });
    list.free();
  }, seed));

  it("an empty list is the digest of no bytes", () => {
    const list = lab.segmentList();
    expect(lab.engine.checksum(list) >>> 0).toBe(0x02cc5d05);
    expect(lab.engine.checksum(list, 0x9e3779b1) >>> 0).toBe(0x36b78ae7);
    list.push(dataBase, 0).push(dataBase + 17, 0);
    expect(lab.engine.checksum(list) >>> 0).toBe(0x02cc5d05);
    list.free();
  });
});

describe("out-of-range segments", () => {
  it("are refused with EFAULT naming the segment, and nothing changes", () => withSeed((rng) => {
    const { dmaLo, dmaHi } = lab.arena;
    const bytes = rng.bytes(new Uint8Array(4096));
    data.set(bytes, 0);
    const bads = [
      { addr: dmaLo - 8, len: 16 },
      { addr: 0, len: 1 },
      { addr: dmaHi - 2, len: 3 },
      { addr: 0xffffff00, len: 0x200 },
      { addr: dataBase, len: 0xffffffff },
    ];
    const list = lab.segmentList(2);
    for (const bad of bads) {
      const good = Array.from({ length: rng.int(0, 6) }, () => {
        const len = rng.int(0, 1000);
        return { addr: dataBase + rng.int(0, 4096 - len), len };
      });
      const k = rng.int(0, good.length);
      const segs = [...good.slice(0, k), bad, ...good.slice(k)];
      list.clear();
      for (const s of segs) list.push(s.addr, s.len);
      const listBytes = lab.arena.u8.slice(list.offset, list.offset + 8 * list.count);
      const before = lab.engine.checksumRange(dataBase, 4096, 7);
      const e = dmaBufError(() => lab.engine.checksum(list, 7));
      const where = `segment ${k} {addr=${hex(bad.addr)}, len=${bad.len}} of ${segs.length}`;
      expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: "sg_checksum" });
      expect(e.message, where).toContain(`segment ${k} {addr=${hex(bad.addr)}, len=${bad.len}}`);
      expect(Buffer.compare(data.subarray(0, 4096), bytes), `${where}: the data changed`).toBe(0);
      expect(Buffer.compare(lab.arena.u8.subarray(list.offset, list.offset + 8 * list.count), listBytes),
        `${where}: the list changed`).toBe(0);
      // the engine is still usable and unaffected
      expect(lab.engine.checksumRange(dataBase, 4096, 7), where).toBe(before);
      expect(before >>> 0).toBe(xxh32(bytes, 7));
    }
    list.free();
  }, seed));
});

/*
 * The copy engine's contiguous copies, strategy by strategy, against results
 * computed in plain JavaScript (TypedArray.set / copyWithin on ordinary
 * memory), with canaries around every destination.
 *
 *  - exhaustive: every strategy x every length 0..300 x every source offset
 *    mod 64 x every destination offset mod 64. The 64 destinations of one
 *    (strategy, length, source offset) sit in canary-filled slots of one
 *    area, which is compared with its JS model in a single Buffer.compare;
 *    the canaries between and around the slots are part of that comparison.
 *  - auto under any calibration table (every fixed strategy, a random mix);
 *  - copies that read or write the last bytes of memory (no over-read);
 *  - large copies across 4 KiB page boundaries;
 *  - overlapping source and destination: memmove semantics in both
 *    directions for every strategy but reference, which copies forward only
 *    and refuses dst > src overlaps with EINVAL, moving nothing;
 *  - the Lab.copy() surface: views, foreign views, size and strategy errors;
 *  - EFAULT for ranges outside the DMA range or wrapping around 2^32.
 *
 * Randomness is seeded: a failure names DMABUF_SEED=<seed> to replay it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "../src/api/lab.js";
import { hex } from "../src/errno.js";
import { fixedStrategyNames, strategyNames, type FixedStrategy, type StrategyName } from "../src/engine/strategy.js";
import { defaultCalibration, type Calibration } from "../src/engine/calibration.js";
import { AUTO_BUCKETS } from "../src/engine/abi.js";
import { expectSame, firstDifference, same } from "./helpers/bytes.js";
import { CANARY, brokenCanary, guard } from "./helpers/canary.js";
import { dmaBufError } from "./helpers/errors.js";
import { prng, testSeed, withSeed, type Prng } from "./helpers/prng.js";

const seed = testSeed();
const MAX_LEN = 300;
const MARGIN = 64;
/** Strategies with memmove semantics (reference copies forward only). */
const MEMMOVE_STRATEGIES: StrategyName[] = ["bulk", "simd", "words", "bytes", "auto"];

let lab: Lab;
/** The source region in the arena and its JS twin (ordinary memory). */
let src: Uint8Array;
let srcModel: Uint8Array;
/** The destination area of the exhaustive test, and its JS model. */
let area: Uint8Array;
let expected: Uint8Array;
/** A random pattern without the canary byte, for overlap windows. */
let pool: Uint8Array;

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Random bytes that never equal the canary, so that a canary is always distinguishable. */
function pattern(rng: Prng, len: number): Uint8Array {
  const bytes = rng.bytes(new Uint8Array(len));
  for (let i = 0; i < len; i++) if (bytes[i] === CANARY) bytes[i] = CANARY ^ 0x5a;
  return bytes;
}

beforeAll(async () => {
  lab = await Lab.create();
  const rng = prng(seed ^ 0x5eed);
  srcModel = pattern(rng, 8192);
  src = lab.alloc(srcModel.length);
  src.set(srcModel);
  area = lab.alloc(64 * alignUp(MAX_LEN + 3 * MARGIN, 64));
  expected = new Uint8Array(area.length);
  pool = pattern(rng, 16384);
});

afterAll(() => {
  lab?.close();
});

/**
 * Copies every length 0..300 from every source offset mod 64 to every
 * destination offset mod 64 with one strategy, and checks each batch of 64
 * destinations (and the canaries around them) against the JS model.
 */
function exhaustive(strategy: StrategyName, rng: Prng, label: string = strategy): void {
  const areaBase = lab.offsetOf(area);
  const srcBase = lab.offsetOf(src);
  for (let len = 0; len <= MAX_LEN; len++) {
    // Slot s holds the destination at s * stride + MARGIN + dstOff, with
    // at least MARGIN canary bytes before and after it.
    const stride = alignUp(len + MARGIN + 63 + MARGIN, 64);
    const used = stride * 64;
    const dstArea = area.subarray(0, used);
    const model = expected.subarray(0, used);
    for (let srcOff = 0; srcOff < 64; srcOff++) {
      // A different part of the source pattern each time, same offset mod 64.
      const from = 64 * rng.int(0, (srcModel.length - MAX_LEN - 64) / 64 - 1) + srcOff;
      const bytes = srcModel.subarray(from, from + len);
      model.fill(CANARY);
      for (let dstOff = 0; dstOff < 64; dstOff++) model.set(bytes, dstOff * stride + MARGIN + dstOff);
      dstArea.fill(CANARY);
      for (let dstOff = 0; dstOff < 64; dstOff++) {
        lab.engine.copy(areaBase + dstOff * stride + MARGIN + dstOff, srcBase + from, len, strategy);
      }
      if (!same(dstArea, model)) {
        for (let dstOff = 0; dstOff < 64; dstOff++) {
          const at = dstOff * stride + MARGIN + dstOff;
          const where = `${label}: len=${len} src%64=${srcOff} dst%64=${dstOff}`;
          const canary = brokenCanary({ area: dstArea, at, len });
          expect(canary, where).toBeUndefined();
          const i = firstDifference(dstArea.subarray(at, at + len), bytes);
          expect(i, `${where}: first wrong destination byte`).toBe(-1);
        }
        const i = firstDifference(dstArea, model);
        throw new Error(`${label}: len=${len} src%64=${srcOff}: area byte ${i} (outside every canary margin) changed`);
      }
    }
  }
  expect(same(src, srcModel), `${label}: the source changed`).toBe(true);
}

describe("every strategy x length 0..300 x src offset 0..63 x dst offset 0..63", () => {
  for (const strategy of strategyNames) {
    it(`${strategy}`, () => withSeed((rng) => exhaustive(strategy, rng), seed));
  }
});

describe("auto follows any calibration table", () => {
  const tables: [string, (rng: Prng) => FixedStrategy[]][] = [
    ...fixedStrategyNames.map((f): [string, (rng: Prng) => FixedStrategy[]] => [`all ${f}`, () => Array(AUTO_BUCKETS).fill(f)]),
    ["a random mix", (rng) => Array.from({ length: AUTO_BUCKETS }, () => rng.pick(fixedStrategyNames))],
  ];
  for (const [name, row] of tables) {
    it(`${name}`, () => withSeed((rng) => {
      const calibration: Calibration = { source: `test: ${name}`, aligned: row(rng), misaligned: row(rng) };
      lab.setCalibration(calibration);
      try {
        exhaustive("auto", rng, `auto (${name}: ${JSON.stringify(calibration)})`);
      } finally {
        lab.setCalibration(defaultCalibration);
      }
    }, seed));
  }
});

describe("copies that end at the very end of memory", () => {
  const TAIL = 512;
  for (const strategy of strategyNames) {
    it(`${strategy}: reads and writes up to the last byte`, () => withSeed((rng) => {
      const end = lab.arena.dmaHi;
      expect(end).toBe(lab.memory.buffer.byteLength);
      const tail = lab.arena.view(end - TAIL, TAIL);
      const saved = tail.slice(); // user memory of no view of this test: restored afterwards
      const scratch = lab.alloc(TAIL + 2 * MARGIN);
      for (const view of [src, scratch]) {
        expect(view.byteOffset + view.byteLength <= end - TAIL, "this test's buffers lie outside the tail").toBe(true);
      }
      try {
        const model = new Uint8Array(TAIL);
        for (let len = 0; len <= MAX_LEN; len++) {
          for (let gap = 0; gap < 4; gap++) {
            const where = `${strategy}: len=${len}, ending ${gap} bytes before the end of memory`;
            // read: the source ends at end - gap
            const data = pattern(rng, TAIL);
            tail.set(data);
            const g = guard(scratch, MARGIN, len);
            lab.engine.copy(lab.offsetOf(scratch) + MARGIN, end - gap - len, len, strategy);
            expect(brokenCanary(g), where).toBeUndefined();
            expectSame(scratch.subarray(MARGIN, MARGIN + len), data.subarray(TAIL - gap - len, TAIL - gap), `${where} (read)`);
            // write: the destination ends at end - gap; everything else in the tail is canary
            tail.fill(CANARY);
            const from = rng.int(0, srcModel.length - len);
            lab.engine.copy(end - gap - len, lab.offsetOf(src) + from, len, strategy);
            model.fill(CANARY);
            model.set(srcModel.subarray(from, from + len), TAIL - gap - len);
            expectSame(tail, model, `${where} (write)`);
          }
        }
      } finally {
        tail.set(saved);
        lab.free(scratch);
      }
    }, seed));
  }
});

describe("large copies across page boundaries", () => {
  const sizes = [1 << 20, (1 << 20) + 1, (1 << 20) + 4095, (1 << 20) + 333, 3 * 4096 + 17, 65536 + 7];
  // [source offset, destination offset] inside a 4 KiB page.
  const offsets: [number, number][] = [[0, 0], [4095, 1], [7, 4093], [4000, 96], [2049, 2051]];
  let bigSrc: Uint8Array;
  let bigModel: Uint8Array;
  let bigDst: Uint8Array;

  beforeAll(() => {
    const size = (1 << 20) + 3 * 4096;
    bigModel = pattern(prng(seed ^ 0xb16), size);
    bigSrc = lab.alloc(size, { align: 4096 });
    bigSrc.set(bigModel);
    bigDst = lab.alloc(size + 4096, { align: 4096 });
  });

  for (const strategy of strategyNames) {
    it(`${strategy}`, () => {
      for (const len of sizes) {
        for (const [so, dof] of offsets) {
          const at = 4096 + dof;
          const g = guard(bigDst, at, len);
          lab.engine.copy(lab.offsetOf(bigDst) + at, lab.offsetOf(bigSrc) + so, len, strategy);
          const where = `${strategy}: len=${len} src page offset ${so}, dst page offset ${dof}`;
          expect(brokenCanary(g), where).toBeUndefined();
          if (!same(bigDst.subarray(at, at + len), bigModel.subarray(so, so + len))) {
            const i = firstDifference(bigDst.subarray(at, at + len), bigModel.subarray(so, so + len));
            throw new Error(`${where}: destination byte ${i} is wrong`);
          }
        }
      }
      expect(same(bigSrc, bigModel), "the source changed").toBe(true);
    });
  }
});

describe("overlapping source and destination", () => {
  /** Alignments (mod 64) of the lower end of the overlapping window. */
  const ALIGNS = [0, 1, 7, 8, 33, 63];
  const MAX_N = 301; // overlaps of 1..300 bytes
  let window: Uint8Array;
  let init: Uint8Array;
  let model: Uint8Array;

  beforeAll(() => {
    const maxSlots = 2 * MAX_N - 1;
    window = lab.alloc(maxSlots * alignUp(2 * MAX_N + 63 + 2 * MARGIN, 64));
    init = new Uint8Array(window.length);
    model = new Uint8Array(window.length);
  });

  /**
   * Runs one batch: for a copy of n bytes with the lower end of the window
   * at `align` mod 64, one slot per displacement d = src - dst in
   * [-(n-1), n-1], each a window of random bytes inside canaries. `run`
   * performs the copy of slot k; `apply` says whether the model moves it.
   */
  function batch(
    rng: Prng, n: number, align: number,
    run: (dst: number, src: number, d: number) => void,
    apply: (d: number) => boolean,
  ): { used: number; slots: { d: number; dst: number; src: number; lo: number }[] } {
    const stride = alignUp(2 * n + 63 + 2 * MARGIN, 64);
    const slots: { d: number; dst: number; src: number; lo: number }[] = [];
    for (let d = -(n - 1); d <= n - 1; d++) {
      const k = slots.length;
      const lo = k * stride + MARGIN + align; // the lower end of the window
      const dst = d >= 0 ? lo : lo - d;
      const srcAt = d >= 0 ? lo + d : lo;
      slots.push({ d, dst, src: srcAt, lo });
    }
    const used = slots.length * stride;
    init.fill(CANARY, 0, used);
    for (const s of slots) {
      const w = n + Math.abs(s.d);
      const p = rng.int(0, pool.length - w);
      init.set(pool.subarray(p, p + w), s.lo);
    }
    model.set(init.subarray(0, used));
    for (const s of slots) if (apply(s.d)) model.copyWithin(s.dst, s.src, s.src + n);
    window.set(init.subarray(0, used));
    const base = lab.offsetOf(window);
    for (const s of slots) run(base + s.dst, base + s.src, s.d);
    return { used, slots };
  }

  function check(strategy: StrategyName, n: number, align: number, b: ReturnType<typeof batch>): void {
    const got = window.subarray(0, b.used);
    const want = model.subarray(0, b.used);
    if (same(got, want)) return;
    for (const s of b.slots) {
      const w = n + Math.abs(s.d);
      const where = `${strategy}: n=${n} dst=${s.dst % 64}(mod 64) src=${s.src % 64}(mod 64) d=src-dst=${s.d}`;
      expect(brokenCanary({ area: got, at: s.lo, len: w }), where).toBeUndefined();
      const i = firstDifference(got.subarray(s.lo, s.lo + w), want.subarray(s.lo, s.lo + w));
      expect(i, `${where}: first wrong byte of the window`).toBe(-1);
    }
    throw new Error(`${strategy}: n=${n} align=${align}: byte ${firstDifference(got, want)} of the area changed`);
  }

  for (const strategy of MEMMOVE_STRATEGIES) {
    it(`${strategy}: memmove semantics, dst < src and dst > src, overlaps of 1..300 bytes`, () => withSeed((rng) => {
      for (const align of ALIGNS) {
        for (let n = 1; n <= MAX_N; n++) {
          const b = batch(rng, n, align, (dst, s) => lab.engine.copy(dst, s, n, strategy), () => true);
          check(strategy, n, align, b);
        }
      }
    }, seed));
  }

  it("reference: dst < src overlaps copy forward correctly; dst > src overlaps are refused with EINVAL", () => withSeed((rng) => {
    for (const align of ALIGNS) {
      for (let n = 1; n <= MAX_N; n++) {
        const refused: string[] = [];
        const b = batch(rng, n, align, (dst, s, d) => {
          if (d >= 0) {
            lab.engine.copy(dst, s, n, "reference");
            return;
          }
          const e = dmaBufError(() => lab.engine.copy(dst, s, n, "reference"));
          if (e.code !== "EINVAL" || e.errno !== 22 || e.syscall !== "copy" ||
              !e.message.includes(`dst=${hex(dst)}`) || !e.message.includes(`src=${hex(s)}`) ||
              !e.message.includes(`len=${n}`) || !e.message.includes("reference")) {
            refused.push(`n=${n} d=${d}: ${e.code} ${e.message}`);
          }
        }, (d) => d >= 0);
        expect(refused, `align ${align}`).toEqual([]);
        check("reference", n, align, b);
      }
    }
  }, seed));
});

describe("Lab.copy()", () => {
  it("copies a view into the start of a larger view with each strategy", () => withSeed((rng) => {
    const dst = lab.alloc(1024);
    const srcView = lab.alloc(1024);
    for (const strategy of strategyNames) {
      for (let round = 0; round < 50; round++) {
        const len = rng.int(0, 400);
        const at = rng.int(MARGIN, 1024 - MARGIN - len);
        const from = rng.int(0, 1024 - len);
        srcView.set(pattern(rng, 1024));
        const want = srcView.slice(from, from + len);
        const g = guard(dst, at, len);
        lab.copy(dst.subarray(at, at + len + rng.int(0, MARGIN)), srcView.subarray(from, from + len), strategy);
        const where = `${strategy}: len=${len} dst+${at} src+${from}`;
        expect(brokenCanary(g), where).toBeUndefined();
        expect(same(dst.subarray(at, at + len), want), where).toBe(true);
      }
    }
    lab.free(dst);
    lab.free(srcView);
  }, seed));

  /**
   * Runs refuse() on a 256-byte destination, with canaries around [64, 64 +
   * len), and a patterned 256-byte source; then the canaries and every byte
   * of the destination must be as before.
   */
  function expectNothingCopied(len: number, refuse: (dst: Uint8Array, srcView: Uint8Array) => void): void {
    const dst = lab.alloc(256);
    const srcView = lab.alloc(256);
    srcView.set(pattern(prng(seed), 256));
    const g = guard(dst, 64, len);
    const before = dst.slice();
    refuse(dst, srcView);
    expect(brokenCanary(g)).toBeUndefined();
    expect(same(dst, before)).toBe(true);
    lab.free(dst);
    lab.free(srcView);
  }

  it("refuses a source longer than the destination with EINVAL and copies nothing", () => expectNothingCopied(100, (dst, srcView) => {
    const e = dmaBufError(() => lab.copy(dst.subarray(64, 164), srcView.subarray(0, 101), "bulk"));
    expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall: "copy" });
    expect(e.message).toContain("101");
    expect(e.message).toContain("100");
  }));

  it("copies foreign (ordinary ArrayBuffer) views through the slow path", () => withSeed((rng) => {
    const arenaView = lab.alloc(1024);
    for (const strategy of strategyNames) {
      const len = rng.int(1, 600);
      const data = pattern(rng, len);
      // foreign source, arena destination
      let g = guard(arenaView, MARGIN, len);
      lab.copy(arenaView.subarray(MARGIN, MARGIN + len), new Uint8Array(data), strategy);
      expect(brokenCanary(g), `${strategy} foreign -> arena`).toBeUndefined();
      expect(same(arenaView.subarray(MARGIN, MARGIN + len), data), `${strategy} foreign -> arena`).toBe(true);
      // arena source, foreign destination
      const foreign = new Uint8Array(len + 2 * MARGIN);
      g = guard(foreign, MARGIN, len);
      lab.copy(foreign.subarray(MARGIN, MARGIN + len), arenaView.subarray(MARGIN, MARGIN + len), strategy);
      expect(brokenCanary(g), `${strategy} arena -> foreign`).toBeUndefined();
      expect(same(foreign.subarray(MARGIN, MARGIN + len), data), `${strategy} arena -> foreign`).toBe(true);
      // both foreign
      const other = new Uint8Array(len + 2 * MARGIN);
      g = guard(other, MARGIN, len);
      lab.copy(other.subarray(MARGIN, MARGIN + len), foreign.subarray(MARGIN, MARGIN + len), strategy);
      expect(brokenCanary(g), `${strategy} foreign -> foreign`).toBeUndefined();
      expect(same(other.subarray(MARGIN, MARGIN + len), data), `${strategy} foreign -> foreign`).toBe(true);
    }
    lab.free(arenaView);
  }, seed));

  it("refuses an unknown strategy with EINVAL naming it, and copies nothing", () => expectNothingCopied(128, (dst, srcView) => {
    for (const call of [
      () => lab.copy(dst.subarray(64, 192), srcView.subarray(0, 128), "turbo" as StrategyName),
      () => lab.engine.copy(lab.offsetOf(dst) + 64, lab.offsetOf(srcView), 128, "turbo" as StrategyName),
    ]) {
      const e = dmaBufError(call);
      expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall: "copy" });
      expect(e.message).toContain("'turbo'");
    }
  }));
});

describe("engine.copy() bounds", () => {
  it("refuses ranges outside the DMA range or wrapping around 2^32 with EFAULT, and copies nothing", () => {
    const { dmaLo, dmaHi } = lab.arena;
    const buf = lab.alloc(4096);
    buf.set(pattern(prng(seed), 4096));
    const good = lab.offsetOf(buf);
    const before = buf.slice();
    const cases: [number, number, number][] = [
      [dmaLo - 16, good, 32],          // dst starts below the DMA range
      [good, dmaLo - 1, 2],            // src starts below it
      [0, good, 8],                    // dst in the engine's static data
      [dmaHi - 8, good, 16],           // dst runs past the end
      [good, dmaHi - 100, 101],        // src runs past the end
      [good, 0xffffff00, 0x200],       // src wraps around 2^32
      [0xffffff00, good, 0x200],       // dst wraps around 2^32
      [good + 1, good, 0xffffffff],    // len wraps dst around 2^32
    ];
    for (const [dst, s, len] of cases) {
      for (const strategy of strategyNames) {
        const e = dmaBufError(() => lab.engine.copy(dst, s, len, strategy));
        const where = `${strategy}: dst=${hex(dst)} src=${hex(s)} len=${len}`;
        expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: "copy" });
        expect(e.message, where).toContain(`dst=${hex(dst)}`);
        expect(e.message, where).toContain(`src=${hex(s)}`);
        expect(e.message, where).toContain(`len=${len}`);
      }
    }
    expect(same(buf, before)).toBe(true);
    lab.free(buf);
  });

  it("accepts a zero-length copy at the very end of the DMA range", () => {
    for (const strategy of strategyNames) lab.engine.copy(lab.arena.dmaHi, lab.arena.dmaHi, 0, strategy);
  });
});

/*
 * Scatter-gather in one engine call: descriptor tables (SgTable, sg_copy)
 * and segment lists (SegmentList, gather and scatter), against plain-JS
 * sequential models over a snapshot of the memory involved, with canaries
 * around every region the engine writes.
 *
 *  - seeded random descriptor tables with zero-length, adjacent,
 *    page-crossing, self-overlapping and overlapping-across-descriptors
 *    segments, for every strategy (reference: EINVAL for a descriptor whose
 *    destination starts inside its own source, nothing moved);
 *  - gather and scatter with random lists (fast-check properties, seeded
 *    and shrinking) and with page lists of 4 KiB pages from the page pool;
 *  - invalid descriptors, segments, linear ranges and table pointers: EFAULT
 *    naming the bad entry and its values, with nothing moved anywhere;
 *  - tables growing past their initial capacity.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Lab } from "../src/api/lab.js";
import { hex } from "../src/errno.js";
import { strategyNames, type StrategyName } from "../src/engine/strategy.js";
import type { SegmentList, SgTable } from "../src/engine/tables.js";
import { expectSame } from "./helpers/bytes.js";
import { CANARY, brokenCanary, guard, type Guarded } from "./helpers/canary.js";
import { dmaBufError } from "./helpers/errors.js";
import { prng, shuffle, testSeed, withSeed, type Prng } from "./helpers/prng.js";

const seed = testSeed();
const PAGE = 4096;
const MARGIN = 64;
/** The interior of the descriptor region: 8 pages, framed by canaries. */
const INTERIOR = 8 * PAGE;

let lab: Lab;
/** Random bytes without the canary value, to refill regions from. */
let pool: Uint8Array;
/** The region descriptors point into: [MARGIN, MARGIN + INTERIOR) is the interior. */
let region: Uint8Array;
let regionGuard: Guarded;
let base: number; // arena offset of the interior

interface Desc { dst: number; src: number; len: number }

/** Fills a view from the random pool (a random slice of it). */
function refill(rng: Prng, view: Uint8Array): void {
  for (let done = 0; done < view.length;) {
    const n = Math.min(view.length - done, pool.length / 2);
    const p = rng.int(0, pool.length - n);
    view.set(pool.subarray(p, p + n), done);
    done += n;
  }
}

/** Refills the interior of the descriptor region and re-arms its canaries. */
function resetRegion(rng: Prng): void {
  regionGuard = guard(region, MARGIN, INTERIOR);
  refill(rng, region.subarray(MARGIN, MARGIN + INTERIOR));
}

/** True when the descriptor's destination starts inside its own source. */
const backward = (d: Desc) => d.dst > d.src && d.dst - d.src < d.len;

/** The model: the descriptors in order, each with memmove semantics. */
function modelSgCopy(snapshot: Uint8Array, descs: Desc[]): Uint8Array {
  const m = snapshot.slice();
  for (const d of descs) m.copyWithin(d.dst - base + MARGIN, d.src - base + MARGIN, d.src - base + MARGIN + d.len);
  return m;
}

/** A random table over the interior, mixing every kind of segment. */
function randomDescs(rng: Prng, count: number): Desc[] {
  const out: Desc[] = [];
  const randLen = () => {
    const r = rng.next();
    return r < 0.1 ? 0 : r < 0.45 ? rng.int(1, 64) : r < 0.8 ? rng.int(65, 300) : rng.int(301, 5000);
  };
  // Clamps a range into the interior.
  const fit = (at: number, len: number): [number, number] => {
    len = Math.min(len, INTERIOR);
    return [Math.max(0, Math.min(at, INTERIOR - len)), len];
  };
  const push = (dst: number, src: number, len: number) => {
    let l = Math.min(len, INTERIOR);
    let d: number, s: number;
    [d, l] = fit(dst, l);
    [s, l] = fit(src, l);
    out.push({ dst: base + d, src: base + s, len: l });
  };
  for (let i = 0; i < count; i++) {
    const prev = out[out.length - 1];
    const kind = rng.int(0, 6);
    const len = randLen();
    if (kind === 0 || prev === undefined) {
      push(rng.int(0, INTERIOR), rng.int(0, INTERIOR), len); // anywhere
    } else if (kind === 1) {
      push(rng.int(0, INTERIOR), rng.int(0, INTERIOR), 0); // zero-length
    } else if (kind === 2) {
      // adjacent: continues the previous descriptor on both sides
      push(prev.dst - base + prev.len, prev.src - base + prev.len, len);
    } else if (kind === 3) {
      // crossing a 4 KiB page boundary on the destination, the source or both
      const l = Math.max(2, len);
      // (the region is page-aligned, so absolute boundaries sit MARGIN before interior multiples of PAGE)
      const pageD = PAGE * rng.int(1, INTERIOR / PAGE - 1) - MARGIN - rng.int(1, l - 1);
      const pageS = PAGE * rng.int(1, INTERIOR / PAGE - 1) - MARGIN - rng.int(1, l - 1);
      push(rng.next() < 0.7 ? pageD : rng.int(0, INTERIOR), rng.next() < 0.7 ? pageS : rng.int(0, INTERIOR), l);
    } else if (kind === 4) {
      // reads what an earlier descriptor wrote, or overwrites what it read or wrote
      const other = out[rng.int(0, out.length - 1)];
      const target = rng.pick([other.dst, other.src]) - base + rng.int(-32, Math.max(0, other.len - 1));
      if (rng.next() < 0.5) push(rng.int(0, INTERIOR), target, len);
      else push(target, rng.int(0, INTERIOR), len);
    } else {
      // overlapping its own source, in either direction, by 1..len-1 bytes
      const l = Math.max(2, len);
      const shift = rng.int(1, l - 1) * (rng.next() < 0.5 ? -1 : 1);
      const at = rng.int(0, INTERIOR);
      push(at + shift, at, l);
    }
  }
  return out;
}

function fillTable(table: SgTable, descs: Desc[]): SgTable {
  table.clear();
  for (const d of descs) table.push(d.dst, d.src, d.len);
  return table;
}

beforeAll(async () => {
  lab = await Lab.create();
  const rng = prng(seed ^ 0x5c47);
  pool = rng.bytes(new Uint8Array(1 << 17));
  for (let i = 0; i < pool.length; i++) if (pool[i] === CANARY) pool[i] = CANARY ^ 0x3c;
  region = lab.alloc(INTERIOR + 2 * MARGIN, { align: PAGE });
  base = lab.offsetOf(region) + MARGIN;
});

afterAll(() => {
  lab?.close();
});

describe("sg_copy with seeded random descriptor tables", () => {
  for (const strategy of strategyNames) {
    it(`${strategy}`, () => withSeed((rng) => {
      const table = lab.sgTable(4);
      let refusedRuns = 0;
      for (let round = 0; round < 400; round++) {
        let descs = randomDescs(rng, rng.int(0, 40));
        if (strategy === "reference" && round % 2 === 0) {
          // every other round, a table the forward-only strategy can run
          descs = descs.map((d) => (backward(d) ? { dst: d.src, src: d.dst, len: d.len } : d));
        }
        resetRegion(rng);
        const snapshot = region.slice();
        fillTable(table, descs);
        const where = `${strategy} round ${round} (${descs.length} descriptors)`;
        const bad = strategy === "reference" ? descs.findIndex(backward) : -1;
        if (bad >= 0) {
          refusedRuns++;
          const e = dmaBufError(() => lab.engine.sgCopy(table, strategy));
          const d = descs[bad];
          expect(e, where).toMatchObject({ code: "EINVAL", errno: 22, syscall: "sg_copy" });
          expect(e.message, where).toContain(`descriptor ${bad} {dst=${hex(d.dst)}, src=${hex(d.src)}, len=${d.len}}`);
          expectSame(region, snapshot, `${where}: refused, yet`);
          continue;
        }
        lab.engine.sgCopy(table, strategy);
        expect(brokenCanary(regionGuard), where).toBeUndefined();
        expectSame(region, modelSgCopy(snapshot, descs), where);
      }
      if (strategy === "reference") expect(refusedRuns).toBeGreaterThan(0);
      table.free();
    }, seed));
  }

  it("covers zero-length, adjacent, page-crossing and overlapping descriptors", () => withSeed((rng) => {
    // The generator's own coverage, so that the random tests cannot silently lose a kind.
    const descs = randomDescs(rng, 2000);
    const crosses = (a: number, len: number) => len > 0 && Math.floor(a / PAGE) !== Math.floor((a + len - 1) / PAGE);
    expect(descs.some((d) => d.len === 0)).toBe(true);
    expect(descs.some((d, i) => i > 0 && d.len > 0 && d.dst === descs[i - 1].dst + descs[i - 1].len &&
      d.src === descs[i - 1].src + descs[i - 1].len)).toBe(true);
    expect(descs.some((d) => crosses(d.dst, d.len) && crosses(d.src, d.len))).toBe(true);
    expect(descs.some(backward)).toBe(true);
    expect(descs.some((d) => d.src > d.dst && d.src - d.dst < d.len)).toBe(true);
    expect(descs.some((d, i) => descs.slice(0, i).some((e) =>
      d.len > 0 && e.len > 0 && d.src < e.dst + e.len && e.dst < d.src + d.len))).toBe(true);
  }, seed));
});

describe("gather and scatter", () => {
  const LINEAR = 24 * 5000;
  let linear: Uint8Array;
  let linearGuard: Guarded;

  beforeAll(() => {
    linear = lab.alloc(LINEAR + 2 * MARGIN + 64);
  });

  const segmentArb = fc.record({
    at: fc.integer({ min: 0, max: INTERIOR }),
    len: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: 300 }),
      fc.integer({ min: 301, max: 5000 })),
    // 1 in 4 segments continues the previous one (adjacent)
    adjacent: fc.integer({ min: 0, max: 3 }),
  });
  const listArb = fc.record({
    segments: fc.array(segmentArb, { maxLength: 24 }),
    strategy: fc.constantFrom(...strategyNames),
    linearOffset: fc.integer({ min: 0, max: 63 }),
    pick: fc.integer({ min: 0, max: 0xffffffff }),
  });

  /** Turns generated segments into interior ranges that fit (arena offsets). */
  function place(segments: { at: number; len: number; adjacent: number }[]): { addr: number; len: number }[] {
    const out: { addr: number; len: number }[] = [];
    for (const s of segments) {
      const prev = out[out.length - 1];
      let at = s.adjacent === 0 && prev ? prev.addr - base + prev.len : s.at;
      const len = Math.min(s.len, INTERIOR);
      at = Math.max(0, Math.min(at, INTERIOR - len));
      out.push({ addr: base + at, len });
    }
    return out;
  }

  function buildList(list: SegmentList, segs: { addr: number; len: number }[]): SegmentList {
    list.clear();
    for (const s of segs) list.push(s.addr, s.len);
    return list;
  }

  /**
   * One generated case: the segments placed in the interior, the region
   * refilled (canaries re-armed), and a linear range of their total length
   * at MARGIN + linearOffset, refilled and framed by fresh canaries.
   */
  function prepare(c: { segments: { at: number; len: number; adjacent: number }[]; linearOffset: number; pick: number }) {
    const r = prng(c.pick);
    const segs = place(c.segments);
    const total = segs.reduce((n, s) => n + s.len, 0);
    resetRegion(r);
    const at = MARGIN + c.linearOffset;
    linearGuard = guard(linear, at, total);
    refill(r, linear.subarray(at, at + total));
    return { segs, total, at };
  }

  it("gather: the segments in order, concatenated (fast-check)", () => withSeed((rng) => {
    const list = lab.segmentList(2);
    fc.assert(fc.property(listArb, (c) => {
      const { strategy } = c;
      const { segs, total, at } = prepare(c);
      const regionBefore = region.slice();
      const want = new Uint8Array(total);
      let pos = 0;
      for (const s of segs) {
        want.set(regionBefore.subarray(s.addr - base + MARGIN, s.addr - base + MARGIN + s.len), pos);
        pos += s.len;
      }
      lab.engine.gather(buildList(list, segs), lab.offsetOf(linear) + at, strategy);
      const where = `gather ${strategy}: ${segs.length} segments, ${total} bytes`;
      expect(brokenCanary(linearGuard), where).toBeUndefined();
      expectSame(linear.subarray(at, at + total), want, where);
      expectSame(region, regionBefore, `${where}: the segments changed`);
    }), { seed: rng.seed, numRuns: 300 });
    list.free();
  }, seed));

  it("scatter: the linear range into the segments in order, later segments win (fast-check)", () => withSeed((rng) => {
    const list = lab.segmentList(2);
    fc.assert(fc.property(listArb, (c) => {
      const { strategy } = c;
      const { segs, total, at } = prepare(c);
      const linearBefore = linear.slice();
      const want = region.slice();
      let pos = 0;
      for (const s of segs) {
        want.set(linearBefore.subarray(at + pos, at + pos + s.len), s.addr - base + MARGIN);
        pos += s.len;
      }
      lab.engine.scatter(buildList(list, segs), lab.offsetOf(linear) + at, strategy);
      const where = `scatter ${strategy}: ${segs.length} segments, ${total} bytes`;
      expect(brokenCanary(regionGuard), where).toBeUndefined();
      expectSame(region, want, where);
      expectSame(linear, linearBefore, `${where}: the linear range changed`);
    }), { seed: rng.seed ^ 0x9e37, numRuns: 300 });
    list.free();
  }, seed));

  it("page lists: 4 KiB pages from the page pool, whole and partial, in random order", () => withSeed((rng) => {
    // Allocate pages, free every other one, so that the kept pages are scattered.
    const all: number[] = [];
    for (let i = 0; i < 64; i++) all.push(lab.allocPages(0));
    const pages = all.filter((_, i) => i % 2 === 0);
    all.filter((_, i) => i % 2 === 1).forEach((p) => lab.freePages(p, 0));
    const list = lab.segmentList(4);
    const big = lab.alloc(pages.length * PAGE + 2 * MARGIN + 64);
    try {
      for (const strategy of strategyNames) {
        for (let round = 0; round < 8; round++) {
          const order = shuffle(rng, pages.slice()).slice(0, rng.int(1, pages.length));
          // (page: the index in `pages` of the page a segment lies in)
          const segs = order.map((p) => {
            const page = pages.indexOf(p);
            if (rng.next() < 0.6) return { addr: p, len: PAGE, page };
            const off = rng.int(0, PAGE);
            return { addr: p + off, len: rng.int(0, PAGE - off), page };
          });
          const total = segs.reduce((n, s) => n + s.len, 0);
          for (const p of pages) refill(rng, lab.arena.view(p, PAGE));
          const pagesBefore = pages.map((p) => lab.arena.view(p, PAGE).slice());
          buildList(list, segs);
          const where = `${strategy} round ${round}: ${segs.length} pages, ${total} bytes`;

          // gather
          const at = MARGIN + rng.int(0, 63);
          const g = guard(big, at, total);
          lab.engine.gather(list, lab.offsetOf(big) + at, strategy);
          const want = new Uint8Array(total);
          let pos = 0;
          for (const s of segs) {
            const off = s.addr - pages[s.page];
            want.set(pagesBefore[s.page].subarray(off, off + s.len), pos);
            pos += s.len;
          }
          expect(brokenCanary(g), `gather ${where}`).toBeUndefined();
          expectSame(big.subarray(at, at + total), want, `gather ${where}`);
          pages.forEach((p, i) => expectSame(lab.arena.view(p, PAGE), pagesBefore[i], `gather ${where}: page ${i} changed`));

          // scatter, from fresh linear bytes
          refill(rng, big.subarray(at, at + total));
          const linearBytes = big.slice(at, at + total);
          const model = pagesBefore.map((p) => p.slice());
          pos = 0;
          for (const s of segs) {
            model[s.page].set(linearBytes.subarray(pos, pos + s.len), s.addr - pages[s.page]);
            pos += s.len;
          }
          lab.engine.scatter(list, lab.offsetOf(big) + at, strategy);
          expect(brokenCanary(g), `scatter ${where}`).toBeUndefined();
          expectSame(big.subarray(at, at + total), linearBytes, `scatter ${where}: the linear range changed`);
          pages.forEach((p, i) => expectSame(lab.arena.view(p, PAGE), model[i], `scatter ${where}: page ${i}`));
        }
      }
    } finally {
      list.free();
      lab.free(big);
      for (const p of pages) lab.freePages(p, 0);
    }
  }, seed));

  it("reference refuses a segment whose destination starts inside its source, moving nothing", () => {
    const list = lab.segmentList();
    const rng = prng(seed);
    resetRegion(rng);
    const before = region.slice();
    // scatter: linear [base, base+100) into segments; segment 1 lands at linear + 150,
    // inside its own source [base+100, base+300)
    list.push(base + 4000, 100).push(base + 150, 200).push(base + 6000, 10);
    let e = dmaBufError(() => lab.engine.scatter(list, base, "reference"));
    expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall: "sg_scatter" });
    expect(e.message).toContain(`segment 1 {addr=${hex(base + 150)}, len=200}`);
    expectSame(region, before, "refused scatter");
    // gather: segment 0 [base+10, +100) into linear [base+50, +100)
    list.clear().push(base + 10, 100).push(base + 3000, 5);
    e = dmaBufError(() => lab.engine.gather(list, base + 50, "reference"));
    expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall: "sg_gather" });
    expect(e.message).toContain(`segment 0 {addr=${hex(base + 10)}, len=100}`);
    expectSame(region, before, "refused gather");
    // the same lists are fine for a memmove strategy
    lab.engine.gather(list, base + 50, "bulk");
    const m = before.slice();
    m.copyWithin(MARGIN + 50, MARGIN + 10, MARGIN + 110);
    m.copyWithin(MARGIN + 150, MARGIN + 3000, MARGIN + 3005);
    expectSame(region, m, "bulk gather over its own segments");
    list.free();
  });
});

describe("invalid descriptors are refused before any byte moves", () => {
  /** Snapshots of the memory a failed call might have touched. */
  function snapshot(ranges: [number, number][]): (where: string) => void {
    const mem = lab.arena.u8;
    const saved = ranges.map(([lo, len]) => {
      // (a range with a wrapping length is only followed for its first MiB)
      const a = Math.max(0, Math.min(lo, mem.length));
      const b = Math.max(a, Math.min(lo + Math.min(len, 1 << 20), mem.length));
      return { a, bytes: mem.slice(a, b) };
    });
    return (where) => {
      for (const { a, bytes } of saved) {
        expectSame(mem.subarray(a, a + bytes.length), bytes, `${where}: refused, yet memory at ${hex(a)} changed:`);
      }
    };
  }

  /** Bad (dst, src, len) triples; `g` is a good address inside the region. */
  function badDescriptors(g: number): [string, Desc][] {
    const { dmaLo, dmaHi } = lab.arena;
    return [
      ["dst below the DMA range", { dst: dmaLo - 16, src: g, len: 32 }],
      ["src below the DMA range", { dst: g, src: dmaLo - 4, len: 8 }],
      ["dst one byte below the DMA range", { dst: dmaLo - 1, src: g, len: 1 }],
      ["src in the engine's static data", { dst: g, src: 0, len: 64 }],
      ["dst past the end of memory", { dst: dmaHi - 8, src: g, len: 16 }],
      ["src past the end of memory", { dst: g, src: dmaHi - 1, len: 2 }],
      ["src wraps around 2^32", { dst: g, src: 0xffffff00, len: 0x200 }],
      ["dst wraps around 2^32", { dst: 0xffffff00, src: g, len: 0x200 }],
      ["len wraps around 2^32", { dst: g, src: g + 64, len: 0xffffffff }],
    ];
  }

  it("sg_copy: a bad descriptor among good ones (EFAULT naming it)", () => withSeed((rng) => {
    const table = lab.sgTable(2);
    for (const strategy of strategyNames) {
      for (const [what, bad] of badDescriptors(base + rng.int(0, INTERIOR - 600))) {
        resetRegion(rng);
        // good descriptors on both sides of the bad one (at the ends every third time)
        const good = randomDescs(rng, rng.int(2, 12)).filter((d) => !backward(d));
        // (the filter may leave fewer than two: then the middle is an end too)
        const k = rng.pick([0, good.length, Math.min(good.length, rng.int(1, Math.max(1, good.length - 1)))]);
        const descs = [...good.slice(0, k), bad, ...good.slice(k)];
        fillTable(table, descs);
        const check = snapshot([[lab.offsetOf(region), region.length], [bad.dst, bad.len], [bad.src, bad.len]]);
        const e = dmaBufError(() => lab.engine.sgCopy(table, strategy));
        const where = `${strategy}: ${what} at index ${k} of ${descs.length}`;
        expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: "sg_copy" });
        expect(e.message, where).toContain(`descriptor ${k} {dst=${hex(bad.dst)}, src=${hex(bad.src)}, len=${bad.len}}`);
        check(where);
      }
    }
    table.free();
  }, seed));

  it("sg_copy: only the first bad descriptor is named", () => {
    const table = lab.sgTable();
    table.push(base, base + 100, 10).push(base, 0x10, 4).push(0x20, base, 4);
    const e = dmaBufError(() => lab.engine.sgCopy(table, "auto"));
    expect(e.message).toContain("descriptor 1 {dst=");
    table.free();
  });

  it("gather and scatter: a bad segment among good ones (EFAULT naming it)", () => withSeed((rng) => {
    const list = lab.segmentList(2);
    const linear = lab.alloc(64 * 1024);
    const { dmaLo, dmaHi } = lab.arena;
    const bads: [string, { addr: number; len: number }][] = [
      ["below the DMA range", { addr: dmaLo - 64, len: 128 }],
      ["in the engine's static data", { addr: 16, len: 16 }],
      ["past the end of memory", { addr: dmaHi - 4, len: 5 }],
      ["wrapping around 2^32", { addr: 0xffffff00, len: 0x200 }],
      ["wrapping by length", { addr: base, len: 0xffffffff }],
    ];
    for (const strategy of strategyNames) {
      for (const op of ["gather", "scatter"] as const) {
        for (const [what, bad] of bads) {
          resetRegion(rng);
          refill(rng, linear);
          const good = Array.from({ length: rng.int(2, 8) }, () => {
            const len = rng.int(0, 2000);
            return { addr: base + rng.int(0, INTERIOR - len), len };
          });
          const k = rng.pick([0, good.length, rng.int(1, good.length - 1)]);
          const segs = [...good.slice(0, k), bad, ...good.slice(k)];
          list.clear();
          for (const s of segs) list.push(s.addr, s.len);
          const check = snapshot([[lab.offsetOf(region), region.length], [lab.offsetOf(linear), linear.length],
            [bad.addr, bad.len]]);
          const e = dmaBufError(() => op === "gather"
            ? lab.engine.gather(list, lab.offsetOf(linear), strategy)
            : lab.engine.scatter(list, lab.offsetOf(linear), strategy));
          const where = `${op} ${strategy}: segment ${what} at index ${k} of ${segs.length}`;
          expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: `sg_${op}` });
          expect(e.message, where).toContain(`segment ${k} {addr=${hex(bad.addr)}, len=${bad.len}}`);
          check(where);
        }
      }
    }
    list.free();
    lab.free(linear);
  }, seed));

  it("gather and scatter: a linear range out of bounds (EFAULT naming it)", () => withSeed((rng) => {
    const list = lab.segmentList();
    const { dmaLo, dmaHi } = lab.arena;
    for (const strategy of strategyNames) {
      for (const op of ["gather", "scatter"] as const) {
        resetRegion(rng);
        list.clear().push(base, 100).push(base + 5000, 0).push(base + 300, 156); // 256 bytes in all
        for (const linear of [dmaLo - 64, dmaLo - 256, dmaHi - 255, dmaHi, 0, 0xffffff80]) {
          const check = snapshot([[lab.offsetOf(region), region.length], [linear, 256]]);
          const e = dmaBufError(() => op === "gather"
            ? lab.engine.gather(list, linear, strategy)
            : lab.engine.scatter(list, linear, strategy));
          const where = `${op} ${strategy}: linear ${hex(linear)}`;
          expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: `sg_${op}` });
          expect(e.message, where).toContain(hex(linear));
          expect(e.message, where).toContain("256");
          check(where);
        }
      }
    }
    list.free();
  }, seed));

  it("a table or list pointer outside the DMA range (EFAULT naming it)", () => withSeed((rng) => {
    const { dmaLo, dmaHi } = lab.arena;
    const table = lab.sgTable();
    const list = lab.segmentList();
    const linear = lab.alloc(4096);
    resetRegion(rng);
    table.push(base, base + 1000, 100).push(base + 2000, base + 3000, 200).push(base + 50, base + 60, 70);
    list.push(base, 100).push(base + 2000, 200);
    const realTable = table.offset;
    const realList = list.offset;
    const check = snapshot([[lab.offsetOf(region), region.length], [lab.offsetOf(linear), linear.length]]);
    try {
      for (const offset of [0x1000, dmaLo - 12, dmaLo - 4, dmaHi - 12, dmaHi, 0xfffffff0]) {
        for (const strategy of strategyNames) {
          table.offset = offset;
          let e = dmaBufError(() => lab.engine.sgCopy(table, strategy));
          let where = `sg_copy ${strategy}: table at ${hex(offset)}`;
          expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: "sg_copy" });
          expect(e.message, where).toContain(`offset=${hex(offset)}, count=3`);
          list.offset = offset;
          for (const op of ["gather", "scatter", "checksum"] as const) {
            e = dmaBufError(() => op === "gather" ? lab.engine.gather(list, lab.offsetOf(linear), strategy)
              : op === "scatter" ? lab.engine.scatter(list, lab.offsetOf(linear), strategy)
                : lab.engine.checksum(list));
            where = `${op} ${strategy}: list at ${hex(offset)}`;
            expect(e, where).toMatchObject({ code: "EFAULT", errno: 14, syscall: `sg_${op}` });
            expect(e.message, where).toContain(`offset=${hex(offset)}, count=2`);
          }
          table.offset = realTable;
          list.offset = realList;
          check(where);
        }
      }
    } finally {
      table.offset = realTable;
      list.offset = realList;
    }
    table.free();
    list.free();
    lab.free(linear);
  }, seed));

  it("an unknown strategy is EINVAL naming it, and nothing moves", () => withSeed((rng) => {
    resetRegion(rng);
    const before = region.slice();
    const table = lab.sgTable().push(base, base + 100, 50);
    const list = lab.segmentList().push(base + 200, 50);
    const calls: [string, () => void][] = [
      ["sg_copy", () => lab.engine.sgCopy(table, "warp" as StrategyName)],
      ["sg_gather", () => lab.engine.gather(list, base + 1000, "warp" as StrategyName)],
      ["sg_scatter", () => lab.engine.scatter(list, base + 1000, "warp" as StrategyName)],
    ];
    for (const [syscall, call] of calls) {
      const e = dmaBufError(call);
      expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall });
      expect(e.message).toContain("'warp'");
    }
    expectSame(region, before, "after the refused calls");
    table.free();
    list.free();
  }, seed));
});

describe("tables grow past their initial capacity", () => {
  it("SgTable", () => withSeed((rng) => {
    const table = lab.sgTable(1);
    const descs = randomDescs(rng, 300);
    fillTable(table, descs);
    expect(table.count).toBe(300);
    expect(table.capacity).toBeGreaterThanOrEqual(300);
    descs.forEach((d, i) => expect(table.entry(i)).toEqual(d));
    resetRegion(rng);
    const snapshotBytes = region.slice();
    lab.engine.sgCopy(table, "auto");
    expect(brokenCanary(regionGuard)).toBeUndefined();
    expectSame(region, modelSgCopy(snapshotBytes, descs), "grown table");
    table.free();
  }, seed));

  it("SegmentList", () => withSeed((rng) => {
    const list = lab.segmentList(1);
    const segs = Array.from({ length: 200 }, () => {
      const len = rng.int(0, 100);
      return { addr: base + rng.int(0, INTERIOR - len), len };
    });
    for (const s of segs) list.push(s.addr, s.len);
    expect(list.count).toBe(200);
    expect(list.capacity).toBeGreaterThanOrEqual(200);
    segs.forEach((s, i) => expect(list.entry(i)).toEqual(s));
    const total = segs.reduce((n, s) => n + s.len, 0);
    expect(list.totalBytes).toBe(total);
    resetRegion(rng);
    const linear = lab.alloc(total + 2 * MARGIN);
    const g = guard(linear, MARGIN, total);
    lab.engine.gather(list, lab.offsetOf(linear) + MARGIN, "simd");
    const want = new Uint8Array(total);
    let pos = 0;
    for (const s of segs) {
      want.set(region.subarray(s.addr - base + MARGIN, s.addr - base + MARGIN + s.len), pos);
      pos += s.len;
    }
    expect(brokenCanary(g)).toBeUndefined();
    expectSame(linear.subarray(MARGIN, MARGIN + total), want, "grown list");
    list.free();
    lab.free(linear);
  }, seed));
});

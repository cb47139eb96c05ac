/*
 * The page allocator (lab.allocPages/freePages, lab.arena.pages) and user
 * memory (lab.alloc/free, lab.arena.user), checked against a plain-JS model
 * of a buddy system with eager coalescing.
 *
 * The model knows only the live blocks. With eager coalescing the free
 * blocks are then determined: walking down from the region's maximal aligned
 * root blocks, a block that holds no live granule is one free block, a block
 * that is itself live is allocated, anything else is split in two. So the
 * model predicts freeBlocks, freeBytes, largestFreeBytes, the unusable index
 * and whether an allocation of a given order must succeed, without knowing
 * which block the allocator picks.
 */
import { describe, expect, test } from "vitest";
import { DmaBufError, Lab, errnoNumbers, type BuddyStats, type ErrnoCode } from "../src/index.js";
import { FRAGMENTATION_ORDER, type BuddyAllocator } from "../src/memory/buddy.js";
import { CACHE_LINE, PAGE_SIZE, REGION_ALIGN } from "../src/memory/layout.js";
import { expectPristine } from "./helpers/buddy-stats.js";
import { dmaBufError } from "./helpers/errors.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { shuffle, takeRandom, withSeed } from "./helpers/prng.js";

const MiB = 1024 * 1024;
/** A lab small enough for exhaustion to matter: 8 MiB of pages (2048), 18 MiB of user memory. */
const SMALL = { memoryBytes: 32 * MiB, poolBytes: 8 * MiB };

// Not sanitized under test:sanitize: these tests count user memory, which the sanitizer's table and logs take.
const labs = new LabSet({ ...SMALL, sanitize: false });
cleanUpAfterEach({ labs });
const smallLab = (): Promise<Lab> => labs.create();

function expectError(fn: () => unknown, code: ErrnoCode, syscall: string): DmaBufError {
  const e = dmaBufError(fn);
  expect({ code: e.code, errno: e.errno, syscall: e.syscall }).toEqual({ code, errno: errnoNumbers[code], syscall });
  expect(e.message).toContain(`${code}: ${syscall}: `);
  return e;
}

/** Stats without what a refused call may change: its lock acquisition and the failures counter. */
function state(s: BuddyStats): Omit<BuddyStats, "lock" | "failures"> {
  const { lock: _lock, failures: _failures, ...rest } = s;
  return rest;
}

/** Runs a call that must be refused with `code` and change nothing but the failures counter. */
function refused(alloc: BuddyAllocator, fn: () => unknown, code: ErrnoCode, syscall: string, failures = 0): DmaBufError {
  const before = alloc.stats();
  const e = expectError(fn, code, syscall);
  const after = alloc.stats();
  expect(state(after)).toEqual(state(before));
  expect(after.failures).toBe(before.failures + failures);
  return e;
}

/** A buddy system with eager coalescing, in granule indices. */
class BuddyModel {
  /** Live blocks: first granule -> order. */
  readonly live = new Map<number, number>();
  private sorted: [number, number][] | undefined;
  allocs = 0;
  frees = 0;

  constructor(readonly granules: number, readonly maxOrder: number, readonly granuleBytes: number) {}

  /** The maximal aligned blocks that tile the region, as a fresh allocator lays them out. */
  roots(): [number, number][] {
    const out: [number, number][] = [];
    for (let idx = 0; idx < this.granules;) {
      let k = this.maxOrder;
      while (idx % 2 ** k !== 0 || idx + 2 ** k > this.granules) k--;
      out.push([idx, k]);
      idx += 2 ** k;
    }
    return out;
  }

  private intervals(): [number, number][] {
    this.sorted ??= [...this.live].map(([i, k]): [number, number] => [i, i + 2 ** k]).sort((a, b) => a[0] - b[0]);
    return this.sorted;
  }

  /** The live block overlapping granules [lo, hi), if any. */
  overlapping(lo: number, hi: number): [number, number] | undefined {
    const iv = this.intervals();
    let a = 0;
    let b = iv.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (iv[m][1] <= lo) a = m + 1;
      else b = m;
    }
    return a < iv.length && iv[a][0] < hi ? iv[a] : undefined;
  }

  add(idx: number, order: number): void {
    expect(Number.isInteger(idx), `block index ${idx}`).toBe(true);
    expect(idx % 2 ** order, `block ${idx} of order ${order} is not aligned to its size`).toBe(0);
    expect(idx >= 0 && idx + 2 ** order <= this.granules, `block ${idx} of order ${order} leaves the region`).toBe(true);
    const clash = this.overlapping(idx, idx + 2 ** order);
    expect(clash, `block ${idx} of order ${order} overlaps the live block [${clash}) `).toBeUndefined();
    this.live.set(idx, order);
    this.sorted = undefined;
    this.allocs++;
  }

  remove(idx: number): number {
    const order = this.live.get(idx);
    if (order === undefined) throw new Error(`model: no live block at ${idx}`);
    this.live.delete(idx);
    this.sorted = undefined;
    this.frees++;
    return order;
  }

  get freeGranules(): number {
    let used = 0;
    for (const k of this.live.values()) used += 2 ** k;
    return this.granules - used;
  }

  freeBlocks(): number[] {
    const fb = new Array<number>(this.maxOrder + 1).fill(0);
    const visit = (idx: number, k: number): void => {
      if (this.overlapping(idx, idx + 2 ** k) === undefined) fb[k]++;
      else if (this.live.get(idx) === k) return;
      else if (k === 0) throw new Error(`model: granule ${idx} is partly live`);
      else {
        visit(idx, k - 1);
        visit(idx + 2 ** (k - 1), k - 1);
      }
    };
    for (const [idx, k] of this.roots()) visit(idx, k);
    return fb;
  }

  /** Whether an allocation of this order must succeed. */
  fits(order: number): boolean {
    return this.freeBlocks().some((n, k) => k >= order && n > 0);
  }

  /** The stats the allocator must report (but for the lock and the failures counter). */
  expected(allocs0: number, frees0: number): Omit<BuddyStats, "lock" | "failures"> {
    const g = this.granuleBytes;
    const freeBlocks = this.freeBlocks();
    const freeGranules = this.freeGranules;
    let largest = 0;
    freeBlocks.forEach((n, k) => { if (n > 0) largest = g * 2 ** k; });
    const unusable: number[] = [];
    let below = 0;
    for (let k = 0; k <= this.maxOrder; k++) {
      unusable.push(freeGranules === 0 ? 0 : below / freeGranules);
      below += freeBlocks[k] * 2 ** k;
    }
    return {
      granuleBytes: g,
      totalBytes: this.granules * g,
      freeBytes: freeGranules * g,
      freeBlocks,
      largestFreeBytes: largest,
      unusable,
      fragmentation: unusable[Math.min(FRAGMENTATION_ORDER, this.maxOrder)],
      allocs: allocs0 + this.allocs,
      frees: frees0 + this.frees,
    };
  }

  check(alloc: BuddyAllocator, allocs0: number, frees0: number): void {
    const s = alloc.stats();
    const want = this.expected(allocs0, frees0);
    // The unusable index is a ratio: compare it with a tolerance, the rest exactly.
    const { unusable, fragmentation, ...exact } = state(s);
    const { unusable: wantUnusable, fragmentation: wantFragmentation, ...wantExact } = want;
    expect(exact).toEqual(wantExact);
    expect(unusable).toHaveLength(wantUnusable.length);
    unusable.forEach((u, k) => expect(u, `unusable[${k}]`).toBeCloseTo(wantUnusable[k], 12));
    expect(fragmentation).toBeCloseTo(wantFragmentation, 12);
    // Self-consistency of the report.
    expect(s.freeBlocks.reduce((sum, n, k) => sum + n * 2 ** k * s.granuleBytes, 0)).toBe(s.freeBytes);
    for (let k = 1; k <= this.maxOrder; k++) expect(s.unusable[k]).toBeGreaterThanOrEqual(s.unusable[k - 1]);
  }
}

function modelOf(alloc: BuddyAllocator): BuddyModel {
  return new BuddyModel(alloc.granules, alloc.maxOrder, alloc.granuleBytes);
}

describe("page allocator", () => {
  test("a fresh pool is all free, in maximal aligned blocks", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const s = lab.stats().pages;
    expect(s.granuleBytes).toBe(PAGE_SIZE);
    expect(s.totalBytes).toBe(lab.layout.poolBytes);
    expect(pages.maxOrder).toBeGreaterThanOrEqual(8);
    modelOf(pages).check(pages, 0, 0);
    expect(s.largestFreeBytes).toBe(Math.min(lab.layout.poolBytes, PAGE_SIZE * 2 ** pages.maxOrder));
    expect({ allocs: s.allocs, frees: s.frees, failures: s.failures }).toEqual({ allocs: 0, frees: 0, failures: 0 });
  });

  test("allocRun: exactly n contiguous pages in aligned pieces; the rest stays free; freeing each piece restores the pool", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = lab.stats().pages;
    for (const n of [1, 2, 3, 5, 7, 12, 100, 255, 257]) {
      const pieces = pages.allocRun(n);
      // Contiguous, in address order, each piece aligned to its size, n pages in all.
      let at = pieces[0].offset;
      for (const p of pieces) {
        expect(p.offset, `run of ${n}`).toBe(at);
        expect((p.offset - lab.layout.poolBase) % (PAGE_SIZE * 2 ** p.order)).toBe(0);
        expect(pages.orderAt(p.offset)).toBe(p.order);
        at += PAGE_SIZE * 2 ** p.order;
      }
      expect((at - pieces[0].offset) / PAGE_SIZE).toBe(n);
      expect(lab.stats().pages.freeBytes).toBe(pristine.freeBytes - n * PAGE_SIZE);
      for (const p of pieces) lab.freePages(p.offset, p.order);
      expectPristine(lab.stats().pages, pristine);
    }
  });

  test("allocRun refuses 0 or a run larger than the largest block (EINVAL), and ENOMEM changes nothing", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const before = lab.stats().pages;
    for (const n of [0, -1, 2.5, 2 ** (pages.maxOrder + 1)]) expect(dmaBufError(() => pages.allocRun(n)).code).toBe("EINVAL");
    const hold = pages.allocRun(2 ** pages.maxOrder); // the largest block: no run of that size is left
    const held = lab.stats().pages;
    expect(dmaBufError(() => pages.allocRun(2 ** pages.maxOrder)).code).toBe("ENOMEM");
    expect({ ...lab.stats().pages, failures: held.failures, lock: held.lock }).toEqual(held);
    hold.forEach((p) => lab.freePages(p.offset, p.order));
    expectPristine(lab.stats().pages, { ...before });
  });

  test("every order gives a block aligned to its size inside the pool; freeing restores the pool", async () => {
    const lab = await smallLab();
    const { poolBase, poolBytes } = lab.layout;
    const pristine = lab.stats().pages;
    for (let order = 0; order <= lab.arena.pages.maxOrder; order++) {
      const size = PAGE_SIZE * 2 ** order;
      const p = lab.allocPages(order);
      expect(p).toBeGreaterThanOrEqual(poolBase);
      expect(p + size).toBeLessThanOrEqual(poolBase + poolBytes);
      expect((p - poolBase) % size).toBe(0);
      expect(p % Math.min(size, REGION_ALIGN)).toBe(0);
      expect(lab.arena.pages.orderAt(p)).toBe(order);
      expect(lab.stats().pages.freeBytes).toBe(poolBytes - size);
      // The block is usable memory: write its first and last bytes.
      lab.arena.u8[p] = 1;
      lab.arena.u8[p + size - 1] = 2;
      lab.freePages(p, order);
      expect(lab.arena.pages.orderAt(p)).toBe(-1);
      expectPristine(lab.stats().pages, pristine);
    }
  });

  test("orders 0, 4 and 8 mixed: split on allocation, coalesced after frees in any order", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    await withSeed((rng) => {
      for (let round = 0; round < 5; round++) {
        const model = modelOf(pages);
        const s0 = pages.stats();
        const held: [number, number][] = [];
        for (const order of shuffle(rng, [0, 0, 0, 4, 4, 4, 8, 8, 8, 1, 2, 3, 5, 6, 7, 0, 4])) {
          const p = lab.allocPages(order);
          model.add((p - lab.layout.poolBase) / PAGE_SIZE, order);
          held.push([p, order]);
          model.check(pages, s0.allocs, s0.frees);
        }
        expect(pages.stats().fragmentation).toBeGreaterThanOrEqual(0);
        for (const [p, order] of shuffle(rng, held)) {
          lab.freePages(p, order);
          model.remove((p - lab.layout.poolBase) / PAGE_SIZE);
          model.check(pages, s0.allocs, s0.frees);
        }
        expectPristine(pages.stats(), pristine);
      }
    });
  });

  test("a single page splits one block of every order on the way down, and merges back", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    const p = lab.allocPages(0);
    const s = pages.stats();
    // From one maximal block: one free block of each order below it.
    const top = pristine.freeBlocks.findLastIndex((n) => n > 0);
    for (let k = 0; k < top; k++) expect(s.freeBlocks[k], `order ${k}`).toBe(pristine.freeBlocks[k] + 1);
    expect(s.freeBlocks[top]).toBe(pristine.freeBlocks[top] - 1);
    lab.freePages(p, 0);
    expectPristine(pages.stats(), pristine);
  });

  test("fragmentation is visible: every other page free leaves 4 MiB that cannot serve two pages", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    const all: number[] = [];
    for (;;) {
      try {
        all.push(lab.allocPages(0));
      } catch (e) {
        expect(e).toMatchObject({ code: "ENOMEM", errno: 12, syscall: "alloc_pages" });
        break;
      }
      expect(all.length).toBeLessThanOrEqual(lab.layout.poolBytes / PAGE_SIZE);
    }
    expect(all).toHaveLength(lab.layout.poolBytes / PAGE_SIZE);
    expect(pages.stats().freeBytes).toBe(0);
    expect(pages.stats().fragmentation).toBe(0); // nothing free: 0 by definition
    all.sort((a, b) => a - b);
    const odd = all.filter((p) => ((p - lab.layout.poolBase) / PAGE_SIZE) % 2 === 1);
    const even = all.filter((p) => ((p - lab.layout.poolBase) / PAGE_SIZE) % 2 === 0);
    for (const p of odd) lab.freePages(p, 0);
    const s = pages.stats();
    expect(s.freeBytes).toBe(lab.layout.poolBytes / 2);
    expect(s.freeBlocks[0]).toBe(odd.length);
    expect(s.freeBlocks.slice(1).every((n) => n === 0)).toBe(true);
    expect(s.largestFreeBytes).toBe(PAGE_SIZE);
    expect(s.unusable[0]).toBe(0);
    expect(s.unusable[1]).toBe(1);
    expect(s.fragmentation).toBe(1);
    refused(pages, () => lab.allocPages(1), "ENOMEM", "alloc_pages", 1);
    for (const p of even) lab.freePages(p, 0);
    expectPristine(pages.stats(), pristine);
  });

  test("seeded random allocations and frees agree with the model", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    const { poolBase } = lab.layout;
    const u32 = lab.arena.u32;
    await withSeed((rng) => {
      const model = modelOf(pages);
      const s0 = pages.stats();
      const held: { p: number; order: number; tag: number }[] = [];
      let failures = 0;
      for (let step = 0; step < 3000; step++) {
        if (held.length > 0 && rng.next() < 0.45) {
          const { p, order, tag } = takeRandom(rng, held);
          const last = (p + PAGE_SIZE * 2 ** order - 4) >>> 2;
          expect([u32[p >>> 2], u32[last]], `stamps of the block at ${p}`).toEqual([tag, tag]);
          lab.freePages(p, order);
          model.remove((p - poolBase) / PAGE_SIZE);
        } else {
          // Mostly small orders, now and then a large one.
          const order = rng.next() < 0.8 ? rng.int(0, 4) : rng.int(5, pages.maxOrder);
          const fits = model.fits(order);
          if (fits) {
            const p = lab.allocPages(order);
            model.add((p - poolBase) / PAGE_SIZE, order);
            const tag = (step + 1) * 16 + order;
            u32[p >>> 2] = tag;
            u32[(p + PAGE_SIZE * 2 ** order - 4) >>> 2] = tag;
            held.push({ p, order, tag });
          } else {
            refused(pages, () => lab.allocPages(order), "ENOMEM", "alloc_pages", 1);
            failures++;
          }
        }
        if (step % 10 === 0) model.check(pages, s0.allocs, s0.frees);
      }
      model.check(pages, s0.allocs, s0.frees);
      expect(pages.stats().failures - s0.failures).toBe(failures);
      for (const { p, order } of held) lab.freePages(p, order);
    });
    expectPristine(pages.stats(), pristine);
  });

  test("exhaustion gives ENOMEM and changes nothing", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    refused(pages, () => lab.allocPages(pages.maxOrder + 1), "EINVAL", "alloc_pages");
    const held: number[] = [];
    const n = lab.layout.poolBytes / (PAGE_SIZE * 256);
    for (let i = 0; i < n; i++) held.push(lab.allocPages(8));
    for (const order of [8, 0, 4, pages.maxOrder]) {
      const e = refused(pages, () => lab.allocPages(order), "ENOMEM", "alloc_pages", 1);
      expect(e.message).toContain(`order ${order}`);
    }
    // The refused calls left the held blocks intact and freeable.
    const p = held.pop()!;
    lab.freePages(p, 8);
    const q = lab.allocPages(0);
    lab.freePages(q, 0);
    for (const b of held) lab.freePages(b, 8);
    const s = pages.stats();
    expectPristine(s, pristine);
    expect(s.failures).toBe(4);
  });

  test("bad orders to allocPages are EINVAL and change nothing", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    for (const order of [-1, 0.5, Number.NaN, Infinity, pages.maxOrder + 1, 32]) {
      refused(pages, () => lab.allocPages(order), "EINVAL", "alloc_pages");
    }
  });

  test("freeing a double-freed, interior, misaligned or foreign offset, or with a wrong order, is EINVAL and changes nothing", async () => {
    const lab = await smallLab();
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    const { poolBase, poolBytes, userBase, memoryBytes } = lab.layout;
    const keep = lab.allocPages(0);
    const a = lab.allocPages(4);
    const b = lab.allocPages(0);
    lab.freePages(b, 0);
    refused(pages, () => lab.freePages(b, 0), "EINVAL", "free_pages"); // double free
    const block = PAGE_SIZE * 16;
    const bad = [
      a + PAGE_SIZE, a + block - PAGE_SIZE, // interior pages
      a + 1, a + 4, a + 64, a + 2048, a + block - 1, // misaligned
      0, poolBase - PAGE_SIZE, poolBase + poolBytes, userBase + PAGE_SIZE, memoryBytes, -PAGE_SIZE, 2 ** 40, // foreign
      Number.NaN, Infinity,
    ];
    for (const off of bad) refused(pages, () => lab.freePages(off, 4), "EINVAL", "free_pages");
    for (const order of [0, 3, 5, 8, -1, 99]) {
      const e = refused(pages, () => lab.freePages(a, order), "EINVAL", "free_pages");
      expect(e.message).toContain("order 4");
    }
    lab.freePages(a, 4);
    refused(pages, () => lab.freePages(a, 4), "EINVAL", "free_pages"); // double free after coalescing
    lab.freePages(keep, 0);
    refused(pages, () => lab.freePages(keep, 0), "EINVAL", "free_pages");
    expectPristine(pages.stats(), pristine);
  });
});

/** The order lab.alloc must use: the smallest power of two holding the size and the alignment. */
function userOrder(bytes: number, align = CACHE_LINE): number {
  let order = 0;
  while (CACHE_LINE * 2 ** order < Math.max(bytes, align)) order++;
  return order;
}

describe("user memory (lab.alloc)", () => {
  test("sizes round up to a power of two of 64-byte granules, inside user memory, zeroed", async () => {
    const lab = await smallLab();
    const user = lab.arena.user;
    const pristine = user.stats();
    const { userBase, userBytes } = lab.layout;
    const views: Uint8Array[] = [];
    let used = 0;
    for (const bytes of [1, 63, 64, 65, 1000, 4096, 4097, 100_000, MiB, 3 * MiB + 5]) {
      const v = lab.alloc(bytes);
      views.push(v);
      used += CACHE_LINE * 2 ** userOrder(bytes);
      expect(v).toBeInstanceOf(Uint8Array);
      expect(v.buffer).toBe(lab.memory.buffer);
      expect(v.byteLength).toBe(bytes);
      expect(v.byteOffset).toBeGreaterThanOrEqual(userBase);
      expect(v.byteOffset + bytes).toBeLessThanOrEqual(userBase + userBytes);
      expect(v.byteOffset % CACHE_LINE).toBe(0);
      expect(lab.offsetOf(v)).toBe(v.byteOffset);
      expect(v.every((x) => x === 0)).toBe(true);
      expect(user.stats().freeBytes).toBe(userBytes - used);
      v.fill(0xee);
    }
    for (const v of views) lab.free(v);
    expectPristine(user.stats(), pristine);
  });

  test("align is honoured up to 2 MiB", async () => {
    const lab = await smallLab();
    const pristine = lab.arena.user.stats();
    const views: Uint8Array[] = [];
    for (const align of [1, 2, 8, 64, 128, 4096, 65536, MiB, REGION_ALIGN]) {
      for (const bytes of [1, 100, 5000]) {
        const v = lab.alloc(bytes, { align });
        expect(v.byteOffset % align, `align ${align}, ${bytes} bytes`).toBe(0);
        expect(v.byteLength).toBe(bytes);
        views.push(v);
      }
    }
    for (const v of views.reverse()) lab.free(v);
    expectPristine(lab.arena.user.stats(), pristine);
  });

  test("alloc zeroes by default, also memory that was written and freed", async () => {
    const lab = await smallLab();
    for (const bytes of [64, 1000, 70_000]) {
      const a = lab.alloc(bytes);
      a.fill(0x5a);
      lab.free(a);
      const b = lab.alloc(bytes);
      expect(b.every((x) => x === 0)).toBe(true);
      lab.free(b);
    }
    // zero: false still gives a usable block.
    const c = lab.alloc(4096, { zero: false });
    expect(c.byteLength).toBe(4096);
    lab.free(c);
  });

  test("bad sizes: EINVAL for non-positive or non-integer, ENOMEM for too large; nothing changes", async () => {
    const lab = await smallLab();
    const user = lab.arena.user;
    const largest = CACHE_LINE * 2 ** user.maxOrder;
    for (const bytes of [0, -1, -4096, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 53]) {
      const e = refused(user, () => lab.alloc(bytes), "EINVAL", "alloc");
      expect(e.message).toContain(String(bytes));
    }
    for (const bytes of [largest + 1, lab.layout.userBytes + 1, lab.layout.memoryBytes, 2 ** 40]) {
      const before = user.stats();
      const e = expectError(() => lab.alloc(bytes), "ENOMEM", "alloc");
      expect(e.message).toContain(String(bytes));
      expect(state(user.stats())).toEqual(state(before));
    }
    // The largest block itself fits in a fresh lab.
    const v = lab.alloc(largest, { zero: false });
    lab.free(v);
  });

  test("bad align: EINVAL (0, not a power of two, above 2 MiB); nothing changes", async () => {
    const lab = await smallLab();
    for (const align of [0, 3, 48, -64, 2.5, Number.NaN, Infinity, 2 * REGION_ALIGN, 2 ** 31]) {
      const e = refused(lab.arena.user, () => lab.alloc(64, { align }), "EINVAL", "alloc");
      expect(e.message).toContain(`align ${align}`);
    }
  });

  test("exhaustion gives ENOMEM and changes nothing", async () => {
    const lab = await smallLab();
    const user = lab.arena.user;
    const pristine = user.stats();
    const big: Uint8Array[] = [];
    const size = 8 * MiB;
    for (;;) {
      const before = user.stats();
      if (before.freeBlocks.every((n, k) => n === 0 || CACHE_LINE * 2 ** k < size)) break;
      big.push(lab.alloc(size, { zero: false }));
    }
    expect(big.length).toBeGreaterThan(0);
    refused(user, () => lab.alloc(size), "ENOMEM", "alloc", 1);
    // Smaller blocks may still be there; take them all, then even 64 bytes is refused.
    const small: Uint8Array[] = [];
    for (const bytes of [MiB, 64 * 1024, 4096, 64]) {
      while (user.stats().freeBlocks.some((n, k) => n > 0 && CACHE_LINE * 2 ** k >= bytes)) {
        small.push(lab.alloc(bytes, { zero: false }));
      }
    }
    expect(user.stats().freeBytes).toBe(0);
    refused(user, () => lab.alloc(1), "ENOMEM", "alloc", 1);
    refused(user, () => lab.alloc(size), "ENOMEM", "alloc", 1);
    for (const v of [...big, ...small]) lab.free(v);
    const s = user.stats();
    expectPristine(s, pristine);
    expect(s.failures).toBe(3);
  });

  test("lab.free refuses foreign views, views not from alloc, and double frees; nothing changes", async () => {
    const lab = await smallLab();
    const other = await smallLab();
    const user = lab.arena.user;
    const pristine = user.stats();
    const { poolBase, userBase, userBytes } = lab.layout;
    const buffer = lab.memory.buffer;
    const keep = lab.alloc(4096);
    const gone = lab.alloc(64);
    lab.free(gone);
    const foreign: [string, Uint8Array][] = [
      ["an ordinary Uint8Array", new Uint8Array(64)],
      ["a Buffer", Buffer.alloc(64)],
      ["a view of an ordinary SharedArrayBuffer", new Uint8Array(new SharedArrayBuffer(userBase + 128), userBase, 64)],
      ["a view of another lab at the same offset", new Uint8Array(other.memory.buffer, keep.byteOffset, 64)],
      ["a view of the page pool", new Uint8Array(buffer, poolBase, 4096)],
      ["a view of the control block", new Uint8Array(buffer, 0, 64)],
      ["an interior view of a block", keep.subarray(64)],
      ["a misaligned view of a block", keep.subarray(1)],
      ["a view of never-allocated user memory", new Uint8Array(buffer, userBase + userBytes - 64, 64)],
      ["a double free", gone],
    ];
    for (const [what, view] of foreign) {
      const before = user.stats();
      const e = dmaBufError(() => lab.free(view));
      expect({ what, code: e.code, errno: e.errno, syscall: e.syscall }).toEqual({ what, code: "EINVAL", errno: 22, syscall: "free" });
      expect(state(user.stats())).toEqual(state(before));
    }
    expect(other.arena.user.stats().allocs).toBe(0);
    lab.free(keep);
    expectPristine(user.stats(), pristine);
  });

  test("seeded random alloc/free agrees with the model; live blocks never overlap", async () => {
    const lab = await smallLab();
    const user = lab.arena.user;
    const pristine = user.stats();
    const { userBase } = lab.layout;
    const zero = Buffer.alloc(2 * MiB);
    await withSeed((rng) => {
      const model = modelOf(user);
      const s0 = user.stats();
      const held: { v: Uint8Array; fill: number }[] = [];
      for (let step = 0; step < 1500; step++) {
        if (held.length > 0 && rng.next() < 0.45) {
          const { v, fill } = takeRandom(rng, held);
          // Every byte still holds this block's fill: no other block overlapped it.
          const bad = v.findIndex((x) => x !== fill);
          expect(bad, `byte ${bad} of the block at ${v.byteOffset}`).toBe(-1);
          lab.free(v);
          model.remove((v.byteOffset - userBase) / CACHE_LINE);
        } else {
          // Log-uniform sizes from 1 byte to 2 MiB; sometimes a large alignment.
          const bytes = Math.max(1, Math.floor(2 ** (rng.next() * 21)));
          const align = rng.next() < 0.2 ? 2 ** rng.int(0, 21) : undefined;
          const order = userOrder(bytes, align);
          if (model.fits(order)) {
            const v = lab.alloc(bytes, align === undefined ? {} : { align });
            expect(v.byteLength).toBe(bytes);
            if (align !== undefined) expect(v.byteOffset % align).toBe(0);
            const idx = (v.byteOffset - userBase) / CACHE_LINE;
            model.add(idx, order);
            expect(Buffer.from(v.buffer, v.byteOffset, bytes).compare(zero, 0, bytes)).toBe(0);
            const fill = rng.int(1, 255);
            v.fill(fill);
            held.push({ v, fill });
          } else {
            refused(user, () => lab.alloc(bytes, align === undefined ? {} : { align }), "ENOMEM", "alloc", 1);
          }
        }
        if (step % 25 === 0) model.check(user, s0.allocs, s0.frees);
      }
      model.check(user, s0.allocs, s0.frees);
      for (const { v } of held) lab.free(v);
    });
    expectPristine(user.stats(), pristine);
  });
});

/*
 * The arena layout: option validation, region order and alignment, the
 * allocator state blocks, and rebuilding the layout from the control block.
 */
import { describe, expect, test } from "vitest";
import { Arena, BuddyAllocator, DmaBufError, Lab } from "../src/index.js";
import {
  CONTROL_BASE, CONTROL_BYTES, DEFAULT_MEMORY_BYTES, DEFAULT_SYNC_BYTES, ENGINE_STATIC_END, LAB_LAYOUT_VERSION,
  MAX_MEMORY_BYTES, CTL_MAGIC, CTL_VERSION,
  PAGE_SHIFT, PAGE_SIZE, REGION_ALIGN, USER_GRANULE_SHIFT, WASM_PAGE, computeLayout, readLayout,
  type Layout, type LayoutOptions,
} from "../src/memory/layout.js";
import { dmaBufError } from "./helpers/errors.js";
import { withSeed } from "./helpers/prng.js";

const MiB = 1024 * 1024;
const layoutOf = (options: LayoutOptions): Layout => computeLayout(options, BuddyAllocator.stateBytes);

function einval(fn: () => unknown, syscall: string): DmaBufError {
  const e = dmaBufError(fn);
  expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall });
  return e;
}

/** Every structural promise of a layout. */
function checkLayout(l: Layout, options: LayoutOptions): void {
  const memoryBytes = options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
  const syncBytes = options.syncBytes ?? DEFAULT_SYNC_BYTES;
  expect(l.memoryBytes).toBe(memoryBytes);
  expect(l.syncBytes).toBe(syncBytes);
  if (options.poolBytes !== undefined) expect(l.poolBytes).toBe(options.poolBytes);
  // Regions in order, without overlap: static data, control block, metadata, sync, pool, user.
  expect(CONTROL_BASE).toBeGreaterThanOrEqual(ENGINE_STATIC_END);
  expect(l.metaBase).toBeGreaterThanOrEqual(CONTROL_BASE + CONTROL_BYTES);
  expect(l.syncBase).toBeGreaterThanOrEqual(l.metaBase + l.metaBytes);
  expect(l.poolBase).toBeGreaterThanOrEqual(l.syncBase + l.syncBytes);
  expect(l.userBase).toBeGreaterThanOrEqual(l.poolBase + l.poolBytes);
  expect(l.userBase + l.userBytes).toBeLessThanOrEqual(l.memoryBytes);
  // Alignment.
  expect(l.syncBase % PAGE_SIZE).toBe(0);
  expect(l.poolBase % REGION_ALIGN).toBe(0);
  expect(l.userBase % REGION_ALIGN).toBe(0);
  expect(l.poolBytes % REGION_ALIGN).toBe(0);
  expect(l.poolBytes).toBeGreaterThanOrEqual(REGION_ALIGN);
  expect(l.userBytes).toBeGreaterThanOrEqual(REGION_ALIGN);
  // Both allocator state blocks inside the metadata region, apart.
  const poolState = BuddyAllocator.stateBytes(l.poolBytes / PAGE_SIZE);
  const userState = BuddyAllocator.stateBytes(Math.floor(l.userBytes / 2 ** USER_GRANULE_SHIFT));
  const inMeta = (at: number, bytes: number) => at >= l.metaBase && at + bytes <= l.metaBase + l.metaBytes;
  expect(inMeta(l.poolAllocator, poolState)).toBe(true);
  expect(inMeta(l.userAllocator, userState)).toBe(true);
  expect(l.poolAllocator + poolState <= l.userAllocator || l.userAllocator + userState <= l.poolAllocator).toBe(true);
  expect(l.poolAllocator % 8).toBe(0);
  expect(l.userAllocator % 8).toBe(0);
  // Every offset and size fits a u32.
  for (const v of Object.values(l)) expect(Number.isInteger(v) && v >= 0 && v < 2 ** 32).toBe(true);
}

describe("computeLayout", () => {
  test.each<[string, LayoutOptions]>([
    ["the defaults", {}],
    ["the smallest memory", { memoryBytes: 16 * MiB }],
    ["a small lab", { memoryBytes: 32 * MiB, poolBytes: 8 * MiB }],
    ["an odd size", { memoryBytes: 100 * MiB + WASM_PAGE }],
    ["the smallest sync heap", { memoryBytes: 64 * MiB, syncBytes: 64 * 1024 }],
    ["a large sync region", { memoryBytes: 64 * MiB, syncBytes: 40 * MiB }],
    ["the largest pool", { memoryBytes: 64 * MiB, poolBytes: 56 * MiB }],
    ["the smallest pool", { memoryBytes: 64 * MiB, poolBytes: 2 * MiB }],
    ["the largest memory", { memoryBytes: MAX_MEMORY_BYTES }],
    ["the largest memory, most of it pool", { memoryBytes: MAX_MEMORY_BYTES, poolBytes: 4000 * MiB }],
  ])("%s: regions ordered, apart and aligned", (_, options) => {
    checkLayout(layoutOf(options), options);
  });

  test("the default pool is about half of what is left", () => {
    const l = layoutOf({});
    expect(l.memoryBytes).toBe(DEFAULT_MEMORY_BYTES);
    expect(Math.abs(l.poolBytes - l.userBytes)).toBeLessThanOrEqual(2 * REGION_ALIGN);
  });

  test.each<[string, LayoutOptions, string]>([
    ["memoryBytes not a multiple of 64 KiB", { memoryBytes: 32 * MiB + 4096 }, `memoryBytes=${32 * MiB + 4096}`],
    ["memoryBytes too small", { memoryBytes: 8 * MiB }, `memoryBytes=${8 * MiB}`],
    ["memoryBytes zero", { memoryBytes: 0 }, "memoryBytes=0"],
    ["memoryBytes negative", { memoryBytes: -64 * MiB }, `memoryBytes=${-64 * MiB}`],
    ["memoryBytes above the maximum", { memoryBytes: MAX_MEMORY_BYTES + WASM_PAGE }, `memoryBytes=${MAX_MEMORY_BYTES + WASM_PAGE}`],
    ["memoryBytes 4 GiB", { memoryBytes: 2 ** 32 }, `memoryBytes=${2 ** 32}`],
    ["memoryBytes NaN", { memoryBytes: Number.NaN }, "memoryBytes=NaN"],
    ["memoryBytes fractional", { memoryBytes: 32 * MiB + 0.5 }, `memoryBytes=${32 * MiB + 0.5}`],
    ["poolBytes too large", { memoryBytes: 64 * MiB, poolBytes: 60 * MiB }, `poolBytes=${60 * MiB}`],
    ["poolBytes leaving no user memory", { memoryBytes: 64 * MiB, poolBytes: 58 * MiB }, `poolBytes=${58 * MiB}`],
    ["poolBytes not a multiple of 2 MiB", { memoryBytes: 64 * MiB, poolBytes: 3 * MiB }, `poolBytes=${3 * MiB}`],
    ["poolBytes zero", { memoryBytes: 64 * MiB, poolBytes: 0 }, "poolBytes=0"],
    ["poolBytes negative", { memoryBytes: 64 * MiB, poolBytes: -2 * MiB }, `poolBytes=${-2 * MiB}`],
    ["syncBytes not a multiple of 4 KiB", { memoryBytes: 64 * MiB, syncBytes: 1000 }, "syncBytes=1000"],
    ["syncBytes negative", { memoryBytes: 64 * MiB, syncBytes: -4096 }, "syncBytes=-4096"],
    ["syncBytes below 64 KiB (the sync heap needs room for the stub fence)", { memoryBytes: 64 * MiB, syncBytes: 0 }, "syncBytes=0"],
    ["syncBytes larger than memory", { memoryBytes: 64 * MiB, syncBytes: 128 * MiB }, `syncBytes=${128 * MiB}`],
    ["syncBytes leaving no room", { memoryBytes: 64 * MiB, syncBytes: 60 * MiB }, `syncBytes=${60 * MiB}`],
  ])("%s is EINVAL naming the value", (_, options, named) => {
    const e = einval(() => layoutOf(options), "lab_create");
    expect(e.message).toContain(named);
  });

  test("seeded random options: either EINVAL or a sound layout", async () => {
    await withSeed((rng) => {
      let ok = 0;
      for (let i = 0; i < 400; i++) {
        const memoryBytes = rng.next() < 0.9
          ? WASM_PAGE * rng.int(256, 4096) // 16 MiB .. 256 MiB, in wasm pages
          : WASM_PAGE * rng.int(1, 65536);
        const options: LayoutOptions = { memoryBytes };
        if (rng.next() < 0.5) options.syncBytes = PAGE_SIZE * rng.int(0, memoryBytes / PAGE_SIZE / 4);
        if (rng.next() < 0.5) options.poolBytes = REGION_ALIGN * rng.int(0, memoryBytes / REGION_ALIGN);
        let l: Layout;
        try {
          l = layoutOf(options);
        } catch (e) {
          expect(e, JSON.stringify(options)).toBeInstanceOf(DmaBufError);
          expect(e).toMatchObject({ code: "EINVAL", syscall: "lab_create" });
          continue;
        }
        checkLayout(l, options);
        expect(l.userBase + l.userBytes).toBe(memoryBytes);
        ok++;
      }
      expect(ok).toBeGreaterThan(100);
    });
  });
});

describe("Lab.create and the control block", () => {
  test("Lab.create validates its options the same way", async () => {
    for (const options of [{ memoryBytes: 1000 }, { memoryBytes: MAX_MEMORY_BYTES + WASM_PAGE }, { memoryBytes: 32 * MiB, poolBytes: 31 * MiB }, { syncBytes: 3 }]) {
      await expect(Lab.create(options)).rejects.toMatchObject({ name: "DmaBufError", code: "EINVAL", errno: 22, syscall: "lab_create" });
    }
  });

  test("a lab's layout is the computed one, and any thread can read it back from the control block", async () => {
    const options = { memoryBytes: 32 * MiB, poolBytes: 8 * MiB, syncBytes: 2 * MiB };
    using lab = await Lab.create(options);
    expect(lab.layout).toEqual(layoutOf(options));
    checkLayout(lab.layout, options);
    expect(lab.memory.buffer.byteLength).toBe(options.memoryBytes);
    expect(lab.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(readLayout(new Uint32Array(lab.memory.buffer))).toEqual(lab.layout);
    // The allocators serve exactly their regions.
    expect(lab.arena.pages.base).toBe(lab.layout.poolBase);
    expect(lab.arena.pages.granules).toBe(lab.layout.poolBytes >>> PAGE_SHIFT);
    expect(lab.arena.user.base).toBe(lab.layout.userBase);
    expect(lab.arena.user.granules * 2 ** USER_GRANULE_SHIFT).toBe(lab.layout.userBytes);
    // DMA reaches the pool and user memory, never the metadata below.
    expect(lab.arena.dmaLo).toBe(lab.layout.poolBase);
    expect(lab.arena.dmaHi).toBe(lab.layout.memoryBytes);
    const meta = lab.arena.u8.slice(lab.layout.metaBase, lab.layout.metaBase + 64);
    expect(() => lab.engine.fill(lab.layout.metaBase, 0xff, 64)).toThrow(expect.objectContaining({ code: "EFAULT" }));
    expect(() => lab.engine.fill(lab.layout.poolBase - 8, 0xff, 64)).toThrow(expect.objectContaining({ code: "EFAULT" }));
    expect(lab.arena.u8.slice(lab.layout.metaBase, lab.layout.metaBase + 64)).toEqual(meta);
  });

  test("Lab.attach on the same thread rebuilds an identical layout over the same memory", async () => {
    using lab = await Lab.create({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB });
    using twin = await Lab.attach(lab.share());
    expect(twin.layout).toEqual(lab.layout);
    expect(twin.memory).toBe(lab.memory);
    expect(twin.engine).not.toBe(lab.engine);
    // The state is shared, not copied: what one allocates, the other sees.
    const p = twin.allocPages(4);
    expect(lab.arena.pages.orderAt(p)).toBe(4);
    expect(lab.stats().pages).toMatchObject({ allocs: 1, freeBytes: lab.layout.poolBytes - 16 * PAGE_SIZE });
    lab.freePages(p, 4);
    const v = lab.alloc(100);
    twin.free(new Uint8Array(twin.memory.buffer, v.byteOffset, v.byteLength));
    const mine = lab.stats();
    const theirs = twin.stats();
    for (const s of [mine, theirs]) {
      expect(s.pages).toMatchObject({ allocs: 1, frees: 1, freeBytes: lab.layout.poolBytes });
      expect(s.user).toMatchObject({ allocs: 1, frees: 1, freeBytes: lab.layout.userBytes });
    }
    expect(theirs.pages.freeBlocks).toEqual(mine.pages.freeBlocks);
    expect(theirs.user.freeBlocks).toEqual(mine.user.freeBlocks);
  });

  test("Arena.attach of a memory that is not a lab is EINVAL", () => {
    const cases: [string, unknown][] = [
      ["a fresh shared memory", new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true })],
      ["a shared memory smaller than the control block", new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true })],
      ["a memory that is not shared", new WebAssembly.Memory({ initial: 2 })],
      ["a SharedArrayBuffer", new SharedArrayBuffer(2 * WASM_PAGE)],
      ["undefined", undefined],
    ];
    for (const [what, memory] of cases) {
      const e = einval(() => Arena.attach(memory as WebAssembly.Memory), "lab_attach");
      expect(e.message, what).toMatch(/dmabuf-lab arena|lab's shared WebAssembly.Memory/);
    }
  });

  test("Arena.attach refuses a memory whose control block has the wrong magic or version", async () => {
    using lab = await Lab.create({ memoryBytes: 16 * MiB });
    const copy = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });
    const u8 = new Uint8Array(copy.buffer);
    u8.set(lab.arena.u8.subarray(CONTROL_BASE, CONTROL_BASE + CONTROL_BYTES), CONTROL_BASE);
    expect(Arena.attach(copy).layout).toEqual(lab.layout); // a faithful copy is a lab
    const u32 = new Uint32Array(copy.buffer);
    u32[(CONTROL_BASE + CTL_VERSION) >>> 2] = 99;
    expect(einval(() => Arena.attach(copy), "lab_attach").message).toContain("version 99");
    u32[(CONTROL_BASE + CTL_VERSION) >>> 2] = LAB_LAYOUT_VERSION;
    u32[(CONTROL_BASE + CTL_MAGIC) >>> 2] ^= 1;
    einval(() => Arena.attach(copy), "lab_attach");
  });
});

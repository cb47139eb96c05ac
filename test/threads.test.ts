/*
 * Real worker threads over the one shared memory: four lab threads copying
 * into disjoint regions and checking each other's work, several workers
 * churning the page allocator at once, and errors crossing threads.
 * Every worker is terminated in afterEach, whatever the test's outcome.
 */
import { describe, expect, test } from "vitest";
import { DmaBufError, Lab, spawnLabThread, type LabThread, type StrategyName } from "../src/index.js";
import { artifactUrl } from "../src/engine/artifacts.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectPristine } from "./helpers/buddy-stats.js";
import { brokenCanary, guard, type Guarded } from "./helpers/canary.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { withSeed } from "./helpers/prng.js";
import { within } from "./helpers/waits.js";
import { runModule } from "./helpers/module.js";
import { releaseAll, reports, WorkerSet } from "./helpers/workers.js";
import { xxh32 } from "./helpers/xxh32.js";
import type { HeldBlock, PageChurnData, PageChurnReport } from "./workers/page-churn.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;

/** Plain workers and lab threads alike. */
const workers = new WorkerSet();
const labs = new LabSet();
cleanUpAfterEach({ workers, labs });
const newLab = (options: Parameters<typeof Lab.create>[0]): Promise<Lab> => labs.create(options);

/** Starts n lab threads; all are registered for termination even if one fails to start. */
async function spawn(lab: Lab, n: number, prefix: string): Promise<LabThread[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => spawnLabThread(lab, { name: `${prefix}-${i}` })));
  for (const s of settled) if (s.status === "fulfilled") workers.track(s.value);
  for (const s of settled) if (s.status === "rejected") throw s.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<LabThread>).value);
}

/** What spawnLabThread rejects with (undefined if it starts: the thread is then registered for termination). */
function spawnError(lab: Lab, options: Parameters<typeof spawnLabThread>[1]): Promise<unknown> {
  return within(spawnLabThread(lab, options).then(
    (t) => { workers.track(t); return undefined; },
    (err: unknown) => err,
  ), WAIT_MS, "spawnLabThread");
}

test("the reference xxHash32 matches the published vectors and the engine", async () => {
  expect(xxh32(new Uint8Array(0))).toBe(0x02cc5d05);
  expect(xxh32(new TextEncoder().encode("abc"))).toBe(0x32d153ff);
  const lab = await newLab({ memoryBytes: 16 * MiB });
  await withSeed((rng) => {
    for (const len of [0, 1, 3, 4, 15, 16, 17, 31, 64, 1000, 4099]) {
      const v = rng.bytes(lab.alloc(Math.max(len, 1)));
      const seed = rng.int(0, 0xffffffff);
      expect(lab.engine.checksumRange(v.byteOffset, len, seed), `len ${len}`).toBe(xxh32(v.subarray(0, len), seed));
      lab.free(v);
    }
  });
});

describe("four lab threads on one memory", () => {
  test("each copies into its own region, then checks a neighbour's; canaries survive", async () => {
    const lab = await newLab({ memoryBytes: 64 * MiB });
    const t = await spawn(lab, 4, "copier");
    const hello = await Promise.all(t.map((x) => within(x.api.hello(), WAIT_MS, `${x.name}.hello`)));
    expect(new Set(hello.map((h) => h.threadId)).size).toBe(4);
    expect(hello.map((h) => h.name)).toEqual(["copier-0", "copier-1", "copier-2", "copier-3"]);

    await withSeed(async (rng) => {
      const strategies: StrategyName[] = ["bulk", "simd", "words", "reference"];
      const margin = 64;
      // Four regions in one 2 MiB block of pages, at odd offsets and of odd lengths.
      const block = lab.allocPages(9);
      const area = lab.arena.view(block, PAGE_SIZE * 2 ** 9);
      const regions: { at: number; copyLen: number; fillLen: number; value: number; src: Uint8Array; expected: Uint8Array; g: Guarded }[] = [];
      let at = margin + rng.int(0, 63);
      for (let i = 0; i < 4; i++) {
        const copyLen = rng.int(100_000, 300_000);
        const fillLen = rng.int(1, 5000);
        const value = 0x11 * (i + 1); // never the canary byte 0xa5
        const src = rng.bytes(lab.alloc(copyLen));
        const expected = new Uint8Array(copyLen + fillLen);
        expected.set(src);
        expected.fill(value, copyLen);
        const g = guard(area, at, copyLen + fillLen, margin);
        regions.push({ at, copyLen, fillLen, value, src, expected, g });
        at += copyLen + fillLen + 2 * margin + rng.int(0, 63);
      }
      expect(at).toBeLessThan(area.length);

      // All four at once, each with its own engine and strategy.
      await within(Promise.all(t.map(async (x, i) => {
        const r = regions[i];
        const dst = block + r.at;
        await x.api.copy(dst, r.src.byteOffset, r.copyLen, strategies[i]);
        await x.api.fill(dst + r.copyLen, r.value, r.fillLen);
      })), WAIT_MS, "the copies");

      // Each reads its neighbour's region.
      const seeds = regions.map(() => rng.int(0, 0xffffffff));
      const sums = await within(Promise.all(t.map((x, i) => {
        const j = (i + 1) % 4;
        return x.api.checksumRange(block + regions[j].at, regions[j].expected.length, seeds[j]);
      })), WAIT_MS, "the checksums");
      regions.forEach((r, j) => {
        const i = (j + 3) % 4;
        expect(sums[i], `thread ${i}'s checksum of region ${j}`).toBe(xxh32(r.expected, seeds[j]));
        expect(Buffer.from(area.buffer, block + r.at, r.expected.length).equals(r.expected), `region ${j}'s bytes`).toBe(true);
        expect(brokenCanary(r.g, margin), `canaries of region ${j}`).toBeUndefined();
      });
      // The sources were only read.
      const srcSums = await Promise.all(t.map((x, i) => x.api.checksumRange(regions[i].src.byteOffset, regions[i].copyLen)));
      regions.forEach((r, i) => expect(srcSums[i]).toBe(xxh32(r.src)));
      for (const r of regions) lab.free(r.src);
      lab.freePages(block, 9);
    });
  });
});

/** The words page-churn stamps with a block's tag: each page's first word and the block's last. */
function stampWords(offset: number, order: number): number[] {
  const words: number[] = [];
  for (let i = 0; i < 2 ** order; i++) words.push((offset + i * PAGE_SIZE) >>> 2);
  words.push((offset + PAGE_SIZE * 2 ** order - 4) >>> 2);
  return words;
}

describe("page allocation under contention", () => {
  test.each([2, 4])("%i workers allocate and free pages at once: no page is handed out twice", async (count) => {
    const lab = await newLab({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB });
    const pages = lab.arena.pages;
    const pristine = pages.stats();
    const { poolBase, poolBytes } = lab.layout;
    await withSeed(async (rng) => {
      const start = new Int32Array(new SharedArrayBuffer(4));
      const boxes = Array.from({ length: count }, (_, index) => {
        const data: PageChurnData = {
          handle: lab.share(), index, seed: rng.int(0, 0xffffffff), steps: 10_000, maxHeld: 12, maxOrder: 8,
          start, timeoutMs: WAIT_MS,
        };
        return workers.start("page-churn", `churn-${index}`, data);
      });
      await releaseAll(boxes, start, WAIT_MS);
      const done = await reports<PageChurnReport>(boxes, WAIT_MS);

      for (const r of done) expect(r.corrupt, `worker ${r.index}`).toEqual([]);
      const held: (HeldBlock & { worker: number })[] = done.flatMap((r) => r.held.map((b) => ({ ...b, worker: r.index })));
      held.sort((a, b) => a.offset - b.offset);
      for (const [i, b] of held.entries()) {
        const size = PAGE_SIZE * 2 ** b.order;
        expect(b.offset).toBeGreaterThanOrEqual(poolBase);
        expect(b.offset + size).toBeLessThanOrEqual(poolBase + poolBytes);
        expect((b.offset - poolBase) % size).toBe(0);
        if (i + 1 < held.length) {
          const next = held[i + 1];
          expect(b.offset + size, `worker ${b.worker}'s block at ${b.offset} overlaps worker ${next.worker}'s at ${next.offset}`)
            .toBeLessThanOrEqual(next.offset);
        }
        expect(pages.orderAt(b.offset)).toBe(b.order);
        const bad = stampWords(b.offset, b.order).find((w) => lab.arena.u32[w] !== b.tag);
        expect(bad, `stamp of worker ${b.worker}'s block at ${b.offset}`).toBeUndefined();
      }

      // The allocator counted exactly what the workers did.
      const sum = (f: (r: PageChurnReport) => number) => done.reduce((n, r) => n + f(r), 0);
      const s = pages.stats();
      expect(s.allocs - pristine.allocs).toBe(sum((r) => r.allocs));
      expect(s.frees - pristine.frees).toBe(sum((r) => r.frees));
      expect(s.failures - pristine.failures).toBe(sum((r) => r.enomem));
      expect(s.freeBytes).toBe(poolBytes - held.reduce((n, b) => n + PAGE_SIZE * 2 ** b.order, 0));
      expect(sum((r) => r.allocs)).toBeGreaterThan(count * 100);

      // Blocks from any thread can be freed by any other; then the pool is pristine.
      for (const b of held) lab.freePages(b.offset, b.order);
      const end = pages.stats();
      expect(end.freeBytes).toBe(poolBytes);
      expectPristine(end, pristine);
    });
  });
});

describe("errors across threads", () => {
  test("a DmaBufError thrown in a lab thread arrives with code, errno and syscall", async () => {
    const lab = await newLab({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB });
    const [t] = await spawn(lab, 1, "errors");
    const { poolBase } = lab.layout;
    const cases: [() => Promise<unknown>, string, number, string, string][] = [
      [() => t.api.freePages(poolBase + 1, 0), "EINVAL", 22, "free_pages", `0x${(poolBase + 1).toString(16)}`],
      [() => t.api.freePages(poolBase, 0), "EINVAL", 22, "free_pages", "double free"],
      [() => t.api.allocPages(99), "EINVAL", 22, "alloc_pages", "order 99"],
      [() => t.api.alloc(1024 * MiB), "ENOMEM", 12, "alloc", `size ${1024 * MiB}`],
      [() => t.api.copy(0, 0, 16), "EFAULT", 14, "copy", "outside"],
    ];
    for (const [call, code, errno, syscall, named] of cases) {
      const e = await within(call().then(() => undefined, (err: unknown) => err), WAIT_MS, syscall);
      expect(e).toBeInstanceOf(DmaBufError);
      expect(e).toMatchObject({ name: "DmaBufError", code, errno, syscall });
      expect((e as Error).message).toContain(`${code}: ${syscall}: `);
      expect((e as Error).message).toContain(named);
    }
    // The failed calls changed nothing, and the thread still works.
    expect(lab.stats().pages.freeBytes).toBe(lab.layout.poolBytes);
    const p = await t.api.allocPages(3);
    expect(lab.arena.pages.orderAt(p)).toBe(3);
    lab.freePages(p, 3); // pages allocated in one thread, freed in another
    expect(lab.stats().pages.freeBytes).toBe(lab.layout.poolBytes);
  });

  test("a worker started with a handle that is not a lab fails spawnLabThread with a clear error", async () => {
    const lab = await newLab({ memoryBytes: 16 * MiB });
    const notALab = {
      share: () => ({ memory: new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true }), module: lab.engine.module }),
    } as unknown as Lab;
    const e = await spawnError(notALab, { name: "not-a-lab" });
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/not a dmabuf-lab arena/);
    expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall: "lab_attach" });
  });

  test("a missing worker bundle fails spawnLabThread instead of hanging: ENOENT naming the worker and its URL", async () => {
    const lab = await newLab({ memoryBytes: 16 * MiB });
    const entry = artifactUrl("test-workers/no-such-worker.mjs");
    const e = await spawnError(lab, { entry, name: "missing" });
    expect(e).toBeInstanceOf(DmaBufError);
    expect(e).toMatchObject({ code: "ENOENT", errno: 2, syscall: "spawn_worker" });
    expect((e as Error).message).toContain(`worker missing (${entry.href})`);
  });
});

describe("lab thread lifetime", () => {
  test("a process that forgets to terminate its lab thread still exits, after the thread's answers", async () => {
    // A real Node process on the built library: a call is answered (the
    // process stays up for it), then nothing terminates the thread.
    const lib = new URL("../dist/lib/index.js", import.meta.url).href;
    const script = `
      import { Lab, spawnLabThread } from ${JSON.stringify(lib)};
      const lab = await Lab.create({ memoryBytes: 64 << 20 });
      const t = await spawnLabThread(lab, { name: "forgotten" });
      const at = await t.api.alloc(4096);
      await t.api.fill(at, 7, 4096);
      console.log("filled", lab.arena.u8[at + 4095]);`;
    const { code, stdout } = await runModule(script);
    expect(stdout).toContain("filled 7");
    expect(code, "exit code (-1: killed after 30 s, the process hung)").toBe(0);
  });
});

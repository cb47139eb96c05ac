/*
 * Real worker threads over the one shared memory: four lab threads copying
 * into disjoint regions and checking each other's work, several workers
 * churning the page allocator at once, and errors crossing threads.
 * Every worker is terminated in afterEach, whatever the test's outcome.
 */
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, test } from "vitest";
import { DmaBufError, Lab, spawnLabThread, type LabThread, type StrategyName } from "../src/index.js";
import { artifactUrl } from "../src/engine/artifacts.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { brokenCanary, guard, type Guarded } from "./helpers/canary.js";
import { withSeed } from "./helpers/prng.js";
import type { HeldBlock, PageChurnData, PageChurnReport } from "./workers/page-churn.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;

const threads: LabThread[] = [];
const workers: Worker[] = [];
const labs: Lab[] = [];
afterEach(async () => {
  await Promise.all([
    ...threads.splice(0).map((t) => t.terminate()),
    ...workers.splice(0).map((w) => w.terminate()),
  ]);
  for (const lab of labs.splice(0)) lab.close();
});

async function newLab(options: Parameters<typeof Lab.create>[0]): Promise<Lab> {
  const lab = await Lab.create(options);
  labs.push(lab);
  return lab;
}

/** Starts n lab threads; all are registered for termination even if one fails to start. */
async function spawn(lab: Lab, n: number, prefix: string): Promise<LabThread[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => spawnLabThread(lab, { name: `${prefix}-${i}` })));
  for (const s of settled) if (s.status === "fulfilled") threads.push(s.value);
  for (const s of settled) if (s.status === "rejected") throw s.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<LabThread>).value);
}

/** Rejects when the promise has not settled within ms. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** xxHash32, written from the specification, to check the engine's checksums independently. */
function xxh32(data: Uint8Array, seed = 0): number {
  const P1 = 0x9e3779b1, P2 = 0x85ebca77, P3 = 0xc2b2ae3d, P4 = 0x27d4eb2f, P5 = 0x165667b1;
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  const word = (i: number) => data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
  const round = (acc: number, lane: number) => Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);
  const len = data.length;
  let i = 0;
  let h: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) | 0, v2 = (seed + P2) | 0, v3 = seed | 0, v4 = (seed - P1) | 0;
    for (; i + 16 <= len; i += 16) {
      v1 = round(v1, word(i));
      v2 = round(v2, word(i + 4));
      v3 = round(v3, word(i + 8));
      v4 = round(v4, word(i + 12));
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + len) | 0;
  for (; i + 4 <= len; i += 4) h = Math.imul(rotl((h + Math.imul(word(i), P3)) | 0, 17), P4);
  for (; i < len; i++) h = Math.imul(rotl((h + Math.imul(data[i], P5)) | 0, 11), P1);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
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

/** Collects a plain worker's messages from the start, so that none is missed. */
class Inbox {
  private readonly queue: { type: string }[] = [];
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(worker: Worker, readonly name: string) {
    worker.on("message", (m: { type: string; message?: string }) => {
      if (m.type === "error") this.failure ??= new Error(`${name}: ${m.message}`);
      else this.queue.push(m);
      this.wake?.();
    });
    worker.on("error", (e: Error) => { this.failure ??= e; this.wake?.(); });
    worker.on("exit", (code: number) => { this.failure ??= new Error(`${name} exited with code ${code}`); this.wake?.(); });
  }

  async next<T extends { type: string }>(type: T["type"], ms: number): Promise<T> {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no '${type}' message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = undefined;
    }
    const m = this.queue.shift()!;
    expect(m.type, `${this.name}'s message`).toBe(type);
    return m as T;
  }
}

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
        const worker = new Worker(artifactUrl("test-workers/page-churn.mjs"), { workerData: data, name: `churn-${index}` });
        workers.push(worker);
        return new Inbox(worker, `churn-${index}`);
      });
      await Promise.all(boxes.map((b) => b.next("ready", WAIT_MS)));
      Atomics.store(start, 0, 1);
      Atomics.notify(start, 0);
      const reports = await Promise.all(boxes.map((b) => b.next<PageChurnReport>("done", WAIT_MS)));

      for (const r of reports) expect(r.corrupt, `worker ${r.index}`).toEqual([]);
      const held: (HeldBlock & { worker: number })[] = reports.flatMap((r) => r.held.map((b) => ({ ...b, worker: r.index })));
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
      const sum = (f: (r: PageChurnReport) => number) => reports.reduce((n, r) => n + f(r), 0);
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
      expect(end.freeBlocks).toEqual(pristine.freeBlocks);
      expect(end.fragmentation).toBe(0);
      expect(end.unusable).toEqual(pristine.unusable);
      expect(end.allocs - pristine.allocs).toBe(end.frees - pristine.frees);
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
    const e = await within(spawnLabThread(notALab, { name: "not-a-lab" }).then(
      (t) => { threads.push(t); return undefined; },
      (err: unknown) => err,
    ), WAIT_MS, "spawnLabThread");
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/not a dmabuf-lab arena/);
    expect(e).toMatchObject({ code: "EINVAL", errno: 22, syscall: "lab_attach" });
  });

  test("a missing worker bundle fails spawnLabThread instead of hanging", async () => {
    const lab = await newLab({ memoryBytes: 16 * MiB });
    const entry = artifactUrl("test-workers/no-such-worker.mjs");
    const e = await within(spawnLabThread(lab, { entry }).then(
      (t) => { threads.push(t); return undefined; },
      (err: unknown) => err,
    ), WAIT_MS, "spawnLabThread");
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain("no-such-worker");
  });
});

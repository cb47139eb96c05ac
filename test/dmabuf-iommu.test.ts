/*
 * The IOMMU (src/dmabuf/iommu.ts): map, translate and unmap against a plain
 * model of the page table with a seeded PRNG; faults (unmapped, forbidden,
 * outside the space) recorded and emitting nothing; the IOVA allocator's
 * exhaustion and page 0; bad arguments changing nothing; destroy giving
 * everything back; a device thread translating without a lock while this
 * thread maps and unmaps (worker attach-iommu-prober). A worker's IOMMU
 * translated in the main thread is in test/dmabuf-attachment.test.ts.
 */
import { describe, expect, test } from "vitest";
import type { Lab } from "../src/index.js";
import { IOMMU_READ, IOMMU_WRITE, Iommu, type PhysRun } from "../src/dmabuf/iommu.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectPristine } from "./helpers/buddy-stats.js";
import { expectErrno } from "./helpers/errors.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { takeRandom, withSeed, type Prng } from "./helpers/prng.js";
import { releaseAll, reports, WorkerSet } from "./helpers/workers.js";
import type { ProberData, ProberReport } from "./workers/attach-iommu-prober.js";

const MiB = 1024 * 1024;
const RW = IOMMU_READ | IOMMU_WRITE;
const WAIT_MS = 20_000;
const labs = new LabSet({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

type Translation = { runs: PhysRun[] } | { code: string; message: string; emitted: number };

function translate(iommu: Iommu, iova: number, len: number, access: number): Translation {
  const runs: PhysRun[] = [];
  try {
    const n = iommu.translate(iova, len, access, (addr, l) => runs.push({ addr, len: l }));
    expect(n).toBe(runs.length);
    return { runs };
  } catch (e) {
    const err = e as { code: string; message: string };
    return { code: err.code, message: err.message, emitted: runs.length };
  }
}

/** What every failed call must leave alone: the IOMMU's counters and the allocators. */
function state(lab: Lab, iommu: Iommu) {
  const { mappedBytes, mappings, users, faults } = iommu.stats();
  const { pages, sync } = lab.stats();
  return { mappedBytes, mappings, users, faults, pagesFree: pages.freeBytes, syncFree: sync.freeBytes };
}

/**
 * The model: the page table as a map from device page to {phys, prot} and
 * the mappings as [first page, pages]. translate() predicts the runs or the
 * first faulting byte.
 */
class Model {
  readonly ptes = new Map<number, { phys: number; prot: number }>();
  readonly mappings: { first: number; pages: number }[] = [];

  constructor(readonly pages: number) {}

  map(first: number, runs: PhysRun[], prot: number): void {
    let page = first;
    for (const r of runs) for (let a = r.addr; a < r.addr + r.len; a += PAGE_SIZE) this.ptes.set(page++, { phys: a, prot });
    this.mappings.push({ first, pages: page - first });
  }

  unmap(i: number): void {
    const [m] = this.mappings.splice(i, 1);
    for (let p = m.first; p < m.first + m.pages; p++) this.ptes.delete(p);
  }

  /** Whether any n consecutive pages in [1, pages) are free. */
  hasRoom(n: number): boolean {
    let run = 0;
    for (let p = 1; p < this.pages; p++) {
      run = this.ptes.has(p) ? 0 : run + 1;
      if (run >= n) return true;
    }
    return false;
  }

  translate(iova: number, len: number, access: number): { runs: PhysRun[] } | { faultAt: number } {
    const runs: PhysRun[] = [];
    for (let at = iova; at < iova + len;) {
      const page = Math.floor(at / PAGE_SIZE);
      const pte = this.ptes.get(page);
      if (page >= this.pages || pte === undefined || (pte.prot & access) !== access) return { faultAt: at };
      const n = Math.min((page + 1) * PAGE_SIZE, iova + len) - at;
      const addr = pte.phys + (at - page * PAGE_SIZE);
      const last = runs[runs.length - 1];
      if (last !== undefined && last.addr + last.len === addr) last.len += n;
      else runs.push({ addr, len: n });
      at += n;
    }
    return { runs };
  }
}

/** 1 to 4 page-aligned pieces of the held blocks (possibly the same page twice, as an IOMMU allows). */
function randomRuns(rng: Prng, blocks: PhysRun[]): PhysRun[] {
  return Array.from({ length: rng.int(1, 4) }, () => {
    const b = rng.pick(blocks);
    const pages = b.len / PAGE_SIZE;
    const skip = rng.int(0, pages - 1);
    return { addr: b.addr + skip * PAGE_SIZE, len: rng.int(1, pages - skip) * PAGE_SIZE };
  });
}

describe("map, translate, unmap", () => {
  test("against the model: random maps, unmaps and translations (seeded)", async () => {
    const lab = await labs.create();
    const pristine = lab.stats();
    await withSeed((rng) => {
      const iommu = Iommu.create(lab.sync, { iovaBytes: MiB }); // 256 pages: exhaustion and wrap-around happen
      const model = new Model(iommu.pages);
      const blocks = Array.from({ length: 24 }, () => {
        const order = rng.int(0, 3);
        return { addr: lab.allocPages(order), len: PAGE_SIZE * 2 ** order };
      });
      let faults = 0;
      const seen = { enomem: 0, badUnmaps: 0, runs: 0 };
      for (let step = 0; step < 1500; step++) {
        const what = `step ${step}`;
        const op = rng.next();
        if (op < 0.35) {
          const runs = randomRuns(rng, blocks);
          const prot = rng.int(1, 3);
          const pages = runs.reduce((n, r) => n + r.len / PAGE_SIZE, 0);
          if (!model.hasRoom(pages)) {
            const before = state(lab, iommu);
            expectErrno(() => iommu.map(runs, prot), "ENOMEM");
            expect(state(lab, iommu), what).toEqual(before);
            seen.enomem++;
            continue;
          }
          const iova = iommu.map(runs, prot);
          const first = iova / PAGE_SIZE;
          expect(Number.isInteger(first) && first >= 1 && first + pages <= iommu.pages, `${what}: IOVA ${iova}`).toBe(true);
          for (let p = first; p < first + pages; p++) expect(model.ptes.has(p), `${what}: page ${p} mapped twice`).toBe(false);
          model.map(first, runs, prot);
        } else if (op < 0.55 && model.mappings.length > 0) {
          const i = rng.int(0, model.mappings.length - 1);
          const m = model.mappings[i];
          // Now and then a wrong range first: it must be EINVAL and change nothing.
          if (rng.next() < 0.3) {
            const bad = rng.pick([
              [m.first, m.pages + 1], [m.first + 1, m.pages - 1], [m.first, m.pages - 1], [m.first - 1, m.pages + 1],
            ].filter(([f, n]) => n > 0 && f >= 1 && f + n <= iommu.pages));
            if (bad !== undefined) {
              const before = state(lab, iommu);
              expectErrno(() => iommu.unmap(bad[0] * PAGE_SIZE, bad[1] * PAGE_SIZE), "EINVAL");
              expect(state(lab, iommu), what).toEqual(before);
              seen.badUnmaps++;
            }
          }
          iommu.unmap(m.first * PAGE_SIZE, m.pages * PAGE_SIZE);
          model.unmap(i);
        } else {
          const inMapping = model.mappings.length > 0 && rng.next() < 0.7;
          const m = inMapping ? rng.pick(model.mappings) : undefined;
          const iova = m ? m.first * PAGE_SIZE + rng.int(0, m.pages * PAGE_SIZE - 1) : rng.int(0, iommu.iovaBytes + 2 * PAGE_SIZE);
          const len = rng.int(0, rng.next() < 0.8 ? 3 * PAGE_SIZE : 40 * PAGE_SIZE);
          const access = rng.int(1, 3);
          const want = model.translate(iova, len, access);
          const got = translate(iommu, iova, len, access);
          if ("runs" in want) {
            expect(got, `${what}: translate(${iova}, ${len}, ${access})`).toEqual(want);
            seen.runs += want.runs.length;
          } else {
            expect(got, `${what}: translate(${iova}, ${len}, ${access})`).toMatchObject({ code: "EFAULT", emitted: 0 });
            faults++;
            expect(iommu.faults(), what).toEqual({ count: faults, lastIova: want.faultAt, lastAccess: access });
          }
        }
        const mappedPages = model.mappings.reduce((n, x) => n + x.pages, 0);
        expect(iommu.stats(), what).toMatchObject({ mappedBytes: mappedPages * PAGE_SIZE, mappings: model.mappings.length });
      }
      // The walk reached every outcome.
      expect(Math.min(seen.enomem, seen.badUnmaps, seen.runs, faults), JSON.stringify({ ...seen, faults })).toBeGreaterThan(0);
      while (model.mappings.length > 0) {
        const m = takeRandom(rng, model.mappings);
        iommu.unmap(m.first * PAGE_SIZE, m.pages * PAGE_SIZE);
      }
      iommu.destroy();
      for (const b of blocks) lab.freePages(b.addr, Math.log2(b.len / PAGE_SIZE));
    });
    const after = lab.stats();
    expectPristine(after.pages, pristine.pages);
    expect(after.sync.freeBytes).toBe(pristine.sync.freeBytes); // the stub fence lives there for good
  });

  test("runs are merged where pages are physically adjacent, also across two mappings", async () => {
    const lab = await labs.create();
    const block = lab.allocPages(3); // 8 adjacent pages
    const iommu = Iommu.create(lab.sync);
    const a = iommu.map([{ addr: block, len: 2 * PAGE_SIZE }, { addr: block + 2 * PAGE_SIZE, len: PAGE_SIZE }], RW);
    const b = iommu.map([{ addr: block + 3 * PAGE_SIZE, len: PAGE_SIZE }, { addr: block + 6 * PAGE_SIZE, len: PAGE_SIZE }], RW);
    expect(b).toBe(a + 3 * PAGE_SIZE); // next fit: right after
    expect(translate(iommu, a + 100, 5 * PAGE_SIZE - 200, IOMMU_READ)).toEqual({
      runs: [{ addr: block + 100, len: 4 * PAGE_SIZE - 100 }, { addr: block + 6 * PAGE_SIZE, len: PAGE_SIZE - 100 }],
    });
    iommu.unmap(a, 3 * PAGE_SIZE);
    iommu.unmap(b, 2 * PAGE_SIZE);
    iommu.destroy();
    lab.freePages(block, 3);
  });

  test("device address 0 is never handed out, even when the space is exhausted; a full space is ENOMEM", async () => {
    const lab = await labs.create();
    const page = lab.allocPages(0);
    const iommu = Iommu.create(lab.sync, { iovaBytes: 4 * PAGE_SIZE });
    const iovas = [1, 2, 3].map(() => iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ));
    expect([...iovas].sort((x, y) => x - y)).toEqual([PAGE_SIZE, 2 * PAGE_SIZE, 3 * PAGE_SIZE]);
    const before = state(lab, iommu);
    expect(expectErrno(() => iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ), "ENOMEM").message).toContain("no free range of 1 pages");
    expect(state(lab, iommu)).toEqual(before);
    expect(translate(iommu, 0, 1, IOMMU_READ)).toMatchObject({ code: "EFAULT", emitted: 0 });
    expect(iommu.faults()).toEqual({ count: 1, lastIova: 0, lastAccess: IOMMU_READ });
    // A freed range comes back (the search wraps round).
    iommu.unmap(2 * PAGE_SIZE, PAGE_SIZE);
    expect(iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ)).toBe(2 * PAGE_SIZE);
    for (const iova of iovas) iommu.unmap(iova, PAGE_SIZE);
    iommu.destroy();
    lab.freePages(page, 0);
  });
});

describe("faults", () => {
  test("an access the mapping does not allow faults, naming the IOVA and the access; the other access works", async () => {
    const lab = await labs.create();
    const page = lab.allocPages(1);
    const iommu = Iommu.create(lab.sync);
    const ro = iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ);
    const wo = iommu.map([{ addr: page + PAGE_SIZE, len: PAGE_SIZE }], IOMMU_WRITE);
    expect(translate(iommu, ro, PAGE_SIZE, IOMMU_READ)).toEqual({ runs: [{ addr: page, len: PAGE_SIZE }] });
    expect(translate(iommu, wo + 8, 8, IOMMU_WRITE)).toEqual({ runs: [{ addr: page + PAGE_SIZE + 8, len: 8 }] });
    const w = translate(iommu, ro + 10, 20, IOMMU_WRITE);
    expect(w).toMatchObject({ code: "EFAULT", emitted: 0 });
    expect((w as { message: string }).message).toContain(`DMA write at IOVA 0x${(ro + 10).toString(16)}: the mapping allows read only`);
    expect(translate(iommu, wo, 1, IOMMU_READ)).toMatchObject({ code: "EFAULT", emitted: 0 });
    // Read/write access over both: the first page allows no write.
    expect(translate(iommu, ro, 2 * PAGE_SIZE, RW)).toMatchObject({ code: "EFAULT", emitted: 0 });
    expect(iommu.faults()).toEqual({ count: 3, lastIova: ro, lastAccess: RW });
    iommu.unmap(ro, PAGE_SIZE);
    iommu.unmap(wo, PAGE_SIZE);
    iommu.destroy();
    lab.freePages(page, 1);
  });

  test("a range that runs past the IOVA space faults at its end, before emitting the mapped part", async () => {
    const lab = await labs.create();
    const page = lab.allocPages(0);
    const iommu = Iommu.create(lab.sync, { iovaBytes: 2 * PAGE_SIZE });
    const iova = iommu.map([{ addr: page, len: PAGE_SIZE }], RW);
    expect(iova).toBe(PAGE_SIZE);
    const r = translate(iommu, iova + 100, PAGE_SIZE, IOMMU_READ);
    expect(r).toMatchObject({ code: "EFAULT", emitted: 0 });
    expect((r as { message: string }).message).toContain("outside the 8192-byte IOVA space");
    expect(iommu.faults()).toEqual({ count: 1, lastIova: 2 * PAGE_SIZE, lastAccess: IOMMU_READ });
    expect(translate(iommu, 2 ** 32 - 1, 1, IOMMU_WRITE)).toMatchObject({ code: "EFAULT", emitted: 0 });
    expect(iommu.faults()).toEqual({ count: 2, lastIova: 2 ** 32 - 1, lastAccess: IOMMU_WRITE });
    iommu.unmap(iova, PAGE_SIZE);
    iommu.destroy();
    lab.freePages(page, 0);
  });

  test("arguments that are not u32s, or a bad access, are EINVAL and record no fault; length 0 emits nothing", async () => {
    const lab = await labs.create();
    const iommu = Iommu.create(lab.sync);
    for (const [iova, len, access] of [[-1, 1, 1], [0.5, 1, 1], [PAGE_SIZE, -1, 1], [PAGE_SIZE, 2 ** 32, 1], [2 ** 32, 1, 1],
      [PAGE_SIZE, 1, 0], [PAGE_SIZE, 1, 4], [Number.NaN, 1, 1]]) {
      expectErrno(() => iommu.translate(iova, len, access, () => {}), "EINVAL");
    }
    expect(translate(iommu, PAGE_SIZE, 0, IOMMU_READ)).toEqual({ runs: [] });
    expect(iommu.faults().count).toBe(0);
    iommu.destroy();
  });
});

describe("errors and lifetime", () => {
  test("bad map and unmap arguments are EINVAL and change nothing", async () => {
    const lab = await labs.create();
    const page = lab.allocPages(0);
    const iommu = Iommu.create(lab.sync);
    const iova = iommu.map([{ addr: page, len: PAGE_SIZE }], RW);
    const before = state(lab, iommu);
    const { dmaLo, dmaHi } = lab.arena;
    const badRuns: PhysRun[][] = [
      [], [{ addr: page + 1, len: PAGE_SIZE }], [{ addr: page, len: 100 }], [{ addr: page, len: 0 }],
      [{ addr: dmaLo - PAGE_SIZE, len: PAGE_SIZE }], [{ addr: dmaHi - PAGE_SIZE, len: 2 * PAGE_SIZE }],
      [{ addr: page, len: PAGE_SIZE }, { addr: -PAGE_SIZE, len: PAGE_SIZE }],
    ];
    for (const runs of badRuns) expectErrno(() => iommu.map(runs, RW), "EINVAL");
    for (const prot of [0, 4, 7, 1.5]) expectErrno(() => iommu.map([{ addr: page, len: PAGE_SIZE }], prot), "EINVAL");
    for (const [at, n] of [[iova, 2 * PAGE_SIZE], [iova + 1, PAGE_SIZE], [0, PAGE_SIZE], [iova + PAGE_SIZE, PAGE_SIZE],
      [iova, 0], [iommu.iovaBytes, PAGE_SIZE]]) {
      expectErrno(() => iommu.unmap(at, n), "EINVAL");
    }
    expect(state(lab, iommu)).toEqual(before);
    expect(translate(iommu, iova, PAGE_SIZE, RW)).toEqual({ runs: [{ addr: page, len: PAGE_SIZE }] });
    iommu.unmap(iova, PAGE_SIZE);
    iommu.destroy();
    lab.freePages(page, 0);
  });

  test("create: bad sizes are EINVAL, a page table the pool cannot hold ENOMEM, both changing nothing", async () => {
    const lab = await labs.create({ memoryBytes: 16 * MiB, poolBytes: 2 * MiB });
    const before = lab.stats();
    for (const iovaBytes of [0, PAGE_SIZE, PAGE_SIZE * 2 + 1, 2 ** 32 + PAGE_SIZE, -8192, Number.NaN]) {
      expect(expectErrno(() => Iommu.create(lab.sync, { iovaBytes }), "EINVAL").message).toContain(`iovaBytes ${iovaBytes}`);
    }
    expectErrno(() => Iommu.create(lab.sync, { iovaBytes: 2 ** 32 }), "ENOMEM"); // a 4 MiB page table in a 2 MiB pool
    const after = lab.stats();
    expect([after.pages.freeBytes, after.sync.freeBytes]).toEqual([before.pages.freeBytes, before.sync.freeBytes]);
  });

  test("destroy is EBUSY while mappings or users remain; afterwards the offset names no IOMMU", async () => {
    const lab = await labs.create();
    const pristine = lab.stats();
    const page = lab.allocPages(0);
    const iommu = Iommu.create(lab.sync);
    const other = new Iommu(lab.sync, iommu.offset); // another thread's view, as it would build it
    expect(other.pages).toBe(iommu.pages);
    const iova = other.map([{ addr: page, len: PAGE_SIZE }], RW);
    expectErrno(() => iommu.destroy(), "EBUSY");
    iommu.unmap(iova, PAGE_SIZE);
    iommu.addUser();
    expect(expectErrno(() => iommu.destroy(), "EBUSY").message).toContain("0 mapping(s) and 1 user(s)");
    iommu.dropUser();
    expectErrno(() => iommu.dropUser(), "EINVAL");
    iommu.destroy();
    expectErrno(() => new Iommu(lab.sync, iommu.offset), "EINVAL");
    expectErrno(() => other.map([{ addr: page, len: PAGE_SIZE }], RW), "EINVAL");
    for (const bogus of [0, 12345, lab.layout.syncBase + 64, Number.NaN]) expectErrno(() => new Iommu(lab.sync, bogus), "EINVAL");
    lab.freePages(page, 0);
    const after = lab.stats();
    expectPristine(after.pages, pristine.pages);
    expect(after.sync.freeBytes).toBe(pristine.sync.freeBytes); // the stub fence lives there for good
  });
});

describe("threads", () => {
  test("a device thread translates without a lock while this thread maps and unmaps: exact results, or a fault, never a page not mapped", async () => {
    const lab = await labs.create();
    const pristine = lab.stats();
    await withSeed(async (rng) => {
      const iommu = Iommu.create(lab.sync, { iovaBytes: MiB });
      const pages = Array.from({ length: 48 }, () => ({ addr: lab.allocPages(0), len: PAGE_SIZE }));
      const block = lab.allocPages(2);
      const stableIova = iommu.map([{ addr: block + PAGE_SIZE, len: 2 * PAGE_SIZE }, pages[0]], IOMMU_READ);
      const stable = { iova: stableIova + 100, len: 3 * PAGE_SIZE - 200, runs: [] as PhysRun[] };
      const want = translate(iommu, stable.iova, stable.len, IOMMU_READ);
      if (!("runs" in want)) throw new Error("the stable mapping does not translate");
      stable.runs = want.runs;
      const start = new Int32Array(new SharedArrayBuffer(4));
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const data: ProberData = {
        handle: lab.share(), iommu: iommu.offset, stable, seed: rng.int(0, 2 ** 31),
        pages: [...pages.map((p) => p.addr), block + PAGE_SIZE, block + 2 * PAGE_SIZE], minRounds: 200, start, stop, timeoutMs: WAIT_MS,
      };
      const prober = workers.start("attach-iommu-prober", "prober", data);
      await releaseAll([prober], start, WAIT_MS);
      const live: { iova: number; len: number }[] = [];
      for (let step = 0; step < 3000; step++) {
        if (live.length > 0 && rng.next() < 0.45) {
          const m = takeRandom(rng, live);
          iommu.unmap(m.iova, m.len);
          continue;
        }
        const runs = randomRuns(rng, pages);
        try {
          live.push({ iova: iommu.map(runs, rng.int(1, 3)), len: runs.reduce((n, r) => n + r.len, 0) });
        } catch (e) {
          if ((e as { code?: string }).code !== "ENOMEM") throw e;
        }
      }
      Atomics.store(stop, 0, 1);
      const [report] = await reports<ProberReport>([prober], WAIT_MS);
      expect(report.problems).toEqual([]);
      expect(report.rounds).toBeGreaterThanOrEqual(200);
      expect(report.hits + report.faults).toBe(report.rounds);
      for (const m of live) iommu.unmap(m.iova, m.len);
      iommu.unmap(stableIova, 3 * PAGE_SIZE);
      iommu.destroy();
      pages.forEach((p) => lab.freePages(p.addr, 0));
      lab.freePages(block, 2);
    });
    expectPristine(lab.stats().pages, pristine.pages);
  });
});

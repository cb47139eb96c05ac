/*
 * dma-heap exporters and the dma-buf record: the system heap's chunk orders
 * and zeroed pages (the kernel's alloc_zeroed selftest), cma's contiguity and
 * its ENOMEM when fragmented, write-combined system-uncached, references and
 * release, names, the per-buffer reservation object, and a buffer shared
 * with a real worker by offset.
 */
import { describe, expect, test } from "vitest";
import { CACHING_CACHED, CACHING_WRITE_COMBINE, DmaBufRecord, DMA_RESV_USAGE_WRITE, type Lab } from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { WorkerSet } from "./helpers/workers.js";
import { withSeed } from "./helpers/prng.js";
import type { DmabufReaderData, DmabufReaderReport } from "./workers/dmabuf-reader.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

/** What a failed call must leave alone: the page pool and the sync heap. */
function poolState(lab: Lab) {
  const { pages, sync, user } = lab.stats();
  return { pagesFree: pages.freeBytes, freeBlocks: pages.freeBlocks, syncFree: sync.freeBytes, userFree: user.freeBytes };
}

/**
 * Takes every page of the pool, then gives back every other one, so that only
 * order-0 blocks are free and no two of them are adjacent. Returns the pages
 * still held (free them with order 0).
 */
function fragmentPool(lab: Lab): number[] {
  const taken: number[] = [];
  for (;;) {
    try {
      taken.push(lab.allocPages(0));
    } catch {
      break;
    }
  }
  taken.filter((_, i) => i % 2 === 0).forEach((p) => lab.freePages(p, 0));
  return taken.filter((_, i) => i % 2 === 1);
}

function fillBuffer(lab: Lab, buf: DmaBufRecord, value: number): void {
  for (const s of buf.segments()) lab.engine.fill(s.addr, value, s.len);
}

function isAll(lab: Lab, buf: DmaBufRecord, value: number): boolean {
  return buf.segments().every((s) => lab.arena.u8.subarray(s.addr, s.addr + s.len).every((b) => b === value));
}

describe("system heap", () => {
  test("rounds up to pages and takes chunks of order 8, 4, then 0", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(MiB + 64 * KiB + PAGE_SIZE + 1);
    try {
      expect(buf.size).toBe(MiB + 64 * KiB + 2 * PAGE_SIZE);
      expect(buf.pieces().map((p) => p.order)).toEqual([8, 4, 0, 0]);
      expect(buf.exporter).toBe("system");
      expect(buf.caching).toBe(CACHING_CACHED);
      const segs = buf.segments();
      expect(segs.reduce((n, s) => n + s.len, 0)).toBe(buf.size);
      for (const s of segs) {
        expect(s.addr).toBeGreaterThanOrEqual(lab.layout.poolBase);
        expect(s.addr + s.len).toBeLessThanOrEqual(lab.layout.poolBase + lab.layout.poolBytes);
      }
    } finally {
      buf.put();
    }
  });

  test("falls back to smaller chunks when the pool has no large block, so buffers scatter", async () => {
    const lab = await labs.create();
    const held = fragmentPool(lab);
    const buf = lab.exporter("system").alloc(8 * PAGE_SIZE);
    try {
      expect(buf.pieces().map((p) => p.order)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
      expect(buf.segments().length).toBe(8); // no two pieces adjacent: a scattered buffer
      expect(isAll(lab, buf, 0)).toBe(true);
    } finally {
      buf.put();
      held.forEach((p) => lab.freePages(p, 0));
    }
  });

  test("alloc_zeroed: 32 buffers filled with 0xff and closed; 32 new ones read all zero (4 KiB and 1 MiB)", async () => {
    const lab = await labs.create();
    for (const size of [4 * KiB, MiB]) {
      const dirty = Array.from({ length: size === MiB ? 8 : 32 }, () => lab.exporter("system").alloc(size));
      for (const b of dirty) fillBuffer(lab, b, 0xff);
      dirty.forEach((b) => b.put());
      const fresh = Array.from({ length: dirty.length }, () => lab.exporter("system").alloc(size));
      try {
        for (const b of fresh) expect(isAll(lab, b, 0)).toBe(true);
      } finally {
        fresh.forEach((b) => b.put());
      }
    }
  });

  test("out of pages: ENOMEM, and every page taken meanwhile goes back", async () => {
    const lab = await labs.create();
    const before = poolState(lab);
    const err = expectErrno(() => lab.exporter("system").alloc(lab.layout.poolBytes + PAGE_SIZE), "ENOMEM");
    expect(err.syscall).toBe("DMA_HEAP_IOCTL_ALLOC");
    expect(poolState(lab)).toEqual(before);
  });

  test("bad lengths are EINVAL naming the value; an unknown heap is ENOENT", async () => {
    const lab = await labs.create();
    const before = poolState(lab);
    for (const len of [0, -1, 1.5, Number.NaN, 2 ** 32]) {
      expect(expectErrno(() => lab.exporter("system").alloc(len), "EINVAL").message).toContain(`len ${len}`);
    }
    expect(expectErrno(() => lab.exporter("nope" as "system"), "ENOENT").message).toContain("'nope'");
    expect(poolState(lab)).toEqual(before);
  });
});

describe("system-uncached heap", () => {
  test("the same zeroed pages, write-combined", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system-uncached").alloc(3 * PAGE_SIZE);
    try {
      expect(buf.caching).toBe(CACHING_WRITE_COMBINE);
      expect(buf.exporter).toBe("system-uncached");
      expect(isAll(lab, buf, 0)).toBe(true);
    } finally {
      buf.put();
    }
  });
});

describe("cma heap", () => {
  test("exactly the pages needed, physically contiguous, for any page count", async () => {
    const lab = await labs.create();
    for (const pages of [1, 3, 5, 17, 100, 1000]) {
      const before = lab.stats().pages.freeBytes;
      const buf = lab.exporter("cma").alloc(pages * PAGE_SIZE);
      try {
        expect(buf.segments()).toHaveLength(1);
        expect(buf.size).toBe(pages * PAGE_SIZE);
        expect(before - lab.stats().pages.freeBytes).toBe(pages * PAGE_SIZE);
        expect(isAll(lab, buf, 0)).toBe(true);
      } finally {
        buf.put();
      }
      expect(lab.stats().pages.freeBytes).toBe(before);
    }
  });

  test("a run larger than the whole pool is ENOMEM too, nothing changed", async () => {
    const lab = await labs.create();
    const before = poolState(lab);
    expectErrno(() => lab.exporter("cma").alloc(2 * lab.layout.poolBytes), "ENOMEM");
    expect(poolState(lab)).toEqual(before);
  });

  test("ENOMEM when the pool is fragmented, though enough pages are free; nothing changes", async () => {
    const lab = await labs.create();
    const held = fragmentPool(lab);
    try {
      const before = poolState(lab);
      expect(before.pagesFree).toBeGreaterThan(4 * PAGE_SIZE);
      expectErrno(() => lab.exporter("cma").alloc(2 * PAGE_SIZE), "ENOMEM");
      expect(poolState(lab)).toEqual(before);
      // The system heap still finds the scattered pages.
      lab.exporter("system").alloc(4 * PAGE_SIZE).put();
    } finally {
      held.forEach((p) => lab.freePages(p, 0));
    }
  });
});

describe("the dma-buf record", () => {
  test("references: the last put frees the pages and every record", async () => {
    const lab = await labs.create();
    const before = poolState(lab);
    const buf = lab.exporter("system").alloc(200 * KiB);
    const again = buf.get();
    expect(buf.refcount).toBe(2);
    buf.put();
    expect(again.size).toBe(200 * KiB);
    expect(poolState(lab)).not.toEqual(before);
    again.put();
    expect(poolState(lab)).toEqual(before);
    expectErrno(() => again.put(), "EINVAL");
    expectErrno(() => DmaBufRecord.attach(lab.sync, again.offset), "EBADF");
  });

  test("DMA_BUF_SET_NAME: up to 31 bytes; longer is EINVAL and keeps the old name", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    try {
      expect(buf.name).toBe("");
      buf.setName("camera-frame-0");
      expect(buf.name).toBe("camera-frame-0");
      buf.setName("x".repeat(31));
      expect(buf.name).toBe("x".repeat(31));
      expect(expectErrno(() => buf.setName("y".repeat(32)), "EINVAL").syscall).toBe("DMA_BUF_SET_NAME");
      expect(buf.name).toBe("x".repeat(31));
      buf.setName("é".repeat(15)); // 30 bytes of UTF-8
      expect(buf.name).toBe("é".repeat(15));
      expectErrno(() => buf.setName("é".repeat(16)), "EINVAL");
    } finally {
      buf.put();
    }
  });

  test("each buffer has its own reservation object, released with it", async () => {
    const lab = await labs.create();
    const syncBefore = lab.stats().sync.freeBytes;
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const other = lab.exporter("system").alloc(PAGE_SIZE);
    const tl = lab.sync.timeline({ name: "writer" });
    const write = tl.createFence();
    const { resv } = buf;
    resv.withLock(() => {
      resv.reserveFences(1);
      resv.addFence(write, DMA_RESV_USAGE_WRITE);
    });
    expect(buf.resv.testSignaled(DMA_RESV_USAGE_WRITE)).toBe(false);
    expect(other.resv.testSignaled(DMA_RESV_USAGE_WRITE)).toBe(true);
    buf.put(); // the pending fence goes with the buffer's reservation object
    other.put();
    write.signal();
    write.put();
    tl.unref();
    expect(lab.stats().sync.freeBytes).toBe(syncBefore);
  });

  test("a worker attaches by offset and reads the same bytes through its own engine", async () => {
    const lab = await labs.create();
    await withSeed(async (rng) => {
      const buf = lab.exporter("system").alloc(MiB + 12 * PAGE_SIZE);
      try {
        const src = lab.alloc(buf.size, { zero: false });
        rng.bytes(src);
        lab.engine.scatter(buf.segmentTable, lab.offsetOf(src));
        const expected = lab.engine.checksum(buf.segmentTable);
        expect(expected).toBe(lab.engine.checksumRange(lab.offsetOf(src), buf.size));
        buf.setName("before");
        const data: DmabufReaderData = { handle: lab.share(), buffer: buf.offset, rename: "renamed by a worker" };
        const report = await workers.start("dmabuf-reader", "dmabuf-reader", data).next<DmabufReaderReport>("done", 20_000);
        expect(report).toEqual({ type: "done", size: buf.size, name: "before", checksum: expected, segments: buf.segments().length });
        expect(buf.name).toBe("renamed by a worker");
        expect(buf.refcount).toBe(1); // the worker's reference is gone
        lab.free(src);
      } finally {
        buf.put();
      }
    });
  });
});

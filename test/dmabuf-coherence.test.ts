/*
 * The coherence model (src/dmabuf/coherence.ts). Coherent labs have no CPU
 * cache. In a non-coherent lab a CPU that skips maintenance really sees stale
 * data and a device really misses unflushed writes; with invalidate/clean,
 * or through the read/write path, everything is right; cleaning writes back
 * only the lines the CPU changed; partial-line ranges are counted.
 */
import { describe, expect, test } from "vitest";
import { CpuCache, type DmaBufRecord, type Lab } from "../src/index.js";
import { preadv, pwritev } from "../src/dmabuf/rw.js";
import { CACHE_LINE, PAGE_SIZE } from "../src/memory/layout.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const MiB = 1024 * 1024;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
cleanUpAfterEach({ labs });

/** What a device sees: byte `at` of the buffer in memory (its pages). */
function memoryByte(lab: Lab, buf: DmaBufRecord, at: number): number {
  let skip = at;
  for (const s of buf.segments()) {
    if (skip < s.len) return lab.arena.u8[s.addr + skip];
    skip -= s.len;
  }
  throw new RangeError(`byte ${at} is outside the buffer`);
}

/** A device writes `value` to memory bytes [at, at + len) of the buffer. */
function deviceWrite(lab: Lab, buf: DmaBufRecord, at: number, len: number, value: number): void {
  let skip = at;
  let left = len;
  for (const s of buf.segments()) {
    if (skip >= s.len) { skip -= s.len; continue; }
    const n = Math.min(s.len - skip, left);
    lab.engine.fill(s.addr + skip, value, n);
    left -= n;
    skip = 0;
    if (left === 0) return;
  }
}

describe("coherence", () => {
  test("a coherent lab (the default) has no CPU cache; write-combined buffers bypass it in any lab", async () => {
    const coherent = await labs.create();
    expect(coherent.coherent).toBe(true);
    const buf = coherent.exporter("system").alloc(PAGE_SIZE);
    expect(CpuCache.of(buf)).toBeNull();
    buf.put();
    const arm = await labs.create({ coherent: false });
    expect(arm.coherent).toBe(false);
    const wc = arm.exporter("system-uncached").alloc(PAGE_SIZE);
    expect(CpuCache.of(wc)).toBeNull();
    wc.put();
  });

  test("without SYNC the CPU reads stale data and the device misses CPU writes; with it both are right", async () => {
    const lab = await labs.create({ coherent: false });
    const buf = lab.exporter("system").alloc(4 * PAGE_SIZE);
    try {
      const cache = CpuCache.of(buf)!;
      const cpu = cache.cpuView();
      // A device writes; the CPU's cached view still shows the old bytes.
      deviceWrite(lab, buf, 0, PAGE_SIZE, 0x11);
      expect(cpu[0]).toBe(0);
      cache.invalidate(0, PAGE_SIZE); // SYNC START
      expect(cpu[0]).toBe(0x11);
      // The CPU writes; the device does not see it until the lines are cleaned.
      cpu.fill(0x22, PAGE_SIZE, 2 * PAGE_SIZE);
      expect(memoryByte(lab, buf, PAGE_SIZE)).toBe(0);
      const done = cache.cleanRange(PAGE_SIZE, PAGE_SIZE); // SYNC END
      expect(done).toEqual({ partial: false, lines: PAGE_SIZE / CACHE_LINE });
      expect(memoryByte(lab, buf, PAGE_SIZE)).toBe(0x22);
      expect(memoryByte(lab, buf, 2 * PAGE_SIZE - 1)).toBe(0x22);
    } finally {
      buf.put();
    }
  });

  test("cleaning writes back only the lines the CPU changed, so a device's writes to other lines survive", async () => {
    const lab = await labs.create({ coherent: false });
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    try {
      const cache = CpuCache.of(buf)!;
      cache.cpuView()[3 * CACHE_LINE + 5] = 0xaa; // the CPU dirties line 3
      deviceWrite(lab, buf, 5 * CACHE_LINE, CACHE_LINE, 0xbb); // the device writes line 5
      expect(cache.cleanRange()).toEqual({ partial: false, lines: 1 });
      expect(memoryByte(lab, buf, 3 * CACHE_LINE + 5)).toBe(0xaa);
      expect(memoryByte(lab, buf, 5 * CACHE_LINE)).toBe(0xbb); // not overwritten by the stale cache line
      // A second clean has nothing to write.
      expect(cache.cleanRange().lines).toBe(0);
    } finally {
      buf.put();
    }
  });

  test("invalidating loses CPU writes that were not cleaned, as on hardware", async () => {
    const lab = await labs.create({ coherent: false });
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    try {
      const cache = CpuCache.of(buf)!;
      cache.cpuView()[10] = 0x77;
      cache.invalidate();
      expect(cache.cpuView()[10]).toBe(0);
      expect(memoryByte(lab, buf, 10)).toBe(0);
    } finally {
      buf.put();
    }
  });

  test("maintenance of a range that splits a cache line is counted as a warning; whole lines are not", async () => {
    const lab = await labs.create({ coherent: false });
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    try {
      const cache = CpuCache.of(buf)!;
      expect(cache.invalidate(0, 2 * CACHE_LINE).partial).toBe(false);
      expect(cache.cleanRange(CACHE_LINE, buf.size - CACHE_LINE).partial).toBe(false);
      expect(cache.partialSyncs).toBe(0);
      expect(cache.invalidate(10, 100).partial).toBe(true);
      expect(cache.cleanRange(CACHE_LINE, 10).partial).toBe(true);
      expect(cache.partialSyncs).toBe(2);
    } finally {
      buf.put();
    }
  });

  test("the read/write path does the maintenance itself: device and CPU both see the truth", async () => {
    const lab = await labs.create({ coherent: false });
    const buf = lab.exporter("system").alloc(2 * PAGE_SIZE);
    const user = lab.alloc(300);
    try {
      const cache = CpuCache.of(buf)!;
      user.fill(0x5c);
      expect(pwritev(buf, [user], 100)).toBe(300);
      expect(memoryByte(lab, buf, 100)).toBe(0x5c); // the device sees the write
      expect(memoryByte(lab, buf, 399)).toBe(0x5c);
      expect(memoryByte(lab, buf, 400)).toBe(0);
      expect(cache.cpuView()[250]).toBe(0x5c); // and so does the CPU's view
      deviceWrite(lab, buf, PAGE_SIZE, 300, 0x3d);
      const out = lab.alloc(300);
      expect(preadv(buf, [out], PAGE_SIZE)).toBe(300);
      expect(out.every((b) => b === 0x3d)).toBe(true); // the read sees the device's write
      expect(cache.partialSyncs).toBe(0); // the path's own maintenance is whole lines, not counted
      lab.free(out);
    } finally {
      lab.free(user);
      buf.put();
    }
  });
});

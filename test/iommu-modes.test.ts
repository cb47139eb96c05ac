/*
 * The IOMMU cost model: strict (an IOTLB invalidation per unmap), lazy (a
 * flush queue, one invalidation per batch) and passthrough (a 1:1 window,
 * nothing mapped per I/O), with the map and unmap work done in the page
 * tables; the storage device under each mode. Counts are asserted, never
 * times.
 */
import { afterEach, describe, expect, test } from "vitest";
import { FQ_ENTRIES, IOMMU_READ, IOMMU_WRITE, Iommu } from "../src/dmabuf/iommu.js";
import { spawnStorage, type StorageDevice } from "../src/devices/storage.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { Process } from "../src/uapi/process.js";
import { O_DIRECT, O_RDONLY } from "../src/uapi/uapi.js";
import { LabSet } from "./helpers/lab.js";
import { expectErrno } from "./helpers/errors.js";

const labs = new LabSet({ memoryBytes: 64 * 1024 * 1024, poolBytes: 32 * 1024 * 1024 });
const storages: StorageDevice[] = [];
afterEach(async () => {
  await Promise.all(storages.splice(0).map((s) => s.shutdown()));
  labs.closeAll();
});

describe("IOMMU modes", () => {
  test("strict: every unmap invalidates the IOTLB once, and the range is free at once", async () => {
    const lab = await labs.create();
    const iommu = Iommu.create(lab.sync, { mode: "strict", iotlbInvalidateNs: 100 });
    const page = lab.allocPages(0);
    for (let i = 0; i < 5; i++) iommu.unmap(iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ), PAGE_SIZE);
    expect(iommu.stats()).toMatchObject({ mode: "strict", flushes: 5, mappings: 0, iotlbInvalidateNs: 100 });
    iommu.destroy();
    lab.freePages(page, 0);
  });

  test("lazy: unmapped ranges wait in the flush queue (faulting meanwhile) and one invalidation frees a full queue", async () => {
    const lab = await labs.create();
    const iommu = Iommu.create(lab.sync, { mode: "lazy", iovaBytes: 4 * 1024 * 1024, iotlbInvalidateNs: 100 });
    const page = lab.allocPages(0);
    const first = iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ);
    iommu.unmap(first, PAGE_SIZE);
    expect(iommu.stats().flushes).toBe(0);
    expectErrno(() => iommu.translate(first, 16, IOMMU_READ, () => {}), "EFAULT");
    for (let i = 1; i < FQ_ENTRIES; i++) iommu.unmap(iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ), PAGE_SIZE);
    expect(iommu.stats().flushes).toBe(1);
    iommu.destroy();
    lab.freePages(page, 0);
  });

  test("lazy: a map that finds no room flushes the queue and succeeds", async () => {
    const lab = await labs.create();
    const iommu = Iommu.create(lab.sync, { mode: "lazy", iovaBytes: 8 * PAGE_SIZE, iotlbInvalidateNs: 100 });
    const page = lab.allocPages(0);
    for (let i = 0; i < 20; i++) iommu.unmap(iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_WRITE), PAGE_SIZE);
    expect(iommu.stats().flushes).toBeGreaterThanOrEqual(2);
    expect(iommu.stats().flushes).toBeLessThan(20);
    iommu.destroy();
    lab.freePages(page, 0);
  });

  test("passthrough: the DMA range is mapped 1:1 once, device addresses are arithmetic, nothing is invalidated", async () => {
    const lab = await labs.create();
    const iommu = Iommu.create(lab.sync, { mode: "passthrough" });
    const view = lab.alloc(10_000);
    const runs: number[] = [];
    iommu.translate(iommu.dmaAddress(view.byteOffset), view.byteLength, IOMMU_READ | IOMMU_WRITE, (addr, len) => { runs.push(addr, len); });
    expect(runs).toEqual([view.byteOffset, view.byteLength]);
    const page = lab.allocPages(0);
    iommu.unmap(iommu.map([{ addr: page, len: PAGE_SIZE }], IOMMU_READ), PAGE_SIZE);
    expect(iommu.stats()).toMatchObject({ mode: "passthrough", flushes: 0, mappings: 0 });
    expectErrno(() => Iommu.create(lab.sync, { mode: "strict" }).dmaAddress(view.byteOffset), "EINVAL");
    expectErrno(() => Iommu.create(lab.sync, { mode: "fast" as never }), "EINVAL");
    lab.freePages(page, 0);
  });

  for (const mode of ["strict", "lazy", "passthrough"] as const) {
    test(`the storage device reads under ${mode}: per-I/O mappings (strict: one invalidation each; lazy: none yet; passthrough: no mapping at all)`, async () => {
      const lab = await labs.create();
      const st = await spawnStorage(lab, { size: 1024 * 1024, blockSize: 4096, iommu: { mode, iotlbInvalidateNs: 100 } });
      storages.push(st);
      const proc = new Process(lab);
      const fd = proc.open("/dev/nvme0n1", O_RDONLY | O_DIRECT);
      const buf = lab.alloc(16 * 1024, { align: 4096 });
      for (let i = 0; i < 8; i++) expect(proc.pread(fd, buf, i * 16 * 1024)).toBe(16 * 1024);
      const stats = st.record.iommu.stats();
      expect(stats.mappings).toBe(0);
      expect(stats.flushes).toBe(mode === "strict" ? 8 : 0);
      proc.closeAll();
    });
  }
});

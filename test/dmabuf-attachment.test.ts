/*
 * dma-buf attachments (src/dmabuf/attachment.ts) through IOMMUs
 * (src/dmabuf/iommu.ts):
 *   - device addresses that translate back to exactly the buffer's bytes, for
 *     reads and for writes (engine gathers and scatters with canaries);
 *   - static attachments (mapped at attach, for one direction) and dynamic
 *     ones (mapped under the resv lock);
 *   - revoke: move_notify once per dynamic importer, in its own thread and
 *     with the lock held, mappings gone (translate faults), map ENODEV; a
 *     real worker importer, both through its event loop and through map();
 *     a revoke from a worker whose notification another view's detach overtakes;
 *   - references: the pages stay until the last fd, mapping and attachment
 *     are gone;
 *   - every error changing nothing.
 * The notify fence's watch drops its reference on the next turn of the
 * event loop, so tests wait (bounded) for the sync heap to come back.
 */
import { threadId } from "node:worker_threads";
import { describe, expect, test } from "vitest";
import { CACHING_CACHED, DmaBufRecord, preadv, pwritev, type Lab } from "../src/index.js";
import { IOMMU_READ, IOMMU_WRITE, Iommu } from "../src/dmabuf/iommu.js";
import {
  DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaBufAttachment, dmaBufAttach, dmaBufAttachments, dmaBufDynamicAttach,
  dmaBufRevoke, type DmaBufAttachOps,
} from "../src/dmabuf/attachment.js";
import type { DmaBufFile } from "../src/uapi/dma_buf_file.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectSame } from "./helpers/bytes.js";
import { brokenCanary, guard } from "./helpers/canary.js";
import { expectErrno } from "./helpers/errors.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { shuffle, withSeed, type Prng } from "./helpers/prng.js";
import { until } from "./helpers/waits.js";
import { WorkerSet } from "./helpers/workers.js";
import type { AttachImporterData, AttachImporterReady, AttachImporterReport } from "./workers/attach-importer.js";
import type { AttachRevokerData, AttachRevokerReport } from "./workers/attach-revoker.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const labs = new LabSet({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

/** A buffer of `pages` pages no two of which are physically adjacent, in shuffled order, filled with random bytes. */
function scatteredBuffer(lab: Lab, rng: Prng, pages: number): { buf: DmaBufRecord; bytes: Uint8Array } {
  const taken = Array.from({ length: 2 * pages }, () => lab.allocPages(0));
  taken.filter((_, i) => i % 2 === 1).forEach((p) => lab.freePages(p, 0));
  const kept = shuffle(rng, taken.filter((_, i) => i % 2 === 0));
  const buf = DmaBufRecord.create(lab.sync, kept.map((offset) => ({ offset, order: 0 })), CACHING_CACHED, "system");
  for (const s of buf.segments()) rng.bytes(lab.arena.u8.subarray(s.addr, s.addr + s.len));
  return { buf, bytes: bufferBytes(lab, buf) };
}

/** The buffer's bytes in buffer order, read through its own scatter list. */
function bufferBytes(lab: Lab, buf: DmaBufRecord): Uint8Array {
  return new Uint8Array(Buffer.concat(buf.segments().map((s) => lab.arena.u8.subarray(s.addr, s.addr + s.len))));
}

/**
 * The device's DMA of len bytes at iova, as a device does it: translate to
 * runs, then one engine call between them and a linear range of user
 * memory with canaries around it. A read returns what the device read; a
 * write moves `data` into the buffer.
 */
function dma(lab: Lab, iommu: Iommu, iova: number, len: number, data?: Uint8Array): Uint8Array {
  const list = lab.segmentList();
  const area = lab.alloc(len + 128, { zero: false });
  try {
    iommu.translate(iova, len, data ? IOMMU_WRITE : IOMMU_READ, (addr, n) => list.push(addr, n));
    const g = guard(area, 64, len);
    if (data) {
      area.set(data, 64);
      lab.engine.scatter(list, area.byteOffset + 64);
    } else {
      lab.engine.gather(list, area.byteOffset + 64);
    }
    expect(brokenCanary(g)).toBeUndefined();
    return area.slice(64, 64 + len);
  } finally {
    list.free();
    lab.free(area);
  }
}

/** What a failed call must leave alone. */
function state(lab: Lab, buf: DmaBufRecord, iommu: Iommu) {
  const { pages, sync } = lab.stats();
  const { mappedBytes, mappings, users } = iommu.stats();
  return {
    refcount: buf.refcount, revoked: buf.revoked, attachments: dmaBufAttachments(buf), mappedBytes, mappings, users,
    pagesFree: pages.freeBytes, syncFree: sync.freeBytes,
  };
}

/** Waits (bounded) until the sync heap and the page pool are back to `before`: watches let go on the event loop. */
async function released(lab: Lab, before: { pages: number; sync: number }): Promise<void> {
  const now = () => ({ pages: lab.stats().pages.freeBytes, sync: lab.stats().sync.freeBytes });
  await until(() => now().sync === before.sync, WAIT_MS, `sync heap back to ${before.sync} free bytes`);
  expect(now()).toEqual(before);
}

const baseline = (lab: Lab) => ({ pages: lab.stats().pages.freeBytes, sync: lab.stats().sync.freeBytes });

/** moveNotify ops that count their calls and what they saw. */
function counting(): DmaBufAttachOps & { calls: { resvHeld: boolean; mapped: boolean; thread: number }[] } {
  const calls: { resvHeld: boolean; mapped: boolean; thread: number }[] = [];
  return {
    calls,
    moveNotify(a) {
      calls.push({ resvHeld: a.resv.mutex.heldByMe(), mapped: a.mapping !== null, thread: threadId });
    },
  };
}

describe("static attachments", () => {
  test("map gives consecutive device addresses, one entry per segment, that read and write exactly the buffer's bytes", async () => {
    const lab = await labs.create();
    const before = baseline(lab);
    await withSeed((rng) => {
      const { buf, bytes } = scatteredBuffer(lab, rng, 12);
      const iommu = Iommu.create(lab.sync);
      const att = dmaBufAttach(buf, iommu);
      const sg = att.map();
      const segs = buf.segments();
      expect(segs.length).toBe(12);
      expect(sg.bytes).toBe(buf.size);
      expect(sg.entries.map((e) => e.length)).toEqual(segs.map((s) => s.len));
      expect(sg.entries.map((e) => e.dmaAddress)).toEqual(segs.map((_, i) => sg.iova + i * PAGE_SIZE));
      expect(sg.iova).toBeGreaterThan(0);
      expect(att.map()).toEqual(sg); // the mapping made at attach, every time
      expectSame(dma(lab, iommu, sg.iova, sg.bytes), bytes, "read all");
      for (let i = 0; i < 40; i++) {
        const at = rng.int(0, buf.size - 1);
        const len = rng.int(1, buf.size - at);
        expectSame(dma(lab, iommu, sg.iova + at, len), bytes.subarray(at, at + len), `read [${at}, +${len})`);
        const data = rng.bytes(new Uint8Array(len));
        dma(lab, iommu, sg.iova + at, len, data);
        bytes.set(data, at);
        expectSame(bufferBytes(lab, buf), bytes, `write [${at}, +${len})`);
      }
      att.unmap(); // a static mapping stays until detach
      expectSame(dma(lab, iommu, sg.iova, PAGE_SIZE), bytes.subarray(0, PAGE_SIZE), "read after unmap()");
      att.detach();
      expectErrno(() => dma(lab, iommu, sg.iova, 1), "EFAULT");
      iommu.destroy();
      buf.put();
    });
    await released(lab, before);
  });

  test("a mapping serves its direction: TO_DEVICE is read-only for the device, and map(FROM_DEVICE) is EBUSY", async () => {
    const lab = await labs.create();
    const before = baseline(lab);
    const buf = lab.exporter("system").alloc(3 * PAGE_SIZE);
    const iommu = Iommu.create(lab.sync);
    const ro = dmaBufAttach(buf, iommu, DMA_TO_DEVICE);
    const bidi = dmaBufAttach(buf, iommu);
    const sg = ro.map(DMA_TO_DEVICE);
    expect(expectErrno(() => ro.map(DMA_FROM_DEVICE), "EBUSY").message).toContain("mapped DMA_TO_DEVICE, not DMA_FROM_DEVICE");
    expectErrno(() => ro.map(), "EBUSY");
    expectSame(dma(lab, iommu, sg.iova, buf.size), new Uint8Array(buf.size), "read of a zeroed buffer");
    expect(expectErrno(() => dma(lab, iommu, sg.iova + 5, 10, new Uint8Array(10)), "EFAULT").message).toContain("allows read only");
    // A bidirectional mapping serves every direction.
    for (const d of [DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL] as const) expect(bidi.map(d).iova).toBe(bidi.map().iova);
    expectErrno(() => ro.map(7 as typeof DMA_TO_DEVICE), "EINVAL");
    expectErrno(() => dmaBufAttach(buf, iommu, 3 as typeof DMA_TO_DEVICE), "EINVAL");
    expect(dmaBufAttachments(buf)).toEqual([bidi.offset, ro.offset]);
    ro.detach();
    bidi.detach();
    iommu.destroy();
    buf.put();
    await released(lab, before);
  });
});

describe("dynamic attachments", () => {
  test("map and unmap need the resv lock held by this thread; map maps once, unmap tears the mapping down", async () => {
    const lab = await labs.create();
    const before = baseline(lab);
    await withSeed((rng) => {
      const { buf, bytes } = scatteredBuffer(lab, rng, 5);
      const iommu = Iommu.create(lab.sync);
      const ops = counting();
      const att = dmaBufDynamicAttach(buf, iommu, ops);
      expect(att.dynamic).toBe(true);
      expect(att.mapping).toBeNull();
      const unchanged = state(lab, buf, iommu);
      expect(expectErrno(() => att.map(), "EPERM").message).toContain("resv lock held");
      expectErrno(() => att.unmap(), "EPERM");
      expect(state(lab, buf, iommu)).toEqual(unchanged);
      const sg = att.resv.withLock(() => att.map(DMA_TO_DEVICE));
      expect(att.resv.withLock(() => att.map(DMA_TO_DEVICE))).toEqual(sg);
      expect(att.resv.withLock(() => expectErrno(() => att.map(DMA_FROM_DEVICE), "EBUSY")).code).toBe("EBUSY");
      expect(att.mapping).toEqual({ iova: sg.iova, bytes: buf.size, direction: DMA_TO_DEVICE });
      expectSame(dma(lab, iommu, sg.iova, buf.size), bytes, "read");
      att.resv.withLock(() => att.unmap());
      expect(att.mapping).toBeNull();
      expectErrno(() => dma(lab, iommu, sg.iova, 1), "EFAULT");
      att.resv.withLock(() => att.unmap()); // nothing mapped: nothing to do
      const again = att.resv.withLock(() => att.map(DMA_FROM_DEVICE));
      expect(again.iova).not.toBe(sg.iova); // next fit: the old range is not reused at once
      dma(lab, iommu, again.iova, buf.size, new Uint8Array(buf.size).fill(7));
      expectSame(bufferBytes(lab, buf), new Uint8Array(buf.size).fill(7), "device write");
      att.detach(); // unmaps
      expect(iommu.stats()).toMatchObject({ mappings: 0, users: 0 });
      expect(ops.calls).toEqual([]); // detach is no move_notify
      iommu.destroy();
      buf.put();
    });
    await released(lab, before);
    expect(lab.sync.callbacks.size).toBe(0);
  });
});

describe("revoke", () => {
  test("move_notify once per dynamic importer, inside revoke and under the lock; every mapping faults; map is ENODEV", async () => {
    const lab = await labs.create();
    const io = lab.alloc(16);
    using warm = lab.exporter("system").alloc(PAGE_SIZE);
    preadv(warm, [io], 0); // makes this thread's read/write timeline, which lives as long as the lab
    const before = baseline(lab);
    const buf = lab.exporter("system").alloc(4 * PAGE_SIZE);
    const iommus = [Iommu.create(lab.sync), Iommu.create(lab.sync)];
    const [a, b] = [counting(), counting()];
    const dynMapped = dmaBufDynamicAttach(buf, iommus[0], a);
    const dynIdle = dmaBufDynamicAttach(buf, iommus[1], b);
    const stat = dmaBufAttach(buf, iommus[1], DMA_TO_DEVICE);
    const sg = dynMapped.resv.withLock(() => dynMapped.map());
    const staticSg = stat.map(DMA_TO_DEVICE);
    expect(dmaBufRevoke(buf)).toBe(true);
    expect(buf.revoked).toBe(true);
    // Synchronously, in this thread (the importers'), with the lock held, after the mappings went.
    expect(a.calls).toEqual([{ resvHeld: true, mapped: false, thread: threadId }]);
    expect(b.calls).toEqual([{ resvHeld: true, mapped: false, thread: threadId }]);
    for (const att of [dynMapped, dynIdle, stat]) {
      expect(att.revoked).toBe(true);
      expect(att.mapping).toBeNull();
      expect(att.resv.withLock(() => expectErrno(() => att.map(), "ENODEV")).message).toContain("revoked");
    }
    expectErrno(() => dma(lab, iommus[0], sg.iova, 1), "EFAULT");
    expectErrno(() => dma(lab, iommus[1], staticSg.iova, 1), "EFAULT");
    expect(iommus.map((i) => i.stats().mappings)).toEqual([0, 0]);
    // Idempotent; no new attachment.
    expect(dmaBufRevoke(buf)).toBe(false);
    const unchanged = state(lab, buf, iommus[0]);
    expectErrno(() => dmaBufAttach(buf, iommus[0]), "ENODEV");
    expectErrno(() => dmaBufDynamicAttach(buf, iommus[0], counting()), "ENODEV");
    expect(state(lab, buf, iommus[0])).toEqual(unchanged);
    expect([a.calls.length, b.calls.length]).toEqual([1, 1]);
    // The CPU's read/write path is not revoked.
    io.fill(9);
    expect(pwritev(buf, [io], 100)).toBe(16);
    io.fill(0);
    expect(preadv(buf, [io], 100)).toBe(16);
    expect(io).toEqual(new Uint8Array(16).fill(9));
    for (const att of [dynMapped, dynIdle, stat]) att.detach();
    iommus.forEach((i) => i.destroy());
    buf.put();
    await released(lab, before);
  });

  for (const mode of ["event-loop", "map"] as const) {
    test(`a worker's dynamic attachment: the main thread's revoke reaches its move_notify in its own thread (through ${mode === "map" ? "its map()" : "its event loop"})`, async () => {
      const lab = await labs.create();
      await withSeed(async (rng) => {
        const { buf, bytes } = scatteredBuffer(lab, rng, 6);
        const before = baseline(lab);
        const go = new Int32Array(new SharedArrayBuffer(4));
        const data: AttachImporterData = { handle: lab.share(), buffer: buf.offset, mode, go, timeoutMs: WAIT_MS };
        const importer = workers.start("attach-importer", `importer (${mode})`, data);
        const ready = await importer.next<AttachImporterReady>("ready", WAIT_MS);
        expect(ready.threadId).not.toBe(threadId);
        // The device read the buffer through its IOMMU, built in its thread.
        expectSame(ready.bytes, bytes, "the worker's device read");
        expect(ready.table.entries.map((e) => e.length)).toEqual(buf.segments().map((s) => s.len));
        const iommu = new Iommu(lab.sync, ready.iommu);
        expectSame(dma(lab, iommu, ready.table.iova, ready.table.bytes), bytes, "our read through its IOMMU");
        expect(dmaBufAttachments(buf)).toEqual([ready.attachment]);
        expect(buf.refcount).toBe(3); // ours, the worker's view, its attachment
        expect(dmaBufRevoke(buf)).toBe(true);
        expectErrno(() => dma(lab, iommu, ready.table.iova, 1), "EFAULT");
        Atomics.store(go, 0, 1);
        Atomics.notify(go, 0);
        const report = await importer.next<AttachImporterReport>("done", WAIT_MS);
        expect(report.calls).toEqual([{ threadId: ready.threadId, resvHeld: true, revoked: true, mapped: false, mapCode: "ENODEV" }]);
        if (mode === "map") expect([report.mapCode, report.callsBeforeMapFailed]).toEqual(["ENODEV", 1]);
        expect(report.translateCode).toBe("EFAULT");
        expect(report.faults).toBe(2); // ours and the worker's
        expect(dmaBufAttachments(buf)).toEqual([]);
        expect(buf.refcount).toBe(1);
        expectErrno(() => new Iommu(lab.sync, ready.iommu), "EINVAL"); // destroyed by the worker
        await released(lab, before); // the worker's IOMMU tables, attachment and notify fence
        buf.put();
      });
    });
  }

  test("a notification in flight is dropped when another view detaches first: no move_notify after detach", async () => {
    const lab = await labs.create();
    const before = baseline(lab);
    const buf = lab.exporter("system").alloc(2 * PAGE_SIZE);
    const iommu = Iommu.create(lab.sync);
    const ops = counting();
    const att = dmaBufDynamicAttach(buf, iommu, ops);
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const data: AttachRevokerData = { handle: lab.share(), buffer: buf.offset, flags, timeoutMs: WAIT_MS };
    const revoker = workers.start("attach-revoker", "revoker", data);
    await revoker.next("ready", WAIT_MS);
    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
    // Blocked: this thread's event loop cannot deliver the notification meanwhile.
    expect(Atomics.wait(flags, 1, 0, WAIT_MS)).not.toBe("timed-out");
    expect(att.revoked).toBe(true);
    DmaBufAttachment.at(lab.sync, att.offset).detach(); // another view, as another thread would detach
    expect((await revoker.next<AttachRevokerReport>("done", WAIT_MS)).revoked).toBe(true);
    iommu.destroy();
    buf.put();
    await released(lab, before); // the watch ran and let go of the notify fence
    expect(ops.calls).toEqual([]);
  });
});

describe("references", () => {
  test("the pages stay until the last fd, mapping and attachment are gone", async () => {
    const lab = await labs.create();
    const iommu = Iommu.create(lab.sync);
    const before = baseline(lab);
    const dmabuf = lab.heap("system").alloc(2 * PAGE_SIZE);
    const buf = (lab.process.file(dmabuf.fd) as DmaBufFile).buf;
    const size = buf.size; // this view is the file's: put when the file closes
    const att = dmaBufAttach(buf, iommu);
    const mapping = dmabuf.map();
    mapping.views[0].fill(0x5a);
    const sg = att.map();
    const taken = before.pages - lab.stats().pages.freeBytes;
    expect(taken).toBeGreaterThanOrEqual(2 * PAGE_SIZE);
    dmabuf.close();
    lab.process.munmap(mapping);
    // No fd, no mapping: the attachment alone holds the buffer, and the device still reads it.
    expect(buf.refcount).toBe(1);
    expect(buf.fileCount).toBe(0);
    expect(before.pages - lab.stats().pages.freeBytes).toBe(taken);
    expectSame(dma(lab, iommu, sg.iova, size), new Uint8Array(size).fill(0x5a), "read with only the attachment left");
    att.detach();
    await released(lab, before);
    iommu.destroy();
  });
});

describe("errors change nothing", () => {
  test("double detach, foreign offsets, a destroyed IOMMU, missing ops: EINVAL; detach holding the lock: EDEADLK", async () => {
    const lab = await labs.create();
    const before = baseline(lab);
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const iommu = Iommu.create(lab.sync);
    const att = dmaBufDynamicAttach(buf, iommu, counting());
    const unchanged = state(lab, buf, iommu);
    expectErrno(() => att.resv.withLock(() => att.detach()), "EDEADLK");
    expectErrno(() => att.resv.withLock(() => dmaBufAttach(buf, iommu)), "EDEADLK");
    expectErrno(() => dmaBufDynamicAttach(buf, iommu, {} as DmaBufAttachOps), "EINVAL");
    expectErrno(() => iommu.destroy(), "EBUSY");
    for (const bogus of [0, 4, buf.offset, iommu.offset, lab.layout.syncBase + 1]) expectErrno(() => DmaBufAttachment.at(lab.sync, bogus), "EINVAL");
    expect(state(lab, buf, iommu)).toEqual(unchanged);
    // Another thread's view of the same attachment (as a worker would build it) detaches it; then both views are stale.
    const other = DmaBufAttachment.at(lab.sync, att.offset);
    expect([other.dynamic, other.bufferOffset]).toEqual([true, buf.offset]);
    other.detach();
    expect(buf.refcount).toBe(1);
    const afterDetach = state(lab, buf, iommu);
    expectErrno(() => other.detach(), "EINVAL");
    expectErrno(() => att.detach(), "EINVAL");
    expectErrno(() => att.resv.withLock(() => att.map()), "EINVAL");
    expectErrno(() => DmaBufAttachment.at(lab.sync, att.offset), "EINVAL");
    expect(state(lab, buf, iommu)).toEqual(afterDetach);
    iommu.destroy();
    expectErrno(() => dmaBufAttach(buf, iommu), "EINVAL");
    expect(buf.refcount).toBe(1);
    expect(dmaBufAttachments(buf)).toEqual([]);
    buf.put();
    await released(lab, before);
  });

  test("an IOVA space too small: static attach and dynamic map are ENOMEM, changing nothing", async () => {
    const lab = await labs.create();
    const before = baseline(lab);
    const buf = lab.exporter("system").alloc(4 * PAGE_SIZE);
    const iommu = Iommu.create(lab.sync, { iovaBytes: 4 * PAGE_SIZE }); // 3 usable pages
    const unchanged = state(lab, buf, iommu);
    expectErrno(() => dmaBufAttach(buf, iommu), "ENOMEM");
    expect(state(lab, buf, iommu)).toEqual(unchanged);
    const att = dmaBufDynamicAttach(buf, iommu, counting());
    const attached = state(lab, buf, iommu);
    expectErrno(() => att.resv.withLock(() => att.map()), "ENOMEM");
    expect(state(lab, buf, iommu)).toEqual(attached);
    expect(att.mapping).toBeNull();
    att.detach();
    iommu.destroy();
    buf.put();
    await released(lab, before);
  });
});

/*
 * Typed records (src/memory/record.ts): every record in the sync heap has a
 * type and a generation, and every view built from an offset, token or
 * handle that another thread sent is refused (EINVAL or EBADF, nothing
 * touched) unless both match.
 *
 * The hostile-input part builds one record of every type in a lab, then
 * hands every entry point that takes an offset from another thread every
 * allocated record start of every other type, every record of its own type
 * with a wrong generation (where a token carries one), and 10^4 random
 * offsets from a fixed seed (DMABUF_SEED chooses another): each is refused
 * with a DmaBufError, and the sync heap, its record tags, the allocators'
 * state and the fd table are byte for byte what they were.
 */
import { describe, expect, test } from "vitest";
import { DmaBufError } from "../src/errno.js";
import { Lab } from "../src/api/lab.js";
import { DmaBufRecord } from "../src/dmabuf/dma_buf.js";
import { Iommu } from "../src/dmabuf/iommu.js";
import { DmaBufAttachment, dmaBufAttach } from "../src/dmabuf/attachment.js";
import { MFD_ALLOW_SEALING, F_SEAL_SHRINK } from "../src/dmabuf/memfd.js";
import { DeviceHandle } from "../src/devices/handle.js";
import { DeviceRecord } from "../src/devices/device_record.js";
import { JobRing } from "../src/devices/ring.js";
import { BufferQueueRecord } from "../src/dmabuf/buffer_queue.js";
import type { ShareToken } from "../src/sync/flight.js";
import { JOB_RECORD_SIZE } from "../src/devices/job.js";
import { STOR_RECORD_SIZE, StorageRecord } from "../src/devices/block_io.js";
import { dmaTokenMaps } from "../src/io_uring/dma_token.js";
import { RecordType, recordTypeName, type RecordTypeId } from "../src/memory/record.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { Resv } from "../src/sync/resv.js";
import { SwSyncTimeline } from "../src/sync/sw_sync.js";
import { TIMELINE_SW_SYNC, TL_KIND } from "../src/sync/records.js";
import { Process } from "../src/uapi/process.js";
import { O_RDWR, O_CLOEXEC, DMA_HEAP_IOCTL_ALLOC, SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC, type FdToken, type sw_sync_create_fence_data } from "../src/uapi/index.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { prng } from "./helpers/prng.js";
import { WorkerSet } from "./helpers/workers.js";
import type { TokenImporterData, TokenImporterReport } from "./workers/token-importer.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
/** The random-offset runs' seed: fixed, so that CI runs the same offsets; DMABUF_SEED chooses another. */
const SEED = process.env.DMABUF_SEED !== undefined ? Number(process.env.DMABUF_SEED) >>> 0 : 0x7ec0_4d5;
const RANDOM_OFFSETS = 10_000;

const labs = new LabSet({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB, syncBytes: 512 * 1024 });
const devices = new DeviceSet();
const workers = new WorkerSet();
cleanUpAfterEach({ workers, devices, labs });

/** A lab holding at least one live record of every type, made without a device worker (nothing changes behind the test's back). */
async function everyRecordType(): Promise<{ lab: Lab; proc: Process; keep: unknown[] }> {
  const lab = await labs.create();
  const { sync } = lab;
  const proc = new Process(lab);
  const keep: unknown[] = [];
  // Fences (plain, array, chain), a generic and an sw_sync timeline, a sync_file.
  const timeline = sync.timeline({ name: "records" });
  const a = timeline.createFence();
  const b = timeline.createFence();
  b.signal();
  keep.push(timeline, a, b, sync.array([a, b]), sync.chain(null, a, 1n));
  const sw = proc.open("/dev/sw_sync", O_RDWR);
  keep.push(sw);
  // dma-bufs (with their resv, piece list and, for a udmabuf, backing list), a memfd.
  const heap = proc.open("/dev/dma_heap/system", O_RDWR | O_CLOEXEC);
  const arg = { len: 3 * PAGE_SIZE, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, arg);
  const memfd = lab.memfd("records", MFD_ALLOW_SEALING);
  memfd.truncate(2 * PAGE_SIZE);
  memfd.addSeals(F_SEAL_SHRINK);
  const udmabuf = lab.udmabuf([{ memfd, offset: 0, size: 2 * PAGE_SIZE }]);
  keep.push(memfd, udmabuf, sync.resv());
  const resv = sync.resv();
  resv.withLock(() => { resv.reserveFences(2); resv.addFence(a, 1); });
  keep.push(resv);
  // An IOMMU with an attachment, a device record with its ring, a job record.
  const buf = lab.exporter("system").alloc(PAGE_SIZE);
  const iommu = Iommu.create(sync);
  keep.push(buf, iommu, dmaBufAttach(buf, iommu));
  const ring = JobRing.create(sync, 4);
  keep.push(DeviceRecord.create(sync, { name: "no-worker", ring, iommu: iommu.offset, timeline: timeline.offset, timeoutMs: 1000, coherent: false, submitTimeoutMs: 0 }));
  keep.push(sync.allocRecord(RecordType.job, JOB_RECORD_SIZE, "records_test"));
  // A storage record and io_uring's registered-file and registered-buffer tables (no device worker, no ring).
  keep.push(sync.allocRecord(RecordType.storage, STOR_RECORD_SIZE, "records_test"));
  keep.push(sync.allocRecord(RecordType.ioUringFiles, 64, "records_test"), sync.allocRecord(RecordType.ioUringBuffers, 64, "records_test"));
  keep.push(sync.allocRecord(RecordType.dmaToken, 64, "records_test"), sync.allocRecord(RecordType.dmaMap, 64, "records_test"));
  // A share() token's flight record, and a buffer queue.
  keep.push(a.share(), lab.queue({ buffers: 1, size: PAGE_SIZE }));
  return { lab, proc, keep };
}

/** Every live record start in the lab's sync heap, with its type. */
function recordStarts(lab: Lab): { offset: number; type: number }[] {
  const { syncBase, syncBytes } = lab.layout;
  const { records, syncHeap } = lab.arena;
  const out: { offset: number; type: number }[] = [];
  for (let o = syncBase; o < syncBase + syncBytes; o += syncHeap.granuleBytes) {
    const type = records.typeAt(o);
    if (type !== RecordType.free) out.push({ offset: o, type });
  }
  return out;
}

/** What a refused call must leave alone: the sync heap, the metadata (allocator states, record tags), the fd table. */
function snapshot(lab: Lab, proc: Process): { bytes: Uint8Array; fds: number[] } {
  const { metaBase, syncBase, syncBytes } = lab.layout;
  return { bytes: lab.arena.u8.slice(metaBase, syncBase + syncBytes), fds: proc.fds };
}

function expectUnchanged(lab: Lab, proc: Process, before: { bytes: Uint8Array; fds: number[] }, what: string): void {
  const after = snapshot(lab, proc);
  expect(after.fds, `${what}: the fd table`).toEqual(before.fds);
  const first = after.bytes.findIndex((v, i) => v !== before.bytes[i]);
  expect(first, `${what}: first changed byte (offset ${first < 0 ? "-" : (lab.layout.metaBase + first).toString(16)})`).toBe(-1);
}

interface EntryPoint {
  name: string;
  /** The record type it accepts (a sw_sync timeline for the sw_sync ones). */
  accepts: RecordTypeId;
  /** Builds the view from an offset (and the generation a token carries); returns a function that releases it. */
  call(offset: unknown, generation?: unknown): () => void;
}

function entryPoints(lab: Lab, proc: Process): EntryPoint[] {
  const { sync } = lab;
  const token = (kind: FdToken["kind"], offset: unknown, generation: unknown) =>
    ({ kind, offset, generation, flags: O_RDWR }) as FdToken;
  const closing = (fd: number) => () => proc.close(fd);
  return [
    { name: "sync.fenceAt", accepts: RecordType.fence, call: (o, g) => { const f = sync.fenceAt(o as number, g as number); return () => f.put(); } },
    { name: "DmaBufRecord.attach", accepts: RecordType.dmaBuf, call: (o, g) => { const b = DmaBufRecord.attach(sync, o as number, g as number); return () => b.put(); } },
    { name: "Resv.attach", accepts: RecordType.resv, call: (o, g) => { const r = Resv.attach(sync, o as number, g as number); return () => r.put(); } },
    { name: "SwSyncTimeline.dup", accepts: RecordType.timeline, call: (o, g) => { const t = SwSyncTimeline.dup(sync, o as number, g as number); return () => t.close(); } },
    { name: "importFd(dma-buf)", accepts: RecordType.dmaBuf, call: (o, g) => closing(proc.importFd(token("dma-buf", o, g))) },
    { name: "importFd(sync_file)", accepts: RecordType.fence, call: (o, g) => closing(proc.importFd(token("sync_file", o, g))) },
    { name: "importFd(sw_sync)", accepts: RecordType.timeline, call: (o, g) => closing(proc.importFd(token("sw_sync", o, g))) },
    { name: "DmaBufAttachment.at", accepts: RecordType.attachment, call: (o) => { DmaBufAttachment.at(sync, o as number); return () => {}; } },
    { name: "new Iommu", accepts: RecordType.iommu, call: (o) => { new Iommu(sync, o as number); return () => {}; } },
    { name: "new DeviceRecord", accepts: RecordType.device, call: (o) => { new DeviceRecord(sync, o as number); return () => {}; } },
    { name: "new JobRing", accepts: RecordType.ring, call: (o) => { new JobRing(sync, o as number); return () => {}; } },
    { name: "new StorageRecord", accepts: RecordType.storage, call: (o) => { new StorageRecord(lab, o as number); return () => {}; } },
    { name: "new dma token view (dmaTokenMaps)", accepts: RecordType.dmaToken, call: (o) => { dmaTokenMaps(lab, o as number); return () => {}; } },
    { name: "new BufferQueueRecord (adopt)", accepts: RecordType.bufferQueue, call: (o) => { BufferQueueRecord.adopt(sync, o as number); return () => {}; } },
    {
      name: "lab.import(share token)", accepts: RecordType.flight,
      call: (o, g) => { const f = lab.import({ kind: "fence", offset: 0, flight: o, generation: g } as ShareToken<"fence">); return () => f.put(); },
    },
    {
      name: "DeviceHandle.import(device token)", accepts: RecordType.flight,
      call: (o, g) => { const h = DeviceHandle.import(lab, { kind: "device", offset: o, flight: o, generation: g } as ShareToken<"device">); return () => h.close(); },
    },
  ];
}

/** Whether the entry point accepts the record at `offset` (an sw_sync entry point takes only sw_sync timelines). */
function accepted(lab: Lab, entry: EntryPoint, offset: unknown): boolean {
  const { records } = lab.arena;
  if (records.typeAt(offset) !== entry.accepts) return false;
  return entry.accepts !== RecordType.timeline || lab.arena.u32[((offset as number) + TL_KIND) >>> 2] === TIMELINE_SW_SYNC;
}

/** Why the call was not refused as it must be (a DmaBufError EINVAL or EBADF), or undefined when it was. */
function notRefused(entry: EntryPoint, offset: unknown, generation?: unknown): string | undefined {
  try {
    entry.call(offset, generation)();
  } catch (e) {
    if (e instanceof DmaBufError && (e.code === "EINVAL" || e.code === "EBADF")) return undefined;
    return describeCall(entry, offset, generation, `threw ${String(e)}`);
  }
  return describeCall(entry, offset, generation, "was accepted");
}

function describeCall(entry: EntryPoint, offset: unknown, generation: unknown, what: string): string {
  const shown = typeof offset === "number" ? `0x${offset.toString(16)}` : typeof offset === "symbol" ? offset.toString() : String(offset);
  return `${entry.name}(${shown}, ${typeof generation === "symbol" ? generation.toString() : String(generation)}) ${what}`;
}

function expectRefused(entry: EntryPoint, offset: unknown, generation?: unknown): void {
  expect(notRefused(entry, offset, generation)).toBeUndefined();
}

describe("hostile offsets, tokens and handles", () => {
  test("every entry point refuses every record start of every other type, and nothing changes", async () => {
    const { lab, proc } = await everyRecordType();
    const starts = recordStarts(lab);
    const types = new Set(starts.map((s) => s.type));
    for (const type of Object.values(RecordType)) if (type !== RecordType.free) expect(types, recordTypeName(type)).toContain(type);
    const before = snapshot(lab, proc);
    let refused = 0;
    for (const entry of entryPoints(lab, proc)) {
      for (const { offset } of starts) {
        if (accepted(lab, entry, offset)) continue;
        expectRefused(entry, offset);
        expectRefused(entry, offset, lab.arena.records.generationAt(offset));
        refused += 2;
      }
    }
    expectUnchanged(lab, proc, before, "after every record start of another type");
    expect(refused).toBeGreaterThan(100);
  });

  test("a record of the right type but another generation is refused, and nothing changes", async () => {
    const { lab, proc } = await everyRecordType();
    const before = snapshot(lab, proc);
    const generationTaking = entryPoints(lab, proc).filter((e) => e.name !== "DmaBufAttachment.at" && !e.name.startsWith("new "));
    let refused = 0;
    for (const entry of generationTaking) {
      for (const { offset } of recordStarts(lab)) {
        if (!accepted(lab, entry, offset)) continue;
        const g = lab.arena.records.generationAt(offset);
        for (const wrong of [g + 1, g - 1, 2 ** 24 + g, -1, 0.5, "0", null]) {
          if (wrong === g) continue;
          expectRefused(entry, offset, wrong);
          refused++;
        }
      }
    }
    expectUnchanged(lab, proc, before, "after wrong generations");
    expect(refused).toBeGreaterThan(20);
  });

  test(`${RANDOM_OFFSETS} random offsets (fixed seed) are refused by every entry point, and nothing changes`, async () => {
    const { lab, proc } = await everyRecordType();
    const rng = prng(SEED);
    console.log(`hostile offsets: seed ${SEED} (DMABUF_SEED=<n> chooses another)`);
    const { memoryBytes, syncBase, syncBytes } = lab.layout;
    const before = snapshot(lab, proc);
    const entries = entryPoints(lab, proc);
    let legitimate = 0;
    const special: unknown[] = [-1, -64, NaN, Infinity, 2 ** 32, 2 ** 53, 0.5, syncBase + 0.5, "4096", null, undefined, {}, 10n, Symbol("x")];
    const offsets: unknown[] = [...special];
    for (let i = 0; i < RANDOM_OFFSETS; i++) {
      switch (rng.int(0, 3)) {
        case 0: offsets.push(rng.int(0, memoryBytes + 65536)); break; // anywhere, past the end included
        case 1: offsets.push(syncBase + 64 * rng.int(0, syncBytes / 64 - 1)); break; // a granule of the sync heap
        case 2: offsets.push(syncBase + 4 * rng.int(0, syncBytes / 4 - 1)); break; // a word of the sync heap
        default: offsets.push(rng.int(0, 0xffffffff)); // any u32
      }
    }
    const failures: string[] = [];
    for (const offset of offsets) {
      for (const entry of entries) {
        if (accepted(lab, entry, offset)) {
          legitimate++;
          continue;
        }
        const failure = notRefused(entry, offset);
        if (failure !== undefined) failures.push(failure);
      }
    }
    expect(failures.slice(0, 10), `seed ${SEED}`).toEqual([]);
    expectUnchanged(lab, proc, before, `after ${offsets.length} offsets (seed ${SEED})`);
    console.log(`hostile offsets: ${offsets.length} offsets x ${entries.length} entry points, ${legitimate} named a live record of the accepted type`);
  });

  test("Lab.attach with a garbage handle is EINVAL, not a TypeError", async () => {
    const lab = await labs.create();
    const { memory, module } = lab.share();
    const unshared = new WebAssembly.Memory({ initial: 1 });
    const shared = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    const otherModule = new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
    for (const handle of [null, undefined, 42, "lab", {}, { memory }, { module }, { memory: 1, module }, { memory: unshared, module },
      { memory: shared, module }, { memory, module: {} }, { memory, module: otherModule }]) {
      await expectErrnoAsync(() => Lab.attach(handle as never), "EINVAL");
    }
  });
});

describe("type confusion, one regression each", () => {
  test("fenceAt of a dma-buf record is EINVAL and leaves the buffer alone: a write still stores", async () => {
    const lab = await labs.create();
    const buf = lab.heap("system").alloc(PAGE_SIZE);
    const record = DmaBufRecord.attach(lab.sync, lab.process.exportFd(buf.fd).offset);
    for (let i = 0; i < 3; i++) expectErrno(() => lab.sync.fenceAt(record.offset), "EINVAL");
    expect(buf.write(new Uint8Array([1, 2, 3]))).toBe(3);
    const back = new Uint8Array(3);
    buf.seek(0);
    expect(buf.read(back)).toBe(3);
    expect([...back]).toEqual([1, 2, 3]);
    record.put();
    buf.close();
  });

  test("DmaBufRecord.attach of a signalled fence is EBADF and its status stays 1", async () => {
    const lab = await labs.create();
    const fence = lab.sync.timeline().createFence();
    fence.signal();
    expectErrno(() => DmaBufRecord.attach(lab.sync, fence.offset), "EBADF");
    expect(fence.status).toBe(1);
    fence.put();
  });

  test("a forged dma-buf token naming a device record is EBADF, twice, and the device still runs jobs", async () => {
    const lab = await labs.create();
    const device = await devices.spawn(lab, { name: "victim" });
    const offset = device.record.offset;
    for (let i = 0; i < 2; i++) {
      expectErrno(() => lab.process.importFd({ kind: "dma-buf", offset, generation: lab.arena.records.generationAt(offset), flags: O_RDWR }), "EBADF");
    }
    expect(device.stats().state).toBe("running");
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const mapped = await device.attach(buf);
    const fence = device.submit({ kind: "fill", dst: mapped, value: 0x5a });
    expect(fence.wait(WAIT_MS)).toBeGreaterThan(0);
    expect(fence.status).toBe(1);
    fence.put();
    buf.put();
  });

  test("a ring entry that names no job is skipped and counted as a fault; the next job runs", async () => {
    const lab = await labs.create();
    const device = await devices.spawn(lab, { name: "ring-forgery" });
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const mapped = await device.attach(buf);
    const faults = device.stats().faults;
    for (const forged of [buf.offset, device.record.offset, 0]) device.record.ring.push(forged, WAIT_MS);
    const fence = device.submit({ kind: "fill", dst: mapped, value: 7 });
    expect(fence.wait(WAIT_MS)).toBeGreaterThan(0);
    expect(fence.status).toBe(1);
    expect(device.stats().faults - faults).toBe(3);
    expect(buf.refcount).toBeGreaterThan(0);
    fence.put();
    buf.put();
  });
});

describe("generations: a token outlives its record", () => {
  test("a dma-buf token whose buffer was closed is EBADF, even when a new buffer took the same record", async () => {
    const lab = await labs.create();
    const proc = lab.process;
    const a = lab.heap("system").alloc(PAGE_SIZE);
    const token = proc.exportFd(a.fd);
    a.close();
    const b = lab.heap("system").alloc(PAGE_SIZE);
    const reused = proc.exportFd(b.fd);
    expect(reused.offset, "the new buffer's record is the old one's block").toBe(token.offset);
    expect(reused.generation).not.toBe(token.generation);
    const fds = proc.fds;
    expectErrno(() => proc.importFd(token), "EBADF");
    expect(proc.fds).toEqual(fds);
    b.close();
  });

  test("in a real worker, a dma-buf token whose buffer was freed and its record reused is EBADF; a live one imports", async () => {
    const lab = await labs.create();
    const proc = lab.process;
    const a = lab.heap("system").alloc(PAGE_SIZE);
    const stale = proc.exportFd(a.fd);
    a.close();
    using b = lab.heap("system").alloc(PAGE_SIZE);
    b.write(new Uint8Array(16).fill(0x3c), 0);
    const live = proc.exportFd(b.fd);
    expect(live.offset, "the new buffer's record is the old one's block").toBe(stale.offset);
    const data: TokenImporterData = { handle: lab.share(), tokens: [stale, live] };
    const report = await workers.start("token-importer", "token-importer", data).next<TokenImporterReport>("done", WAIT_MS);
    expect(report.results[0]).toEqual({ code: "EBADF" });
    expect(report.results[1]).toMatchObject({ fdinfo: expect.stringContaining("count:\t2") });
    expect(report.openAfter).toBe(0);
    expect(b.fdinfo()).toContain("count:\t1");
    const back = new Uint8Array(16);
    b.read(back, 0);
    expect(back.every((v) => v === 0x3c)).toBe(true);
  });

  test("a sync_file token whose fence went to the fence-record cache and came back is EINVAL", async () => {
    const lab = await labs.create();
    const proc = lab.process;
    const tl = proc.open("/dev/sw_sync", O_RDWR);
    const point = (value: number): number => {
      const data: sw_sync_create_fence_data = { value, name: `p${value}` };
      proc.ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, data);
      return data.fence as number;
    };
    const sf = point(1);
    const token = proc.exportFd(sf);
    proc.ioctl(tl, SW_SYNC_IOC_INC, 1);
    proc.close(sf); // the fence's last reference: its record is parked in the cache
    const again = point(2);
    const reused = proc.exportFd(again);
    expect(reused.offset, "the new fence's record is the parked one").toBe(token.offset);
    const fds = proc.fds;
    expectErrno(() => proc.importFd(token), "EINVAL");
    expect(proc.fds).toEqual(fds);
    proc.close(again);
    proc.close(tl);
  });

  test("an sw_sync token whose timeline was closed, its record reused, is EINVAL", async () => {
    const lab = await labs.create();
    const proc = lab.process;
    const tl = proc.open("/dev/sw_sync", O_RDWR);
    const token = proc.exportFd(tl);
    proc.close(tl);
    const other = proc.open("/dev/sw_sync", O_RDWR);
    expect(proc.exportFd(other).offset).toBe(token.offset);
    expectErrno(() => proc.importFd(token), "EINVAL");
    proc.close(other);
  });
});

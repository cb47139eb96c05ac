/*
 * dma-buf, sync_file and sw_sync fds through the uapi (reference sections 2
 * and 4): DMA_BUF_IOCTL_SYNC, SET_NAME, EXPORT/IMPORT_SYNC_FILE, mmap, llseek,
 * poll and fdinfo, each rule with its code and nothing changed on failure;
 * the fd table (dup, close, fcntl, EMFILE, EBADF, ENOTTY); and fds passed to
 * real workers: fdinfo's count across threads, and SYNC START blocking until
 * another thread signals the write fence.
 */
import { describe, expect, test } from "vitest";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME,
  DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE, DMA_HEAP_IOCTL_ALLOC,
  F_GETFD, F_GETFL, F_SETFD, F_SETFL, FD_CLOEXEC, O_CLOEXEC, O_NONBLOCK, O_RDWR, POLLIN, POLLNVAL, POLLOUT, Process,
  SEEK_CUR, SEEK_END, SEEK_SET, SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC, SYNC_IOC_FILE_INFO, SYNC_IOC_MERGE,
  SYNC_IOC_SET_DEADLINE, _IOW, DMA_BUF_BASE, type Lab, type dma_buf_export_sync_file, type sync_file_info,
  type sync_merge_data, type sw_sync_create_fence_data, type PollFd, DmaBufFile,
} from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { withSeed } from "./helpers/prng.js";
import { WorkerSet } from "./helpers/workers.js";
import type { UapiFdPeerData, UapiFdPeerReport } from "./workers/uapi-fd-peer.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const WAIT_MS = 20_000;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

const START_R = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ;
const START_W = DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE;
const START_RW = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
const END_RW = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;

interface World {
  lab: Lab;
  proc: Process;
  heap: number;
  /** A new dma-buf fd of `len` bytes from the system heap. */
  alloc(len?: number): number;
  /** A new sw_sync timeline fd. */
  timeline(): number;
  /** A sync_file fd for point `value` of the timeline `tl`. */
  point(tl: number, value: number): number;
  /** Imports the sync_file `sf` into the buffer `buf` with `flags`. */
  attach(buf: number, sf: number, flags: number): void;
  /** A sync_file of the buffer's fences as a reader (READ) or writer (WRITE) sees them. */
  exported(buf: number, flags: number): number;
  info(sf: number): sync_file_info;
  /** What a failed call must leave alone. */
  state(): unknown;
}

async function world(options: { maxFds?: number } = {}): Promise<World> {
  const lab = await labs.create();
  const proc = new Process(lab, options);
  const heap = proc.open("/dev/dma_heap/system", O_RDWR | O_CLOEXEC);
  const w: World = {
    lab, proc, heap,
    alloc(len = 64 * KiB) {
      const data = { len, fd: 0, fd_flags: O_RDWR | O_CLOEXEC, heap_flags: 0 };
      proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, data);
      return data.fd;
    },
    timeline: () => proc.open("/dev/sw_sync", O_RDWR),
    point(tl, value) {
      const data: sw_sync_create_fence_data = { value, name: `p${value}` };
      proc.ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, data);
      return data.fence!;
    },
    attach(buf, sf, flags) {
      proc.ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags, fd: sf });
    },
    exported(buf, flags) {
      const data: dma_buf_export_sync_file = { flags };
      proc.ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, data);
      return data.fd!;
    },
    info(sf) {
      const count: sync_file_info = { num_fences: 0 };
      proc.ioctl(sf, SYNC_IOC_FILE_INFO, count);
      const full: sync_file_info = { num_fences: count.num_fences };
      proc.ioctl(sf, SYNC_IOC_FILE_INFO, full);
      return full;
    },
    state() {
      const { pages, sync } = lab.stats();
      return { fds: proc.fds, pagesFree: pages.freeBytes, syncFree: sync.freeBytes };
    },
  };
  return w;
}

const pollOf = (proc: Process, fd: number): number => {
  const fds: PollFd[] = [{ fd, events: POLLIN | POLLOUT }];
  proc.poll(fds);
  return fds[0].revents ?? 0;
};

/** fdinfo's count line. */
const countOf = (proc: Process, fd: number): number => Number(/^count:\t(\d+)$/m.exec(proc.fdinfo(fd))![1]);

describe("DMA_BUF_IOCTL_SYNC", () => {
  test("flags: a bit outside RW|END, or no READ/WRITE bit, is EINVAL; the valid ones succeed", async () => {
    const { proc, alloc, state } = await world();
    const buf = alloc();
    const before = state();
    for (const flags of [0, DMA_BUF_SYNC_END, 8, 0x10 | DMA_BUF_SYNC_READ, 2 ** 32 + DMA_BUF_SYNC_READ]) {
      expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags }), "EINVAL");
    }
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R, timeoutMs: -1 }), "EINVAL");
    expect(state()).toEqual(before);
    for (const flags of [START_R, START_W, START_RW, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, END_RW]) {
      expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags })).toBe(0);
    }
    // Pairing is not enforced: END twice, START twice.
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: END_RW })).toBe(0);
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_RW })).toBe(0);
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_RW })).toBe(0);
  });

  test("START waits per direction: READ for writers only, WRITE and RW for readers too; END never waits (O_NONBLOCK: EAGAIN; timeout: ETIMEDOUT)", async () => {
    const { proc, alloc, timeline, point, attach } = await world();
    const buf = alloc();
    const tl = timeline();
    const reader = point(tl, 1);
    attach(buf, reader, DMA_BUF_SYNC_READ);
    proc.fcntl(buf, F_SETFL, O_NONBLOCK);
    // A pending reader: a CPU read need not wait, a CPU write must.
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R })).toBe(0);
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_W }), "EAGAIN");
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_RW }), "EAGAIN");
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: END_RW })).toBe(0);
    // A pending writer: both wait.
    const writer = point(tl, 2);
    attach(buf, writer, DMA_BUF_SYNC_WRITE);
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R }), "EAGAIN");
    await expectErrnoAsync(() => proc.ioctlAsync(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R }), "EAGAIN");
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ })).toBe(0);
    // Blocking mode with a bound: ETIMEDOUT, both forms.
    proc.fcntl(buf, F_SETFL, 0);
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R, timeoutMs: 0 }), "ETIMEDOUT");
    await expectErrnoAsync(() => proc.ioctlAsync(buf, DMA_BUF_IOCTL_SYNC, { flags: START_W, timeoutMs: 1 }), "ETIMEDOUT");
    proc.ioctl(tl, SW_SYNC_IOC_INC, 2);
    proc.fcntl(buf, F_SETFL, O_NONBLOCK);
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_RW })).toBe(0);
  });

  test("ioctlAsync START stays pending until the write fence signals", async () => {
    const { proc, alloc, timeline, point, attach } = await world();
    const buf = alloc();
    const tl = timeline();
    attach(buf, point(tl, 1), DMA_BUF_SYNC_WRITE);
    let done = false;
    const started = proc.ioctlAsync(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R, timeoutMs: WAIT_MS }).then((r) => { done = true; return r; });
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    proc.ioctl(tl, SW_SYNC_IOC_INC, 1);
    expect(await started).toBe(0);
  });

  test("START blocks until another thread signals the write fence; O_NONBLOCK gives EAGAIN meanwhile", async () => {
    const { lab, proc, alloc, timeline, point, attach } = await world();
    const buf = alloc();
    const tl = timeline();
    const fence = point(tl, 1);
    attach(buf, fence, DMA_BUF_SYNC_WRITE);
    const start = new Int32Array(new SharedArrayBuffer(4));
    const data: UapiFdPeerData = { handle: lab.share(), token: proc.exportFd(tl), action: "inc", start, timeoutMs: WAIT_MS };
    const peer = workers.start("uapi-fd-peer", "uapi-fd-peer inc", data);
    await peer.next("ready", WAIT_MS);
    const nb = proc.dup(buf);
    proc.fcntl(nb, F_SETFL, O_NONBLOCK); // shared by the description: buf is non-blocking too
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R }), "EAGAIN");
    proc.fcntl(nb, F_SETFL, 0);
    expect(pollOf(proc, fence)).toBe(0);
    Atomics.store(start, 0, 1);
    Atomics.notify(start, 0);
    expect(proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_R, timeoutMs: WAIT_MS })).toBe(0);
    expect(pollOf(proc, fence)).toBe(POLLIN);
    expect(pollOf(proc, buf)).toBe(POLLIN | POLLOUT);
    const report = await peer.next<UapiFdPeerReport>("done", WAIT_MS);
    expect(report.openAfter).toBe(0);
  });
});

describe("DMA_BUF_SET_NAME and fdinfo", () => {
  test("a name of at most 31 bytes, else EINVAL and the name is unchanged; fdinfo shows size, count, exp_name, name", async () => {
    const { proc, alloc } = await world();
    const buf = alloc(64 * KiB);
    expect(proc.fdinfo(buf)).toBe(`pos:\t0\nflags:\t0${(O_RDWR | O_CLOEXEC).toString(8)}\nsize:\t${64 * KiB}\ncount:\t1\nexp_name:\tsystem\n`);
    expect(proc.ioctl(buf, DMA_BUF_SET_NAME, "a".repeat(31))).toBe(0);
    expectErrno(() => proc.ioctl(buf, DMA_BUF_SET_NAME, "b".repeat(32)), "EINVAL");
    expectErrno(() => proc.ioctl(buf, DMA_BUF_SET_NAME, { name: "x" }), "EFAULT");
    expect(proc.fdinfo(buf)).toMatch(new RegExp(`\nname:\t${"a".repeat(31)}\n$`));
    expect(proc.ioctl(buf, DMA_BUF_SET_NAME, "frame")).toBe(0);
    expect(proc.fdinfo(buf)).toMatch(/\nexp_name:\tsystem\nname:\tframe\n$/);
  });

  test("count follows dup, close and mmap (a seeded sequence), and the pages go with the last reference", async () => {
    await withSeed(async (rng) => {
      const { lab, proc, alloc } = await world();
      const free = lab.stats().pages.freeBytes;
      const first = alloc(64 * KiB);
      const fds = [first];
      const maps = [];
      for (let i = 0; i < 200; i++) {
        const op = rng.int(0, 3);
        if (op === 0) fds.push(proc.dup(rng.pick(fds)));
        else if (op === 1 && fds.length > 1) proc.close(fds.splice(rng.int(0, fds.length - 1), 1)[0]);
        else if (op === 2) maps.push(proc.mmap(rng.pick(fds), 0, PAGE_SIZE));
        else if (maps.length > 0) proc.munmap(maps.splice(rng.int(0, maps.length - 1), 1)[0]);
        expect(countOf(proc, rng.pick(fds))).toBe(fds.length + maps.length);
      }
      // Every fd closed: the mappings alone keep the pages.
      const m = proc.mmap(fds[0], 0, PAGE_SIZE);
      for (const fd of fds) proc.close(fd);
      for (const mm of maps) proc.munmap(mm);
      expect(lab.stats().pages.freeBytes).toBeLessThan(free);
      m.views[0][0] = 7; // still mapped, still writable
      proc.munmap(m);
      expectErrno(() => proc.munmap(m), "EINVAL");
      expect(lab.stats().pages.freeBytes).toBe(free);
    });
  });

  test("an fd passed to a real worker counts in fdinfo until the worker closes it", async () => {
    const { lab, proc, alloc } = await world();
    const buf = alloc(64 * KiB);
    proc.ioctl(buf, DMA_BUF_SET_NAME, "shared");
    const start = new Int32Array(new SharedArrayBuffer(4));
    const data: UapiFdPeerData = { handle: lab.share(), token: proc.exportFd(buf), action: "hold", start, timeoutMs: WAIT_MS };
    expect(countOf(proc, buf)).toBe(1); // a token holds no reference
    const peer = workers.start("uapi-fd-peer", "uapi-fd-peer hold", data);
    await peer.next("ready", WAIT_MS);
    expect(countOf(proc, buf)).toBe(2);
    Atomics.store(start, 0, 1);
    Atomics.notify(start, 0);
    const report = await peer.next<UapiFdPeerReport>("done", WAIT_MS);
    expect(report.fdinfo).toBe(`pos:\t0\nflags:\t0${O_RDWR.toString(8)}\nsize:\t${64 * KiB}\ncount:\t2\nexp_name:\tsystem\nname:\tshared\n`);
    expect(report.openAfter).toBe(0);
    expect(countOf(proc, buf)).toBe(1);
  });
});

describe("EXPORT_SYNC_FILE and IMPORT_SYNC_FILE", () => {
  test("flags must be a non-zero subset of RW (EINVAL, nothing changed); import needs a sync_file fd (EINVAL)", async () => {
    const { proc, alloc, timeline, point, state } = await world();
    const buf = alloc();
    const other = alloc();
    const tl = timeline();
    const sf = point(tl, 1);
    const closed = point(tl, 2);
    proc.close(closed);
    const before = state();
    for (const flags of [0, DMA_BUF_SYNC_END, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, 8]) {
      const data: dma_buf_export_sync_file = { flags };
      expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, data), "EINVAL");
      expect(data.fd).toBeUndefined();
      expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags, fd: sf }), "EINVAL");
    }
    for (const fd of [other, tl, closed, 999, -1]) {
      expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_WRITE, fd }), "EINVAL");
    }
    expect(state()).toEqual(before);
    expect(pollOf(proc, buf)).toBe(POLLIN | POLLOUT); // nothing was added
  });

  test("export: no fences gives a signalled stub; one the fence itself; several an array; a reader sees writers only", async () => {
    const { proc, alloc, timeline, point, attach, exported, info } = await world();
    const buf = alloc();
    const none = exported(buf, DMA_BUF_SYNC_RW);
    expect(proc.fcntl(none, F_GETFD)).toBe(FD_CLOEXEC);
    expect(pollOf(proc, none)).toBe(POLLIN);
    expect(info(none)).toMatchObject({ status: 1, num_fences: 1 });
    const t1 = timeline();
    const t2 = timeline();
    attach(buf, point(t1, 1), DMA_BUF_SYNC_WRITE);
    attach(buf, point(t2, 1), DMA_BUF_SYNC_READ);
    const asReader = exported(buf, DMA_BUF_SYNC_READ);
    const r = info(asReader);
    expect(r).toMatchObject({ status: 0, num_fences: 1 });
    expect(r.sync_fence_info![0]).toMatchObject({ driver_name: "sw_sync", status: 0, timestamp_ns: 0 });
    const asWriter = exported(buf, DMA_BUF_SYNC_WRITE);
    expect(info(asWriter)).toMatchObject({ status: 0, num_fences: 2 });
    expect(info(exported(buf, DMA_BUF_SYNC_RW)).num_fences).toBe(2);
    // A snapshot: signalling the writer signals the reader's file, not the writer's.
    proc.ioctl(t1, SW_SYNC_IOC_INC, 1);
    expect(pollOf(proc, asReader)).toBe(POLLIN);
    expect(pollOf(proc, asWriter)).toBe(0);
    expect(pollOf(proc, buf)).toBe(POLLIN);
    proc.ioctl(t2, SW_SYNC_IOC_INC, 1);
    expect(pollOf(proc, asWriter)).toBe(POLLIN);
    expect(info(asWriter).status).toBe(1);
  });

  test("import: WRITE adds a writer, READ a reader; a merged sync_file is split into its fences", async () => {
    const { proc, alloc, timeline, point, attach, exported, info } = await world();
    const buf = alloc();
    const t1 = timeline();
    const t2 = timeline();
    const merge: sync_merge_data = { name: "both", fd2: point(t2, 5) };
    proc.ioctl(point(t1, 3), SYNC_IOC_MERGE, merge);
    expect(info(merge.fence!)).toMatchObject({ name: "both", num_fences: 2 });
    attach(buf, merge.fence!, DMA_BUF_SYNC_READ);
    expect(pollOf(proc, buf)).toBe(POLLIN); // readers only: a new reader need not wait
    // Split: each fence is its own entry, so signalling one leaves the other pending.
    proc.ioctl(t1, SW_SYNC_IOC_INC, 3);
    const left = exported(buf, DMA_BUF_SYNC_WRITE);
    expect(info(left).num_fences).toBe(1);
    expect(info(left).sync_fence_info![0].obj_name).toBe(info(point(t2, 5)).sync_fence_info![0].obj_name);
    // A writer now (READ|WRITE counts as WRITE).
    attach(buf, point(t1, 4), DMA_BUF_SYNC_RW);
    expect(pollOf(proc, buf)).toBe(0);
    proc.ioctl(t1, SW_SYNC_IOC_INC, 1);
    proc.ioctl(t2, SW_SYNC_IOC_INC, 5);
    expect(pollOf(proc, buf)).toBe(POLLIN | POLLOUT);
  });
});

describe("mmap, llseek, poll", () => {
  test("mmap: page-aligned offset, positive length, within the buffer's pages (EINVAL); views follow the scattered chunks", async () => {
    const { proc, alloc, timeline, state } = await world();
    alloc(PAGE_SIZE); // takes the pool's first page, so the chunks below are not adjacent
    const size = MiB + 64 * KiB + 3 * PAGE_SIZE; // system heap: chunks of 1 MiB, 64 KiB, 4 KiB
    const buf = alloc(size);
    const segments = (proc.file(buf) as DmaBufFile).buf.segments();
    expect(segments.length).toBeGreaterThan(1);
    const before = state();
    expectErrno(() => proc.mmap(buf, 1, PAGE_SIZE), "EINVAL");
    expectErrno(() => proc.mmap(buf, 0, 0), "EINVAL");
    expectErrno(() => proc.mmap(buf, 0, size + 1), "EINVAL");
    expectErrno(() => proc.mmap(buf, size, 1), "EINVAL");
    expectErrno(() => proc.mmap(buf, PAGE_SIZE, size), "EINVAL");
    expectErrno(() => proc.mmap(timeline(), 0, PAGE_SIZE), "ENODEV");
    proc.close(proc.fds.at(-1)!);
    expect(state()).toEqual(before);
    const all = proc.mmap(buf, 0, size);
    expect(all.views.map((v) => [v.byteOffset, v.length])).toEqual(segments.map((g) => [g.addr, g.len]));
    expect(all.views.reduce((n, v) => n + v.length, 0)).toBe(size);
    // A range across a chunk boundary: the tail of one chunk, the head of the next.
    const part = proc.mmap(buf, MiB - PAGE_SIZE, 2 * PAGE_SIZE - 1);
    expect(part.length).toBe(2 * PAGE_SIZE);
    proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: START_RW });
    const flat = (views: Uint8Array[]) => {
      const out = new Uint8Array(views.reduce((n, v) => n + v.length, 0));
      let at = 0;
      for (const v of views) { out.set(v, at); at += v.length; }
      return out;
    };
    for (const v of part.views) v.fill(0x5a);
    proc.ioctl(buf, DMA_BUF_IOCTL_SYNC, { flags: END_RW });
    const whole = flat(all.views);
    expect(whole.slice(MiB - PAGE_SIZE, MiB + PAGE_SIZE).every((b) => b === 0x5a)).toBe(true);
    expect(whole.filter((b) => b !== 0).length).toBe(2 * PAGE_SIZE);
    proc.munmap(part);
    proc.munmap(all);
  });

  test("llseek: SEEK_SET, SEEK_CUR and SEEK_END (the read/write path makes the position matter); the upstream answers hold; other files cannot seek", async () => {
    const { proc, alloc, timeline, point } = await world();
    const buf = alloc(8 * KiB);
    // Every answer upstream gave (offset 0 only) is the same here.
    expect(proc.lseek(buf, 0, SEEK_END)).toBe(8 * KiB);
    expect(proc.lseek(buf, 0, SEEK_SET)).toBe(0);
    expect(proc.lseek(buf, 100, SEEK_SET)).toBe(100);
    expect(proc.lseek(buf, 28, SEEK_CUR)).toBe(128);
    expect(proc.lseek(buf, -8, SEEK_END)).toBe(8 * KiB - 8);
    expect(proc.lseek(buf, 4 * KiB, SEEK_END)).toBe(12 * KiB); // past the end: reads give 0
    expectErrno(() => proc.lseek(buf, -1, SEEK_SET), "EINVAL");
    expectErrno(() => proc.lseek(buf, -(8 * KiB) - 1, SEEK_END), "EINVAL");
    expectErrno(() => proc.lseek(buf, 0, 3), "EINVAL");
    expect(proc.lseek(buf, 0, SEEK_CUR)).toBe(12 * KiB); // failures left the position alone
    const tl = timeline();
    expectErrno(() => proc.lseek(tl, 0, SEEK_SET), "ESPIPE");
    expectErrno(() => proc.lseek(point(tl, 1), 0, SEEK_SET), "ESPIPE");
  });

  test("poll by usage: POLLIN without pending KERNEL/WRITE fences, POLLOUT without pending READ ones; sync_file POLLIN once signalled (an error too); bad fds POLLNVAL", async () => {
    const { proc, alloc, timeline, point, attach } = await world();
    const buf = alloc();
    const tl = timeline();
    const fds: PollFd[] = [{ fd: buf, events: POLLIN | POLLOUT }, { fd: 12345, events: POLLIN }, { fd: buf, events: POLLOUT }];
    expect(proc.poll(fds)).toBe(3);
    expect(fds.map((p) => p.revents)).toEqual([POLLIN | POLLOUT, POLLNVAL, POLLOUT]);
    attach(buf, point(tl, 1), DMA_BUF_SYNC_READ);
    expect(pollOf(proc, buf)).toBe(POLLIN);
    attach(buf, point(tl, 2), DMA_BUF_SYNC_WRITE);
    expect(proc.poll(fds)).toBe(1);
    expect(fds.map((p) => p.revents)).toEqual([0, POLLNVAL, 0]);
    proc.ioctl(tl, SW_SYNC_IOC_INC, 2);
    expect(pollOf(proc, buf)).toBe(POLLIN | POLLOUT);
    // Closing the last fd of a timeline signals its pending points with ENOENT: POLLIN all the same.
    const t2 = timeline();
    const orphan = point(t2, 9);
    expect(pollOf(proc, orphan)).toBe(0);
    expect(pollOf(proc, t2)).toBe(POLLIN | POLLOUT); // sw_sync has no poll: DEFAULT_POLLMASK
    const t2dup = proc.dup(t2);
    proc.close(t2);
    expect(pollOf(proc, orphan)).toBe(0); // the dup keeps the timeline open
    proc.close(t2dup);
    expect(pollOf(proc, orphan)).toBe(POLLIN);
    expect(proc.ioctl(orphan, SYNC_IOC_FILE_INFO, { num_fences: 0 })).toBe(0);
    const i: sync_file_info = { num_fences: 1 };
    proc.ioctl(orphan, SYNC_IOC_FILE_INFO, i);
    expect(i.sync_fence_info![0].status).toBe(-2);
  });
});

describe("sync_file and sw_sync fds", () => {
  test("MERGE (fd2 not a sync_file ENOENT, flags/pad EINVAL), FILE_INFO (too small EINVAL), SET_DEADLINE (pad EINVAL): nothing changes on failure", async () => {
    const { proc, alloc, timeline, point, info, state } = await world();
    const tl = timeline();
    const a = point(tl, 1);
    const buf = alloc();
    const before = state();
    for (const fd2 of [buf, tl, 999]) {
      const data: sync_merge_data = { name: "m", fd2 };
      expectErrno(() => proc.ioctl(a, SYNC_IOC_MERGE, data), "ENOENT");
      expect(data.fence).toBeUndefined();
    }
    expectErrno(() => proc.ioctl(a, SYNC_IOC_MERGE, { name: "m", fd2: a, flags: 1 }), "EINVAL");
    expectErrno(() => proc.ioctl(a, SYNC_IOC_MERGE, { name: "m", fd2: a, pad: 1 }), "EINVAL");
    expectErrno(() => proc.ioctl(a, SYNC_IOC_SET_DEADLINE, { deadline_ns: 1, pad: 1 }), "EINVAL");
    const t2 = timeline();
    const b = point(t2, 1);
    const m: sync_merge_data = { name: "ab", fd2: b };
    const beforeMerge = state();
    proc.ioctl(a, SYNC_IOC_MERGE, m);
    expect(proc.fds).toEqual([...(beforeMerge as { fds: number[] }).fds, m.fence!].sort((x, y) => x - y));
    expectErrno(() => proc.ioctl(m.fence!, SYNC_IOC_FILE_INFO, { num_fences: 1 }), "EINVAL");
    expect(info(m.fence!)).toMatchObject({ name: "ab", status: 0, num_fences: 2 });
    expect(proc.ioctl(m.fence!, SYNC_IOC_SET_DEADLINE, { deadline_ns: 1_000_000 })).toBe(0);
    proc.close(m.fence!);
    proc.close(b);
    proc.close(t2);
    expect(state()).toEqual(before);
  });

  test("CREATE_FENCE: the same fence for a pending value, a signalled one for a reached value; INC signals in order", async () => {
    const { proc, timeline, point, info } = await world();
    const tl = timeline();
    const p1 = point(tl, 1);
    const p1again = point(tl, 1);
    const p2 = point(tl, 2);
    const m: sync_merge_data = { name: "same", fd2: p1again };
    proc.ioctl(p1, SYNC_IOC_MERGE, m);
    expect(info(m.fence!).num_fences).toBe(1); // merge of the same fence is that fence
    expect(proc.fcntl(p1, F_GETFD)).toBe(FD_CLOEXEC);
    proc.ioctl(tl, SW_SYNC_IOC_INC, 1);
    expect([pollOf(proc, p1), pollOf(proc, p1again), pollOf(proc, p2)]).toEqual([POLLIN, POLLIN, 0]);
    expect(pollOf(proc, point(tl, 1))).toBe(POLLIN);
    expectErrno(() => proc.ioctl(tl, SW_SYNC_IOC_INC, { value: 1 }), "EFAULT");
    expectErrno(() => proc.ioctl(tl, SW_SYNC_IOC_INC, -1), "EINVAL");
    proc.ioctl(tl, SW_SYNC_IOC_INC, 1);
    expect(pollOf(proc, p2)).toBe(POLLIN);
  });
});

describe("the fd table", () => {
  test("EBADF on closed and unknown fds; dup shares the description (O_NONBLOCK) but not close-on-exec", async () => {
    const { proc, alloc, state } = await world();
    const buf = alloc();
    const copy = proc.dup(buf);
    expect(proc.fcntl(buf, F_GETFD)).toBe(FD_CLOEXEC);
    expect(proc.fcntl(copy, F_GETFD)).toBe(0);
    proc.fcntl(copy, F_SETFD, FD_CLOEXEC);
    expect(proc.fcntl(copy, F_GETFD)).toBe(FD_CLOEXEC);
    proc.fcntl(copy, F_SETFL, O_NONBLOCK | O_RDWR /* the access mode does not change */ | 0o2000 /* O_APPEND: ignored */);
    expect(proc.fcntl(buf, F_GETFL)).toBe(O_RDWR | O_NONBLOCK);
    expectErrno(() => proc.fcntl(buf, 99), "EINVAL");
    proc.close(buf);
    expect(countOf(proc, copy)).toBe(1);
    const before = state();
    for (const fd of [buf, 999, -1, 1.5]) {
      expectErrno(() => proc.close(fd), "EBADF");
      expectErrno(() => proc.dup(fd), "EBADF");
      expectErrno(() => proc.fcntl(fd, F_GETFD), "EBADF");
      expectErrno(() => proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: START_R }), "EBADF");
      await expectErrnoAsync(() => proc.ioctlAsync(fd, DMA_BUF_IOCTL_SYNC, { flags: START_R }), "EBADF");
      expectErrno(() => proc.lseek(fd, 0, SEEK_SET), "EBADF");
      expectErrno(() => proc.mmap(fd, 0, PAGE_SIZE), "EBADF");
      expectErrno(() => proc.fdinfo(fd), "EBADF");
      expectErrno(() => proc.exportFd(fd), "EBADF");
    }
    expect(state()).toEqual(before);
    // The lowest free fd is reused.
    expect(proc.dup(copy)).toBe(buf);
  });

  test("EMFILE at the limit: ALLOC, dup, EXPORT_SYNC_FILE, MERGE and CREATE_FENCE change nothing", async () => {
    const { proc, alloc, timeline, point, state } = await world({ maxFds: 8 });
    const buf = alloc(); // 4
    const tl = timeline(); // 5
    const sf = point(tl, 1); // 6
    proc.dup(buf); // 7: the table is full (3..7)
    const before = state();
    expectErrno(() => alloc(), "EMFILE");
    expectErrno(() => proc.dup(buf), "EMFILE");
    expectErrno(() => proc.open("/dev/sw_sync"), "EMFILE");
    expectErrno(() => proc.ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_RW }), "EMFILE");
    expectErrno(() => proc.ioctl(sf, SYNC_IOC_MERGE, { name: "m", fd2: sf }), "EMFILE");
    expectErrno(() => proc.ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, { value: 2 }), "EMFILE");
    expect(state()).toEqual(before);
  });

  test("unknown ioctls: ENOTTY on dma-buf, sync_file and sw_sync fds, EINVAL on a dma-heap fd", async () => {
    const { proc, alloc, timeline, point, heap } = await world();
    const buf = alloc();
    const tl = timeline();
    const sf = point(tl, 1);
    const unknown = _IOW(DMA_BUF_BASE, 9, 8);
    for (const fd of [buf, tl, sf]) {
      expectErrno(() => proc.ioctl(fd, unknown, {}), "ENOTTY");
      await expectErrnoAsync(() => proc.ioctlAsync(fd, unknown, {}), "ENOTTY");
    }
    expectErrno(() => proc.ioctl(buf, SYNC_IOC_MERGE, { name: "m", fd2: sf }), "ENOTTY");
    expectErrno(() => proc.ioctl(sf, DMA_BUF_IOCTL_SYNC, { flags: START_R }), "ENOTTY");
    expectErrno(() => proc.ioctl(tl, DMA_HEAP_IOCTL_ALLOC, { len: 4096, fd: 0, fd_flags: 0, heap_flags: 0 }), "ENOTTY");
    expectErrno(() => proc.ioctl(heap, unknown, {}), "EINVAL");
    expectErrno(() => proc.exportFd(heap), "EINVAL");
  });

  test("closeAll releases every file, mapping, fence and page", async () => {
    const { lab, proc, alloc, timeline, point, attach, exported } = await world();
    const pages = lab.stats().pages.freeBytes;
    const sync = lab.stats().sync.freeBytes;
    const p2 = new Process(lab);
    const buf = alloc(MiB);
    const tl = timeline();
    attach(buf, point(tl, 1), DMA_BUF_SYNC_WRITE);
    exported(buf, DMA_BUF_SYNC_RW);
    proc.mmap(buf, 0, MiB);
    const other = p2.importFd(proc.exportFd(buf));
    const otherTl = p2.importFd(proc.exportFd(tl));
    const reader = p2.importFd(proc.exportFd(exported(buf, DMA_BUF_SYNC_READ)));
    expect(p2.fcntl(reader, F_GETFD)).toBe(0); // an imported fd is not close-on-exec
    expect(pollOf(p2, reader)).toBe(0);
    expect(countOf(p2, other)).toBe(3); // two fds and the mapping
    proc.closeAll();
    expect(countOf(p2, other)).toBe(1);
    p2.ioctl(otherTl, SW_SYNC_IOC_INC, 1);
    expect(pollOf(p2, other)).toBe(POLLIN | POLLOUT);
    expect(pollOf(p2, reader)).toBe(POLLIN);
    const token = p2.exportFd(other);
    p2.closeAll();
    // The token held no reference: the buffer went with its last fd.
    expectErrno(() => proc.importFd(token), "EBADF");
    expect(proc.fds).toEqual([]);
    expect(lab.stats().pages.freeBytes).toBe(pages);
    expect(lab.stats().sync.freeBytes).toBe(sync);
  });
});

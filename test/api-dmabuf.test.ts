/*
 * The object API (src/api/dma_buf.ts): lab.heap(name).alloc(size) gives a
 * DmaBuf whose methods are system calls of the thread's Process: read/write
 * with and without positions, readv/writev, the Async twins, SYNC through
 * begin/endCpuAccess (blocking, timeout, O_NONBLOCK and the Promise form),
 * map, export/import of sync_files, names, sharing through a token, and
 * close/`using`.
 */
import { describe, expect, test } from "vitest";
import { DmaBuf, Lab, SEEK_END, type SyncFile } from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const MiB = 1024 * 1024;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
cleanUpAfterEach({ labs });

const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

/** A pending writer's fence on `buf`, from an sw_sync timeline of this lab; signal() releases it. */
function pendingWriter(lab: Lab, buf: DmaBuf): { file: SyncFile; signal: () => void } {
  const tl = lab.sync.swSync("writer");
  const file = tl.createFence(1);
  buf.importSyncFile(file, "write");
  return { file, signal: () => { tl.inc(1); tl.close(); file.close(); } };
}

describe("DmaBuf, the object API", () => {
  test("alloc, write and read with and without positions, readv/writev, seek, name, fdinfo", async () => {
    const lab = await labs.create();
    using buf = lab.heap("system").alloc(3 * PAGE_SIZE - 10);
    expect(buf.size).toBe(3 * PAGE_SIZE);
    expect(buf.write(fill(100, 1))).toBe(100);
    expect(buf.position).toBe(100);
    expect(buf.writev([fill(10, 2), fill(10, 3)])).toBe(20);
    expect(buf.write(fill(4, 9), 1000)).toBe(4);
    expect(buf.position).toBe(120);
    buf.position = 0;
    const a = new Uint8Array(110);
    const b = new Uint8Array(10);
    expect(buf.readv([a, b])).toBe(120);
    expect([a[0], a[99], a[100], b[9]]).toEqual([1, 1, 2, 3]);
    const p = new Uint8Array(4);
    expect(buf.read(p, 1000)).toBe(4);
    expect(p).toEqual(fill(4, 9));
    expect(buf.seek(-1, SEEK_END)).toBe(buf.size - 1);
    expect(buf.read(new Uint8Array(10))).toBe(1);
    buf.name = "frame-7";
    expect(buf.name).toBe("frame-7");
    expect(buf.fdinfo()).toContain("name:\tframe-7");
    expectErrno(() => { buf.name = "x".repeat(40); }, "EINVAL");
  });

  test("Async twins: a read waits for a pending writer without blocking, then sees its data", async () => {
    const lab = await labs.create();
    using buf = lab.heap("system").alloc(PAGE_SIZE);
    const writer = pendingWriter(lab, buf);
    const out = new Uint8Array(8);
    const reading = buf.readAsync(out, 0);
    buf.nonblock = true;
    expectErrno(() => buf.read(new Uint8Array(8), 0), "EAGAIN");
    expectErrno(() => buf.beginCpuAccess("read"), "EAGAIN");
    buf.nonblock = false;
    expectErrno(() => buf.beginCpuAccess("read", 5), "ETIMEDOUT");
    expectErrno(() => buf.read(new Uint8Array(8), 0, { timeoutMs: 5 }), "ETIMEDOUT");
    await expectErrnoAsync(() => buf.readAsync(new Uint8Array(8), 0, { timeoutMs: 5 }), "ETIMEDOUT");
    await expectErrnoAsync(() => buf.beginCpuAccessAsync("read", 5), "ETIMEDOUT");
    expect(buf.exportSyncFile("read").poll()).toBe(0);
    writer.signal();
    expect(await reading).toBe(8);
    await buf.beginCpuAccessAsync("rw");
    buf.endCpuAccess("rw");
    const exported = buf.exportSyncFile("write");
    expect(exported.poll()).toBe(1);
    exported.close();
    expect(await buf.writeAsync(fill(8, 5), 8)).toBe(8);
    expect(await buf.readvAsync([new Uint8Array(16)], 0)).toBe(16);
    expect(await buf.writevAsync([fill(4, 6)], 0)).toBe(4);
  });

  test("map bracketed by begin/endCpuAccess is right in a non-coherent lab; without them it is stale", async () => {
    const lab = await labs.create({ coherent: false });
    using buf = lab.heap("system").alloc(PAGE_SIZE);
    const map = buf.map();
    const [cpu] = map.views;
    buf.write(fill(64, 0x21), 0); // the read/write path keeps the CPU's view right
    expect(cpu[0]).toBe(0x21);
    buf.beginCpuAccess("write");
    cpu.fill(0x42, 0, 64);
    const device = new Uint8Array(1);
    // Before END, what devices see (and read(2), which refills from memory) is the old data.
    buf.read(device, 0);
    expect(device[0]).toBe(0x21);
    cpu.fill(0x42, 0, 64); // (the read refilled the line; write it again, then publish it)
    buf.endCpuAccess("write");
    buf.read(device, 0);
    expect(device[0]).toBe(0x42);
    buf.unmap(map);
  });

  test("direction names are checked; closed buffers are EBADF; close is idempotent; lab.close releases everything", async () => {
    const lab = await labs.create();
    const before = lab.stats().pages.freeBytes;
    const buf = lab.heap("cma").alloc(4 * PAGE_SIZE);
    expectErrno(() => buf.beginCpuAccess("sideways" as "rw"), "EINVAL");
    expectErrno(() => lab.heap("nope" as "system"), "ENOENT");
    buf.close();
    buf.close();
    expect(buf.closed).toBe(true);
    expectErrno(() => buf.size, "EBADF");
    expect(lab.stats().pages.freeBytes).toBe(before);
    lab.heap("system").alloc(PAGE_SIZE); // left open on purpose
    lab.close();
    expect(lab.stats().pages.freeBytes).toBe(before);
  });

  test("share() gives a token another Lab view (as in another thread) imports as its own DmaBuf", async () => {
    const lab = await labs.create();
    using buf = lab.heap("system").alloc(PAGE_SIZE);
    buf.write(fill(16, 0x7e), 0);
    const other = await Lab.attach(lab.share());
    try {
      using theirs = DmaBuf.import(other, buf.share());
      expect(buf.fdinfo()).toContain("count:\t2");
      const out = new Uint8Array(16);
      theirs.read(out, 0);
      expect(out).toEqual(fill(16, 0x7e));
    } finally {
      other.close();
    }
    expect(buf.fdinfo()).toContain("count:\t1");
  });

  test("a closed DmaBuf is EBADF in every method and never acts on the buffer that reuses its fd", async () => {
    const lab = await labs.create();
    const stale = lab.heap("system").alloc(PAGE_SIZE);
    const fd = stale.fd;
    stale.close();
    using next = lab.heap("system").alloc(PAGE_SIZE);
    expect(next.fd, "the new buffer reuses the fd number").toBe(fd);
    next.write(fill(64, 0x11), 0);
    next.position = 7;
    next.name = "next";
    const state = () => {
      const bytes = new Uint8Array(64);
      next.read(bytes, 0);
      return { bytes: [...bytes], position: next.position, name: next.name, nonblock: next.nonblock, fdinfo: next.fdinfo() };
    };
    const before = state();
    const sync = next.exportSyncFile("write");
    const calls: [string, () => unknown][] = [
      ["size", () => stale.size], ["name", () => stale.name], ["record", () => stale.record],
      ["set name", () => { stale.name = "stale"; }], ["nonblock", () => stale.nonblock], ["set nonblock", () => { stale.nonblock = true; }],
      ["position", () => stale.position], ["set position", () => { stale.position = 3; }], ["seek", () => stale.seek(0, SEEK_END)],
      ["read", () => stale.read(new Uint8Array(8))], ["pread", () => stale.read(new Uint8Array(8), 0)],
      ["write", () => stale.write(fill(8, 0xee))], ["pwrite", () => stale.write(fill(8, 0xee), 0)],
      ["readv", () => stale.readv([new Uint8Array(8)])], ["writev", () => stale.writev([fill(8, 0xee)])],
      ["beginCpuAccess", () => stale.beginCpuAccess("rw")], ["endCpuAccess", () => stale.endCpuAccess("rw")],
      ["map", () => stale.map()], ["exportSyncFile", () => stale.exportSyncFile()], ["importSyncFile", () => stale.importSyncFile(sync)],
      ["fdinfo", () => stale.fdinfo()], ["share", () => stale.share()],
    ];
    for (const [what, call] of calls) expect(expectErrno(call, "EBADF").code, what).toBe("EBADF");
    const asyncCalls: [string, () => Promise<unknown>][] = [
      ["readAsync", () => stale.readAsync(new Uint8Array(8), 0)], ["writeAsync", () => stale.writeAsync(fill(8, 0xee), 0)],
      ["readvAsync", () => stale.readvAsync([new Uint8Array(8)])], ["writevAsync", () => stale.writevAsync([fill(8, 0xee)])],
      ["beginCpuAccessAsync", () => stale.beginCpuAccessAsync("rw")],
    ];
    for (const [what, call] of asyncCalls) expect((await expectErrnoAsync(async () => call(), "EBADF")).code, what).toBe("EBADF");
    stale.close();
    expect(state()).toEqual(before);
    sync.close();
  });

  test("a DmaBuf whose fd was closed behind its back is EBADF, and its close() leaves the fd's new owner open", async () => {
    const lab = await labs.create();
    const buf = lab.heap("system").alloc(PAGE_SIZE);
    lab.process.close(buf.fd);
    using other = lab.heap("system").alloc(PAGE_SIZE);
    expect(other.fd).toBe(buf.fd);
    expectErrno(() => buf.write(fill(4, 1), 0), "EBADF");
    buf.close();
    expect(buf.closed).toBe(true);
    expect(other.write(fill(4, 2), 0)).toBe(4);
  });

  test("lab.heap(name) holds one heap fd: 5000 rounds of lab.heap(\"system\").alloc(4096).close() leak nothing", async () => {
    const lab = await labs.create();
    const pages = lab.stats().pages.freeBytes;
    lab.heap("system").alloc(PAGE_SIZE).close();
    const fds = lab.process.fds;
    for (let i = 0; i < 5000; i++) lab.heap("system").alloc(PAGE_SIZE).close();
    expect(lab.process.fds).toEqual(fds);
    expect(lab.heap("system")).toBe(lab.heap("system"));
    expect(lab.stats().pages.freeBytes).toBe(pages);
  });

  test("a heap whose fd was closed behind its back (process.closeAll) opens a new one and allocates through it", async () => {
    const lab = await labs.create();
    const heap = lab.heap("system");
    heap.alloc(PAGE_SIZE).close();
    lab.process.closeAll();
    const squatter = lab.process.open("/dev/sw_sync", 2);
    using buf = heap.alloc(PAGE_SIZE);
    expect(buf.size).toBe(PAGE_SIZE);
    expect(lab.process.file(squatter).kind).toBe("sw_sync");
    lab.process.close(squatter);
  });
});

/*
 * Hostile arguments: every entry point of the uapi and the object API,
 * called with values a careless or hostile caller passes (BigInt, null,
 * undefined, Symbols, objects without a prototype, frozen or wrongly shaped
 * objects, NaN, fractions, strings), answers with a DmaBufError or succeeds:
 * never a TypeError or another error, and a failed call leaves the fd table
 * and the lab's memory as they were (nothing created, nothing leaked).
 */
import { describe, expect, test } from "vitest";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME, DMA_HEAP_IOCTL_ALLOC,
  DmaBufError, DMA_BUF_IOCTL_RW_FILE, F_ADD_SEALS, F_GETFD, F_SETFD, F_SETFL, MFD_ALLOW_SEALING, O_RDWR, Process, SEEK_SET, SW_SYNC_IOC_CREATE_FENCE,
  SW_SYNC_IOC_INC, SYNC_IOC_FILE_INFO, SYNC_IOC_MERGE, SYNC_IOC_SET_DEADLINE, UDMABUF_CREATE, UDMABUF_CREATE_LIST, type Lab,
} from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import type { Device, DeviceBuffer } from "../src/devices/device.js";
import type { DmaBuf } from "../src/api/dma_buf.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const MiB = 1024 * 1024;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
cleanUpAfterEach({ labs });

/** The values, each with a name for the failure message. */
const hostile: [string, unknown][] = [
  ["undefined", undefined], ["null", null], ["0n", 0n], ["2n**64n", 2n ** 64n], ["Symbol()", Symbol("hostile")],
  ["NaN", NaN], ["-1", -1], ["1.5", 1.5], ["2**53", 2 ** 53], ["Infinity", Infinity], ["'3'", "3"], ["''", ""],
  ["true", true], ["{}", {}], ["[]", []], ["frozen {}", Object.freeze({})], ["Object.create(null)", Object.create(null)],
  ["a function", () => 0], ["[null]", [null]], ["[Symbol()]", [Symbol("in-array")]], ["{fd: Symbol()}", { fd: Symbol("fd") }],
  ["a Uint8Array", new Uint8Array(8)], ["{length: -1}", { length: -1 }],
];

interface Fixture {
  lab: Lab;
  proc: Process;
  buf: number;
  syncFile: number;
  swSync: number;
  memfd: number;
  udmabuf: number;
  heap: number;
}

function fixture(lab: Lab): Fixture {
  const proc = new Process(lab);
  const heap = proc.open("/dev/dma_heap/system", O_RDWR);
  const alloc = { len: PAGE_SIZE, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
  const swSync = proc.open("/dev/sw_sync");
  const create = { value: 1, name: "f" } as { value: number; name: string; fence?: number };
  proc.ioctl(swSync, SW_SYNC_IOC_CREATE_FENCE, create);
  const memfd = proc.memfd_create("m", MFD_ALLOW_SEALING);
  proc.ftruncate(memfd, PAGE_SIZE);
  const udmabuf = proc.open("/dev/udmabuf", O_RDWR);
  return { lab, proc, buf: alloc.fd, syncFile: create.fence!, swSync, memfd, udmabuf, heap };
}

/** Every call shape: one argument position taking the hostile value. */
const shapes: [string, (f: Fixture, v: unknown) => unknown][] = [
  ["open(v)", (f, v) => f.proc.open(v as string)],
  ["open(path, v)", (f, v) => f.proc.open("/dev/sw_sync", v as number)],
  ["memfd_create(v)", (f, v) => f.proc.memfd_create(v as string)],
  ["memfd_create(name, v)", (f, v) => f.proc.memfd_create("n", v as number)],
  ["ftruncate(v, 0)", (f, v) => f.proc.ftruncate(v as number, 0)],
  ["ftruncate(memfd, v)", (f, v) => f.proc.ftruncate(f.memfd, v as number)],
  ["close(v)", (f, v) => f.proc.close(v as number)],
  ["dup(v)", (f, v) => f.proc.dup(v as number)],
  ["fcntl(v, F_GETFD)", (f, v) => f.proc.fcntl(v as number, F_GETFD)],
  ["fcntl(fd, v)", (f, v) => f.proc.fcntl(f.buf, v as number)],
  ["fcntl(fd, F_SETFD, v)", (f, v) => f.proc.fcntl(f.buf, F_SETFD, v as number)],
  ["fcntl(fd, F_SETFL, v)", (f, v) => f.proc.fcntl(f.buf, F_SETFL, v as number)],
  ["fcntl(memfd, F_ADD_SEALS, v)", (f, v) => f.proc.fcntl(f.memfd, F_ADD_SEALS, v as number)],
  ["ioctl(v, SYNC)", (f, v) => f.proc.ioctl(v as number, DMA_BUF_IOCTL_SYNC, { flags: 1 })],
  ["ioctl(fd, v)", (f, v) => f.proc.ioctl(f.buf, v as number, {})],
  ["DMA_BUF_IOCTL_SYNC v", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_SYNC, v)],
  ["DMA_BUF_IOCTL_SYNC {flags: v}", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_SYNC, { flags: v })],
  ["DMA_BUF_IOCTL_SYNC {timeoutMs: v}", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_SYNC, { flags: 1, timeoutMs: v })],
  ["DMA_BUF_SET_NAME v", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_SET_NAME, v)],
  ["EXPORT_SYNC_FILE v", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, v)],
  ["EXPORT_SYNC_FILE {flags: v}", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, { flags: v, fd: 0 })],
  ["EXPORT_SYNC_FILE frozen", (f) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, Object.freeze({ flags: 1, fd: 0 }))],
  ["IMPORT_SYNC_FILE v", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, v)],
  ["IMPORT_SYNC_FILE {fd: v}", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: 1, fd: v })],
  ["DMA_HEAP_IOCTL_ALLOC v", (f, v) => f.proc.ioctl(f.heap, DMA_HEAP_IOCTL_ALLOC, v)],
  ["DMA_HEAP_IOCTL_ALLOC {len: v}", (f, v) => f.proc.ioctl(f.heap, DMA_HEAP_IOCTL_ALLOC, { len: v, fd: 0, fd_flags: O_RDWR, heap_flags: 0 })],
  ["DMA_HEAP_IOCTL_ALLOC frozen", (f) => f.proc.ioctl(f.heap, DMA_HEAP_IOCTL_ALLOC, Object.freeze({ len: PAGE_SIZE, fd: 0, fd_flags: O_RDWR, heap_flags: 0 }))],
  ["SW_SYNC_IOC_CREATE_FENCE v", (f, v) => f.proc.ioctl(f.swSync, SW_SYNC_IOC_CREATE_FENCE, v)],
  ["SW_SYNC_IOC_CREATE_FENCE {value: v}", (f, v) => f.proc.ioctl(f.swSync, SW_SYNC_IOC_CREATE_FENCE, { value: v, name: "x" })],
  ["SW_SYNC_IOC_CREATE_FENCE {name: v}", (f, v) => f.proc.ioctl(f.swSync, SW_SYNC_IOC_CREATE_FENCE, { value: 3, name: v })],
  ["SW_SYNC_IOC_CREATE_FENCE frozen", (f) => f.proc.ioctl(f.swSync, SW_SYNC_IOC_CREATE_FENCE, Object.freeze({ value: 3, name: "x" }))],
  ["SW_SYNC_IOC_INC v", (f, v) => f.proc.ioctl(f.swSync, SW_SYNC_IOC_INC, v)],
  ["SYNC_IOC_MERGE v", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_MERGE, v)],
  ["SYNC_IOC_MERGE {fd2: v}", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_MERGE, { name: "m", fd2: v })],
  ["SYNC_IOC_MERGE {name: v}", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_MERGE, { name: v, fd2: f.syncFile })],
  ["SYNC_IOC_MERGE {flags: v}", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_MERGE, { name: "m", fd2: f.syncFile, flags: v })],
  ["SYNC_IOC_MERGE frozen", (f) => f.proc.ioctl(f.syncFile, SYNC_IOC_MERGE, Object.freeze({ name: "m", fd2: f.syncFile }))],
  ["SYNC_IOC_FILE_INFO v", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_FILE_INFO, v)],
  ["SYNC_IOC_FILE_INFO {num_fences: v}", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_FILE_INFO, { num_fences: v })],
  ["SYNC_IOC_FILE_INFO {flags: v}", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_FILE_INFO, { num_fences: 0, flags: v })],
  ["SYNC_IOC_FILE_INFO frozen", (f) => f.proc.ioctl(f.syncFile, SYNC_IOC_FILE_INFO, Object.freeze({ num_fences: 0 }))],
  ["SYNC_IOC_SET_DEADLINE v", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_SET_DEADLINE, v)],
  ["SYNC_IOC_SET_DEADLINE {deadline_ns: v}", (f, v) => f.proc.ioctl(f.syncFile, SYNC_IOC_SET_DEADLINE, { deadline_ns: v })],
  ["UDMABUF_CREATE v", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE, v)],
  ["UDMABUF_CREATE {memfd: v}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE, { memfd: v, flags: 0, offset: 0, size: PAGE_SIZE })],
  ["UDMABUF_CREATE {offset: v}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE, { memfd: f.memfd, flags: 0, offset: v, size: PAGE_SIZE })],
  ["UDMABUF_CREATE {size: v}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE, { memfd: f.memfd, flags: 0, offset: 0, size: v })],
  ["UDMABUF_CREATE {flags: v}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE, { memfd: f.memfd, flags: v, offset: 0, size: PAGE_SIZE })],
  ["UDMABUF_CREATE_LIST v", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE_LIST, v)],
  ["UDMABUF_CREATE_LIST {list: v}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE_LIST, { flags: 0, count: 1, list: v })],
  ["UDMABUF_CREATE_LIST {list: [v]}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE_LIST, { flags: 0, count: 1, list: [v] })],
  ["UDMABUF_CREATE_LIST {count: v}", (f, v) => f.proc.ioctl(f.udmabuf, UDMABUF_CREATE_LIST, { flags: 0, count: v, list: [{ memfd: f.memfd, offset: 0, size: PAGE_SIZE }] })],
  ["lseek(fd, v)", (f, v) => f.proc.lseek(f.buf, v as number, SEEK_SET)],
  ["lseek(fd, 0, v)", (f, v) => f.proc.lseek(f.buf, 0, v as number)],
  ["read(fd, v)", (f, v) => f.proc.read(f.buf, v as Uint8Array)],
  ["read(fd, buf, {timeoutMs: v})", (f, v) => f.proc.read(f.buf, new Uint8Array(4), { timeoutMs: v as number })],
  ["read(fd, buf, v)", (f, v) => f.proc.read(f.buf, new Uint8Array(4), v as object)],
  ["write(fd, v)", (f, v) => f.proc.write(f.buf, v as Uint8Array)],
  ["pread(fd, buf, v)", (f, v) => f.proc.pread(f.buf, new Uint8Array(4), v as number)],
  ["pwrite(fd, buf, v)", (f, v) => f.proc.pwrite(f.buf, new Uint8Array(4), v as number)],
  ["readv(fd, v)", (f, v) => f.proc.readv(f.buf, v as Uint8Array[])],
  ["writev(fd, v)", (f, v) => f.proc.writev(f.buf, v as Uint8Array[])],
  ["copy_file_range(v, 0, fd, 0, 4)", (f, v) => f.proc.copy_file_range(v as number, 0, f.buf, 0, 4)],
  ["copy_file_range(fd, v, fd, 0, 4)", (f, v) => f.proc.copy_file_range(f.buf, v as number, f.buf, 0, 4)],
  ["copy_file_range(fd, 0, fd, 0, v)", (f, v) => f.proc.copy_file_range(f.buf, 0, f.buf, 0, v as number)],
  ["copy_file_range(fd, 0, fd, 0, 4, v)", (f, v) => f.proc.copy_file_range(f.buf, 0, f.buf, 0, 4, v as number)],
  ["DMA_BUF_IOCTL_RW_FILE v", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_RW_FILE, v)],
  ["DMA_BUF_IOCTL_RW_FILE {flags: v}", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_RW_FILE, { flags: v, fd: f.memfd, file_offset: 0, buf_offset: 0, buf_len: 4 })],
  ["DMA_BUF_IOCTL_RW_FILE {fd: v}", (f, v) => f.proc.ioctl(f.buf, DMA_BUF_IOCTL_RW_FILE, { flags: 1, fd: v, file_offset: 0, buf_offset: 0, buf_len: 4 })],
  ["mmap(fd, v, len)", (f, v) => f.proc.mmap(f.buf, v as number, PAGE_SIZE)],
  ["mmap(fd, 0, v)", (f, v) => f.proc.mmap(f.buf, 0, v as number)],
  ["munmap(v)", (f, v) => f.proc.munmap(v as never)],
  ["poll(v)", (f, v) => f.proc.poll(v as never)],
  ["poll([v])", (f, v) => f.proc.poll([v] as never)],
  ["poll([{fd, events: v}])", (f, v) => f.proc.poll([{ fd: f.buf, events: v as number }])],
  ["poll(fds, v)", (f, v) => f.proc.poll([{ fd: f.buf, events: 1 }], v as number)],
  ["fdinfo(v)", (f, v) => f.proc.fdinfo(v as number)],
  ["exportFd(v)", (f, v) => f.proc.exportFd(v as number)],
  ["importFd(v)", (f, v) => f.proc.importFd(v as never)],
  ["importFd({kind: dma-buf, offset: v})", (f, v) => f.proc.importFd({ kind: "dma-buf", offset: v as number, generation: 0, flags: 0 })],
  ["importFd({kind: sync_file, offset: v})", (f, v) => f.proc.importFd({ kind: "sync_file", offset: v as number, generation: 0, flags: 0 })],
  ["importFd({kind: sw_sync, offset: v})", (f, v) => f.proc.importFd({ kind: "sw_sync", offset: v as number, generation: 0, flags: 0 })],
  ["importFd({kind: v})", (f, v) => f.proc.importFd({ kind: v as "dma-buf", offset: 0, generation: 0, flags: 0 })],
  ["importFd({flags: v})", (f, v) => f.proc.importFd({ ...f.proc.exportFd(f.buf), flags: v as number })],
  ["lab.alloc(v)", (f, v) => f.lab.free(f.lab.alloc(v as number))],
  ["lab.alloc(n, v)", (f, v) => f.lab.free(f.lab.alloc(64, v as object))],
  ["lab.free(v)", (f, v) => f.lab.free(v as Uint8Array)],
  ["lab.copy(v, src)", (f, v) => f.lab.copy(v as Uint8Array, new Uint8Array(4))],
  ["lab.copy(dst, v)", (f, v) => f.lab.copy(new Uint8Array(4), v as Uint8Array)],
  ["lab.copy(dst, src, v)", (f, v) => f.lab.copy(new Uint8Array(4), new Uint8Array(4), v as never)],
  ["lab.udmabuf(v)", (f, v) => f.lab.udmabuf(v as never).put()],
  ["lab.udmabuf([v])", (f, v) => f.lab.udmabuf([v] as never).put()],
  ["lab.heap(v)", (f, v) => f.lab.heap(v as never)],
  ["lab.exporter(v)", (f, v) => f.lab.exporter(v as never)],
  ["lab.memfd(v)", (f, v) => f.lab.memfd(v as string).close()],
  ["heap.alloc(v)", (f, v) => f.lab.heap("system").alloc(v as number).close()],
];

/** The object API's DmaBuf methods. */
const objectShapes: [string, (b: DmaBuf, v: unknown) => unknown][] = [
  ["read(v)", (b, v) => b.read(v as Uint8Array)],
  ["read(buf, v)", (b, v) => b.read(new Uint8Array(4), v as number)],
  ["write(v)", (b, v) => b.write(v as Uint8Array)],
  ["write(buf, v)", (b, v) => b.write(new Uint8Array(4), v as number)],
  ["readv(v)", (b, v) => b.readv(v as Uint8Array[])],
  ["writev(v)", (b, v) => b.writev(v as Uint8Array[])],
  ["seek(v)", (b, v) => b.seek(v as number)],
  ["seek(0, v)", (b, v) => b.seek(0, v as 0)],
  ["position = v", (b, v) => { b.position = v as number; }],
  ["name = v", (b, v) => { b.name = v as string; }],
  ["beginCpuAccess(v)", (b, v) => b.beginCpuAccess(v as "rw")],
  ["beginCpuAccess(rw, v)", (b, v) => b.beginCpuAccess("rw", v as number)],
  ["endCpuAccess(v)", (b, v) => b.endCpuAccess(v as "rw")],
  ["map(v)", (b, v) => b.unmap(b.map(v as number))],
  ["map(0, v)", (b, v) => b.unmap(b.map(0, v as number))],
  ["unmap(v)", (b, v) => b.unmap(v as never)],
  ["exportSyncFile(v)", (b, v) => b.exportSyncFile(v as "rw").close()],
  ["importSyncFile(v)", (b, v) => b.importSyncFile(v as never)],
];

/** A device's data and control plane. */
const deviceShapes: [string, (d: Device, b: DeviceBuffer, v: unknown) => unknown][] = [
  ["submit(v)", (d, _b, v) => d.submit(v as never)],
  ["submit({kind: v})", (d, _b, v) => d.submit({ kind: v } as never)],
  ["submit(copy src: v)", (d, b, v) => d.submit({ kind: "copy", src: v, dst: b } as never)],
  ["submit(fill value: v)", (d, b, v) => d.submit({ kind: "fill", dst: b, value: v } as never)],
  ["submit(fill {offset: v})", (d, b, v) => d.submit({ kind: "fill", dst: { buffer: b, offset: v }, value: 1 } as never)],
  ["submit(fill {length: v})", (d, b, v) => d.submit({ kind: "fill", dst: { buffer: b, length: v }, value: 1 } as never)],
  ["submit(inFences: v)", (d, _b, v) => d.submit({ kind: "nop", inFences: v } as never)],
  ["submit(inFences: [v])", (d, _b, v) => d.submit({ kind: "nop", inFences: [v] } as never)],
  ["submit(kernel: v)", (d, _b, v) => d.submit({ kind: "kernel", kernel: v, buffers: [] } as never)],
  ["submit(kernel buffers: v)", (d, _b, v) => d.submit({ kind: "kernel", kernel: 1, buffers: v } as never)],
  ["submit(kernel buffers: [v])", (d, _b, v) => d.submit({ kind: "kernel", kernel: 1, buffers: [v] } as never)],
  ["submit(kernel buffers: [{range: v}])", (d, _b, v) => d.submit({ kind: "kernel", kernel: 1, buffers: [{ range: v, access: "read" }] } as never)],
  ["submit(kernel buffers: [{access: v}])", (d, b, v) => d.submit({ kind: "kernel", kernel: 1, buffers: [{ range: b, access: v }] } as never)],
  ["submit(kernel args: v)", (d, _b, v) => d.submit({ kind: "kernel", kernel: 1, buffers: [], args: v } as never)],
  ["submit(bypassFences: v)", (d, _b, v) => d.submit({ kind: "nop", bypassFences: v } as never)],
  ["attach(v)", (d, _b, v) => d.attach(v as never)],
  ["attach(buf, v)", (d, b, v) => d.attach(b.buffer, v as never).then((x) => d.detach(x))],
  ["detach(v)", (d, _b, v) => d.detach(v as never)],
  ["map(v)", (d, _b, v) => d.map(v as never)],
];

/** Runs fn (sync or async) and describes what it threw if that was not a DmaBufError, else undefined. */
async function notADmaBufError(fn: () => unknown): Promise<string | undefined> {
  try {
    const r = fn();
    const settled = r instanceof Promise ? await r : r;
    if (settled !== null && typeof settled === "object" && "put" in settled && typeof settled.put === "function") (settled as { put(): void }).put();
  } catch (e) {
    if (!isDmaBufError(e)) return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  return undefined;
}

function isDmaBufError(e: unknown): boolean {
  return e instanceof DmaBufError && typeof e.errno === "number" && typeof e.syscall === "string" && e.message.length > 0;
}

describe("hostile arguments", () => {
  test("every call shape with every hostile value: a DmaBufError or success, never a TypeError, and a failure leaks nothing", async () => {
    const lab = await labs.create();
    const f = fixture(lab);
    const findings: string[] = [];
    const memory = () => {
      const s = lab.stats();
      return `${s.pages.freeBytes}/${s.user.freeBytes}/${s.sync.freeBytes + s.sync.cachedBytes}`;
    };
    try {
      for (const [shape, call] of shapes) {
        for (const [name, value] of hostile) {
          const fds = f.proc.fds.join(",");
          const before = memory();
          try {
            call(f, value);
          } catch (e) {
            if (!isDmaBufError(e)) {
              findings.push(`${shape} with ${name}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
              continue;
            }
            const after = f.proc.fds.join(",");
            if (after !== fds) findings.push(`${shape} with ${name}: failed (${(e as Error).message}) but the fds went from [${fds}] to [${after}]`);
            const now = memory();
            if (now !== before) findings.push(`${shape} with ${name}: failed (${(e as Error).message}) but the free memory went from ${before} to ${now}`);
            continue;
          }
          // A success: close what it opened, so the next shape starts from the same table.
          for (const fd of f.proc.fds) if (!fds.split(",").includes(String(fd))) f.proc.close(fd);
        }
      }
    } finally {
      f.proc.closeAll();
    }
    expect(findings).toEqual([]);
  });

  test("the object API's DmaBuf methods with every hostile value: a DmaBufError or success, never a TypeError", async () => {
    const lab = await labs.create();
    const buf = lab.heap("system").alloc(PAGE_SIZE);
    const findings: string[] = [];
    try {
      for (const [shape, call] of objectShapes) {
        for (const [name, value] of hostile) {
          const bad = await notADmaBufError(() => call(buf, value));
          if (bad !== undefined) findings.push(`${shape} with ${name}: ${bad}`);
        }
      }
    } finally {
      buf.close();
    }
    expect(findings).toEqual([]);
  });

  test("a device's submit, attach, detach and map with every hostile value: a DmaBufError or success, never a TypeError", async () => {
    const lab = await labs.create();
    const dev: Device = await lab.spawnDevice({ name: "hostile" });
    const findings: string[] = [];
    try {
      const buf = lab.exporter("system").alloc(PAGE_SIZE);
      const b = await dev.attach(buf);
      buf.put();
      for (const [shape, call] of deviceShapes) {
        for (const [name, value] of hostile) {
          const bad = await notADmaBufError(() => call(dev, b, value));
          if (bad !== undefined) findings.push(`${shape} with ${name}: ${bad}`);
        }
      }
      // undefined is every option's default (a device that starts): the others, which must fail.
      for (const [name, value] of hostile.filter(([, v]) => v !== undefined)) {
        for (const option of ["name", "coherent", "jobTimeoutMs", "ringEntries", "iovaBytes", "submitTimeoutMs"]) {
          const bad = await notADmaBufError(() => lab.spawnDevice({ [option]: value }).then((d) => d.shutdown()));
          if (bad !== undefined) findings.push(`spawnDevice({${option}: v}) with ${name}: ${bad}`);
        }
        const bad = await notADmaBufError(() => lab.spawnDevice(value as never).then((d) => d.shutdown()));
        if (bad !== undefined) findings.push(`spawnDevice(v) with ${name}: ${bad}`);
      }
    } finally {
      await dev.shutdown({ drain: false });
    }
    expect(findings).toEqual([]);
  }, 120_000);
});

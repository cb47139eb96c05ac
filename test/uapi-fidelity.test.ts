/*
 * Kernel rules the uapi follows, each test named after the kernel function
 * whose rule it reproduces: the VFS's access-mode checks (vfs_read,
 * vfs_write, do_mmap), sw_sync_ioctl_get_deadline, udmabuf_create's EBADFD,
 * the standard streams every process has, memfd mmap with its seals
 * (shmem_mmap, memfd_check_seals_mmap, mapping_deny_writable), and every
 * Async twin reporting its errors through its Promise.
 */
import { describe, expect, test } from "vitest";
import {
  DmaBuf, errnoNumbers, io_uring_cqe_seen, io_uring_get_sqe, io_uring_prep_read, io_uring_prep_write, io_uring_queue_exit,
  io_uring_queue_init, io_uring_submit, io_uring_wait_cqe, type Lab,
} from "../src/index.js";
import { Process } from "../src/uapi/process.js";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_SYNC_READ, O_NONBLOCK, POLLIN, SW_SYNC_IOC_INC, DMA_HEAP_IOCTL_ALLOC, F_ADD_SEALS, MAP_PRIVATE, MAP_SHARED,
  MFD_ALLOW_SEALING, O_ACCMODE, O_CLOEXEC, O_RDONLY, O_RDWR, O_WRONLY, PROT_READ, PROT_WRITE, SEEK_CUR, SEEK_SET,
  SW_SYNC_GET_DEADLINE, SW_SYNC_IOC_CREATE_FENCE, SYNC_IOC_MERGE, SYNC_IOC_SET_DEADLINE, UDMABUF_CREATE,
  type dma_buf_export_sync_file, type sw_sync_create_fence_data, type sw_sync_get_deadline, type sync_merge_data,
} from "../src/uapi/uapi.js";
import { F_SEAL_FUTURE_WRITE, F_SEAL_SHRINK, F_SEAL_WRITE } from "../src/dmabuf/memfd.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { CANARY, brokenCanary, guard } from "./helpers/canary.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const MiB = 1024 * 1024;
const EBADF_ERRNO = errnoNumbers.EBADF;
const labs = new LabSet({ memoryBytes: 64 * MiB });
cleanUpAfterEach({ labs });

function alloc(proc: Process, len: number, fdFlags: number): number {
  const heap = proc.open("/dev/dma_heap/system", O_RDWR | O_CLOEXEC);
  const data = { len, fd: 0, fd_flags: fdFlags, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, data);
  proc.close(heap);
  return data.fd;
}

/** Everything a refused call must leave alone: the bytes, the position, the buffer's fences, the heaps. */
function snapshot(lab: Lab, proc: Process, fd: number, rw: number) {
  const bytes = new Uint8Array(PAGE_SIZE);
  const pos = proc.lseek(fd, 0, SEEK_CUR);
  proc.pread(rw, bytes, 0);
  const { sync, user } = lab.stats();
  return { bytes: [...bytes], pos, sync: sync.freeBytes, user: user.freeBytes };
}

describe("vfs_read / vfs_write: the access mode is checked first (EBADF)", () => {
  test("every write-family call on an O_RDONLY fd and every read-family call on an O_WRONLY fd is EBADF, changing nothing", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const rw = alloc(proc, PAGE_SIZE, O_RDWR);
    proc.pwrite(rw, new Uint8Array(PAGE_SIZE).fill(7), 0);
    const token = proc.exportFd(rw);
    const ro = proc.importFd({ ...token, flags: O_RDONLY });
    const wo = proc.importFd({ ...token, flags: O_WRONLY });
    proc.lseek(ro, 16, SEEK_SET);
    proc.lseek(wo, 16, SEEK_SET);
    const data = new Uint8Array(64).fill(0xee);
    for (const [fd, calls] of [
      [ro, [
        () => proc.write(ro, data), () => proc.pwrite(ro, data, 0), () => proc.writev(ro, [data, data]),
      ]],
      [wo, [
        () => proc.read(wo, data), () => proc.pread(wo, data, 0), () => proc.readv(wo, [data]),
      ]],
    ] as const) {
      const before = snapshot(lab, proc, fd, rw);
      for (const call of calls) expectErrno(call, "EBADF");
      expect(snapshot(lab, proc, fd, rw)).toEqual(before);
    }
    const before = snapshot(lab, proc, ro, rw);
    await expectErrnoAsync(() => proc.writeAsync(ro, data), "EBADF");
    await expectErrnoAsync(() => proc.writevAsync(ro, [data], 0), "EBADF");
    await expectErrnoAsync(() => proc.readAsync(wo, data), "EBADF");
    await expectErrnoAsync(() => proc.readvAsync(wo, [data], 0), "EBADF");
    expect(snapshot(lab, proc, ro, rw)).toEqual(before);
    expect(data.every((b) => b === 0xee)).toBe(true);
    // The allowed directions work on the same descriptions.
    expect(proc.pread(ro, data, 0)).toBe(64);
    expect(proc.pwrite(wo, data, 0)).toBe(64);
    proc.closeAll();
  });

  test("a dma-heap buffer allocated with fd_flags O_RDONLY cannot be written; access mode 3 (ioctl only) neither read nor written", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const ro = alloc(proc, PAGE_SIZE, O_RDONLY);
    const none = alloc(proc, PAGE_SIZE, O_ACCMODE);
    const buf = new Uint8Array(8);
    expectErrno(() => proc.write(ro, buf), "EBADF");
    expect(proc.read(ro, buf)).toBe(8);
    expectErrno(() => proc.write(none, buf), "EBADF");
    expectErrno(() => proc.read(none, buf), "EBADF");
    const e = expectErrno(() => proc.pwrite(ro, buf, 0), "EBADF");
    expect(e.syscall).toBe("pwrite");
    expect(e.message).toMatch(/not open for writing \(access mode O_RDONLY\)/);
    proc.closeAll();
  });
});

describe("io_read / io_write: io_uring's READ and WRITE check the access mode too", () => {
  test("a WRITE on an O_RDONLY dma-buf fd and a READ on an O_WRONLY one complete with -EBADF; the bytes stay", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const rw = alloc(proc, PAGE_SIZE, O_RDWR);
    const token = proc.exportFd(rw);
    const ro = proc.importFd({ ...token, flags: O_RDONLY });
    const wo = proc.importFd({ ...token, flags: O_WRONLY });
    const ring = io_uring_queue_init(proc, 4);
    const buf = lab.alloc(64);
    buf.fill(0xee);
    const results: number[] = [];
    for (const [fd, write] of [[ro, true], [wo, false], [ro, false]] as const) {
      const sqe = io_uring_get_sqe(ring)!;
      (write ? io_uring_prep_write : io_uring_prep_read)(sqe, fd, buf, 64, 0);
      expect(io_uring_submit(ring)).toBe(1);
      const { err, cqe } = io_uring_wait_cqe(ring);
      expect(err).toBe(0);
      results.push(cqe!.res);
      io_uring_cqe_seen(ring, cqe!);
    }
    expect(results).toEqual([-EBADF_ERRNO, -EBADF_ERRNO, 64]);
    expect(buf.every((b) => b === 0)).toBe(true); // the read brought the buffer's zeros; the write moved nothing
    io_uring_queue_exit(ring);
    proc.closeAll();
  });
});

describe("do_mmap: the access mode against prot and flags", () => {
  test("a writable shared mapping of an O_RDONLY fd is EACCES; PROT_READ maps; O_WRONLY never maps; MAP_PRIVATE and bad flags EINVAL", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const rw = alloc(proc, 2 * PAGE_SIZE, O_RDWR);
    const token = proc.exportFd(rw);
    const ro = proc.importFd({ ...token, flags: O_RDONLY });
    const wo = proc.importFd({ ...token, flags: O_WRONLY });
    const count = () => proc.fdinfo(rw).match(/count:\t(\d+)/)![1];
    const before = count();
    expectErrno(() => proc.mmap(ro, 0, PAGE_SIZE), "EACCES");
    expectErrno(() => proc.mmap(ro, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED), "EACCES");
    expectErrno(() => proc.mmap(wo, 0, PAGE_SIZE, PROT_WRITE), "EACCES");
    expectErrno(() => proc.mmap(wo, 0, PAGE_SIZE, PROT_READ), "EACCES");
    expectErrno(() => proc.mmap(rw, 0, PAGE_SIZE, PROT_READ, MAP_PRIVATE), "EINVAL");
    expectErrno(() => proc.mmap(rw, 0, PAGE_SIZE, PROT_READ, 0), "EINVAL");
    expectErrno(() => proc.mmap(rw, 0, PAGE_SIZE, 0x8), "EINVAL");
    expect(count()).toBe(before);
    const map = proc.mmap(ro, 0, PAGE_SIZE, PROT_READ);
    expect(map.prot).toBe(PROT_READ);
    expect(map.views.reduce((n, v) => n + v.byteLength, 0)).toBe(PAGE_SIZE);
    proc.munmap(map);
    proc.closeAll();
  });
});

describe("sw_sync_ioctl_get_deadline", () => {
  function swSync(proc: Process) {
    const tl = proc.open("/dev/sw_sync");
    const point = (value: number): number => {
      const data: sw_sync_create_fence_data = { value, name: "pt" };
      proc.ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, data);
      return data.fence!;
    };
    const getDeadline = (fence_fd: number, extra: Partial<sw_sync_get_deadline> = {}): number => {
      const data: sw_sync_get_deadline = { fence_fd, ...extra };
      proc.ioctl(tl, SW_SYNC_GET_DEADLINE, data);
      return data.deadline_ns!;
    };
    return { tl, point, getDeadline };
  }

  test("the earliest deadline set; ENOENT before any", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const { point, getDeadline } = swSync(proc);
    const fd = point(1);
    expectErrno(() => getDeadline(fd), "ENOENT");
    proc.ioctl(fd, SYNC_IOC_SET_DEADLINE, { deadline_ns: 2_000_000 });
    expect(getDeadline(fd)).toBe(2_000_000);
    proc.ioctl(fd, SYNC_IOC_SET_DEADLINE, { deadline_ns: 1_000_000 });
    proc.ioctl(fd, SYNC_IOC_SET_DEADLINE, { deadline_ns: 3_000_000 });
    expect(getDeadline(fd)).toBe(1_000_000);
    // A point of another sw_sync timeline answers too (the kernel checks the fence's ops only).
    const other = swSync(proc);
    const fd2 = other.point(5);
    proc.ioctl(fd2, SYNC_IOC_SET_DEADLINE, { deadline_ns: 42 });
    expect(getDeadline(fd2)).toBe(42);
    proc.closeAll();
  });

  test("the pad rule: deadline_ns or pad non-zero on input is EINVAL; fence_fd not a sync_file EINVAL; not an sw_sync point EINVAL", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const { tl, point, getDeadline } = swSync(proc);
    const a = point(1);
    const b = swSync(proc).point(2);
    proc.ioctl(a, SYNC_IOC_SET_DEADLINE, { deadline_ns: 1000 });
    expectErrno(() => getDeadline(a, { deadline_ns: 1 }), "EINVAL");
    expectErrno(() => getDeadline(a, { pad: 1 }), "EINVAL");
    expectErrno(() => getDeadline(tl), "EINVAL");
    expectErrno(() => getDeadline(0), "EINVAL");
    expectErrno(() => getDeadline(999), "EINVAL");
    // A merge of points of two timelines is an array, and a dma-buf's export a stub: neither is an sw_sync point.
    const merge: sync_merge_data = { name: "ab", fd2: b };
    proc.ioctl(a, SYNC_IOC_MERGE, merge);
    expectErrno(() => getDeadline(merge.fence!), "EINVAL");
    const buf = alloc(proc, PAGE_SIZE, O_RDWR);
    const exp: dma_buf_export_sync_file = { flags: DMA_BUF_SYNC_READ };
    proc.ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, exp);
    expectErrno(() => getDeadline(exp.fd!), "EINVAL");
    expect(getDeadline(a)).toBe(1000);
    proc.closeAll();
  });
});

describe("the standard streams: fds 0, 1 and 2", () => {
  test("every Process has them; new fds start at 3 and never take 0-2, even once closed", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    expect(proc.fds).toEqual([0, 1, 2]);
    expect(proc.fdinfo(0)).toBe("pos:\t0\nflags:\t00\n");
    expect(proc.fdinfo(2)).toBe("pos:\t0\nflags:\t01\n");
    proc.close(0);
    expect(proc.open("/dev/sw_sync")).toBe(3);
    expect(proc.dup(1)).toBe(4);
    expect(proc.fds).toEqual([1, 2, 3, 4]);
    proc.closeAll();
    expect(proc.fds).toEqual([]);
  });

  test("they answer as stdio would: ENOTTY, ESPIPE, ENODEV; stdin reads end of file, stdout and stderr take writes; the access modes hold", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const buf = new Uint8Array(16);
    for (const fd of [0, 1, 2]) {
      expectErrno(() => proc.ioctl(fd, DMA_HEAP_IOCTL_ALLOC, {}), "ENOTTY");
      expectErrno(() => proc.lseek(fd, 0, SEEK_SET), "ESPIPE");
    }
    expectErrno(() => proc.mmap(0, 0, PAGE_SIZE, PROT_READ), "ENODEV");
    expectErrno(() => proc.mmap(1, 0, PAGE_SIZE, PROT_READ), "EACCES");
    expect(proc.read(0, buf)).toBe(0);
    expect(proc.write(1, buf)).toBe(16);
    expect(proc.writev(2, [buf, buf])).toBe(32);
    expectErrno(() => proc.write(0, buf), "EBADF");
    expectErrno(() => proc.read(1, buf), "EBADF");
    expectErrno(() => proc.pwrite(1, buf, 0), "ESPIPE");
    expectErrno(() => proc.exportFd(0), "EINVAL");
    proc.closeAll();
  });
});

describe("udmabuf_create (check_memfd_seals): a memfd item that is not an open memfd is EBADFD", () => {
  test("a closed fd, a never-opened fd and stdin are EBADFD; nothing is made", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const dev = proc.open("/dev/udmabuf", O_RDWR);
    const memfd = proc.memfd_create("items", MFD_ALLOW_SEALING);
    proc.ftruncate(memfd, PAGE_SIZE);
    proc.fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK);
    const closed = proc.memfd_create("closed", MFD_ALLOW_SEALING);
    proc.close(closed);
    const fds = proc.fds;
    for (const fd of [closed, 500, 0, 1]) {
      expectErrno(() => proc.ioctl(dev, UDMABUF_CREATE, { memfd: fd, flags: 0, offset: 0, size: PAGE_SIZE }), "EBADFD");
    }
    expect(proc.fds).toEqual(fds);
    expect(proc.ioctl(dev, UDMABUF_CREATE, { memfd, flags: 0, offset: 0, size: PAGE_SIZE })).toBe(Math.max(...fds) + 1);
    proc.closeAll();
  });
});

describe("memfd mmap (shmem_mmap) and its seals", () => {
  test("udmabuf selftest shape: write through a MAP_SHARED mapping of the memfd, then read it through the udmabuf", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const memfd = proc.memfd_create("udmabuf-test", MFD_ALLOW_SEALING);
    const pages = 4;
    proc.ftruncate(memfd, pages * PAGE_SIZE);
    const map = proc.mmap(memfd, 0, pages * PAGE_SIZE);
    expect(map.views.reduce((n, v) => n + v.byteLength, 0)).toBe(pages * PAGE_SIZE);
    let k = 0;
    for (const v of map.views) for (let i = 0; i < v.length; i++) v[i] = (k++ * 7) & 0xff;
    proc.fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK);
    const dev = proc.open("/dev/udmabuf", O_RDWR);
    const dmabuf = proc.ioctl(dev, UDMABUF_CREATE, { memfd, flags: 0, offset: PAGE_SIZE, size: 2 * PAGE_SIZE });
    const area = new Uint8Array(2 * PAGE_SIZE + 128);
    const g = guard(area, 64, 2 * PAGE_SIZE);
    const into = area.subarray(g.at, g.at + g.len);
    expect(proc.pread(dmabuf, into, 0)).toBe(2 * PAGE_SIZE);
    expect(brokenCanary(g)).toBeUndefined();
    expect([...into].every((b, i) => b === ((PAGE_SIZE + i) * 7 & 0xff))).toBe(true);
    // And the other way: a write through the dma-buf shows in the mapping.
    proc.pwrite(dmabuf, new Uint8Array([CANARY ^ 0xff]), 0);
    const flat = map.views.flatMap((v) => [...v]);
    expect(flat[PAGE_SIZE]).toBe(CANARY ^ 0xff);
    proc.munmap(map);
    proc.closeAll();
  });

  test("F_SEAL_WRITE and F_SEAL_FUTURE_WRITE refuse a writable shared mapping (EPERM); a read-only one maps", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    for (const seal of [F_SEAL_WRITE, F_SEAL_FUTURE_WRITE]) {
      const memfd = proc.memfd_create("sealed", MFD_ALLOW_SEALING);
      proc.ftruncate(memfd, PAGE_SIZE);
      proc.fcntl(memfd, F_ADD_SEALS, seal);
      expectErrno(() => proc.mmap(memfd, 0, PAGE_SIZE), "EPERM");
      const map = proc.mmap(memfd, 0, PAGE_SIZE, PROT_READ);
      expect(map.views[0].byteLength).toBe(PAGE_SIZE);
      proc.munmap(map);
    }
    proc.closeAll();
  });

  test("mapping_deny_writable: F_SEAL_WRITE while a writable mapping exists is EBUSY (F_SEAL_FUTURE_WRITE is not); shrinking a mapped memfd is EBUSY", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const memfd = proc.memfd_create("busy", MFD_ALLOW_SEALING);
    proc.ftruncate(memfd, 2 * PAGE_SIZE);
    const map = proc.mmap(memfd, 0, 2 * PAGE_SIZE);
    expectErrno(() => proc.fcntl(memfd, F_ADD_SEALS, F_SEAL_WRITE), "EBUSY");
    expectErrno(() => proc.ftruncate(memfd, PAGE_SIZE), "EBUSY");
    proc.ftruncate(memfd, 3 * PAGE_SIZE);
    proc.fcntl(memfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE);
    proc.munmap(map);
    proc.fcntl(memfd, F_ADD_SEALS, F_SEAL_WRITE);
    proc.ftruncate(memfd, PAGE_SIZE);
    expectErrno(() => proc.mmap(memfd, 0, 2 * PAGE_SIZE, PROT_READ), "EINVAL");
    expectErrno(() => proc.mmap(memfd, 100, PAGE_SIZE, PROT_READ), "EINVAL");
    proc.closeAll();
  });
});

describe("drm_sched's rule: a blocked write publishes its fence before it waits (a difference the lab keeps)", () => {
  test("one thread: a read issued after an unawaited writeAsync waits for that write, which waits for its fences", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const buf = alloc(proc, PAGE_SIZE, O_RDWR);
    const tl = proc.open("/dev/sw_sync");
    const point: sw_sync_create_fence_data = { value: 1 };
    proc.ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, point);
    // A pending reader (a device, say) that the write must wait for.
    proc.ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_READ, fd: point.fence! });
    const events: string[] = [];
    const written = proc.writeAsync(buf, new Uint8Array([1, 2, 3]), 0).then((n) => events.push(`write ${n}`));
    // The write's own fence is in the buffer already: readers now wait for it.
    expect(proc.poll([{ fd: buf, events: POLLIN }])).toBe(0);
    const nonblocking = proc.importFd({ ...proc.exportFd(buf), flags: O_RDWR | O_NONBLOCK });
    expectErrno(() => proc.pread(nonblocking, new Uint8Array(3), 0), "EAGAIN");
    const back = new Uint8Array(3);
    const read = proc.readAsync(buf, back, 0).then((n) => events.push(`read ${n}`));
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual([]);
    proc.ioctl(tl, SW_SYNC_IOC_INC, 1);
    await Promise.all([written, read]);
    expect(events).toEqual(["write 3", "read 3"]);
    expect([...back]).toEqual([1, 2, 3]);
    proc.closeAll();
  });
});

describe("every Async twin reports every error through its Promise", () => {
  test("Process and DmaBuf: a bad fd (or a closed DmaBuf) is a rejected Promise, never a synchronous throw", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const bad = 77;
    const buf = new Uint8Array(8);
    const calls: Record<string, () => Promise<unknown>> = {
      ioctlAsync: () => proc.ioctlAsync(bad, 0),
      readAsync: () => proc.readAsync(bad, buf),
      writeAsync: () => proc.writeAsync(bad, buf),
      readvAsync: () => proc.readvAsync(bad, [buf]),
      writevAsync: () => proc.writevAsync(bad, [buf]),
      pollAsync: () => proc.pollAsync([{ fd: 3, events: 1 }], Number.NaN),
    };
    const dmabuf = new DmaBuf(proc, alloc(proc, PAGE_SIZE, O_RDWR));
    dmabuf.close();
    for (const name of ["readAsync", "writeAsync", "readvAsync", "writevAsync", "beginCpuAccessAsync"] as const) {
      calls[`DmaBuf.${name}`] = () => (dmabuf[name] as (...a: unknown[]) => Promise<unknown>)(name.startsWith("read") || name.startsWith("write") ? (name.endsWith("vAsync") ? [buf] : buf) : "rw");
    }
    // Every *Async method of both classes is covered.
    const asyncNames = (proto: object) => Object.getOwnPropertyNames(proto).filter((n) => n.endsWith("Async"));
    expect(asyncNames(Process.prototype).sort()).toEqual(Object.keys(calls).filter((k) => !k.includes(".")).sort());
    expect(asyncNames(DmaBuf.prototype).map((n) => `DmaBuf.${n}`).sort()).toEqual(Object.keys(calls).filter((k) => k.includes(".")).sort());
    for (const [name, call] of Object.entries(calls)) {
      let promise: Promise<unknown> | undefined;
      expect(() => { promise = call(); }, name).not.toThrow();
      const e = await expectErrnoAsync(() => promise!, name === "pollAsync" ? "EINVAL" : "EBADF");
      expect(e.message.length, name).toBeGreaterThan(0);
    }
    proc.closeAll();
  });
});

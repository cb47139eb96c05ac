/*
 * The dmabuf-heaps selftests (tools/testing/selftests/dmabuf-heaps) through
 * the uapi: alloc_and_import, alloc_zeroed, alloc_compat and alloc_errors,
 * on every heap, with each failure checked to change nothing (the fd table,
 * the page pool, the sync heap).
 */
import { describe, expect, test } from "vitest";
import {
  DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START, DMA_HEAP_IOCTL_ALLOC, F_GETFD, F_GETFL,
  FD_CLOEXEC, O_CLOEXEC, O_RDONLY, O_RDWR, Process, SEEK_END, _IOWR, DMA_HEAP_IOC_MAGIC, dmaHeapAllocRequest,
  heapNames, type Lab, type dma_heap_allocation_data,
  F_ADD_SEALS, F_GET_SEALS, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, UDMABUF_CREATE, UDMABUF_CREATE_LIST,
  UDMABUF_FLAGS_CLOEXEC, type udmabuf_create, type udmabuf_create_list,
} from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const labs = new LabSet({ memoryBytes: 128 * MiB, poolBytes: 64 * MiB });
cleanUpAfterEach({ labs });

/** What a failed call must leave alone. */
function state(lab: Lab, proc: Process) {
  const { pages, sync, user } = lab.stats();
  return { fds: proc.fds, pagesFree: pages.freeBytes, freeBlocks: pages.freeBlocks, syncFree: sync.freeBytes, userFree: user.freeBytes };
}

/** The selftests' dmabuf_heap_alloc_fdflags: fd 0 on input, returns the new fd. */
function alloc(proc: Process, heapFd: number, len: number, fdFlags = O_RDWR | O_CLOEXEC, heapFlags = 0): number {
  const data: dma_heap_allocation_data = { len, fd: 0, fd_flags: fdFlags, heap_flags: heapFlags };
  expect(proc.ioctl(heapFd, DMA_HEAP_IOCTL_ALLOC, data)).toBe(0);
  return data.fd;
}

/** Every byte of the buffer behind fd, through a fresh mapping bracketed by SYNC. */
function contents(proc: Process, fd: number): Uint8Array {
  const size = proc.lseek(fd, 0, SEEK_END);
  const m = proc.mmap(fd, 0, size);
  try {
    proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW });
    const out = new Uint8Array(size);
    let at = 0;
    for (const v of m.views) { out.set(v, at); at += v.length; }
    proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW });
    return out;
  } finally {
    proc.munmap(m);
  }
}

describe.each(heapNames)("dmabuf-heaps selftests on %s", (heap) => {
  async function setup() {
    const lab = await labs.create();
    const proc = new Process(lab);
    const heapFd = proc.open(`/dev/dma_heap/${heap}`, O_RDWR);
    return { lab, proc, heapFd };
  }

  test("alloc_and_import: 1 MiB, mmap, SYNC START|RW, fill, SYNC END", async () => {
    const { lab, proc, heapFd } = await setup();
    const before = lab.stats().pages.freeBytes;
    const fd = alloc(proc, heapFd, MiB);
    expect(proc.lseek(fd, 0, SEEK_END)).toBe(MiB);
    expect(proc.fcntl(fd, F_GETFD)).toBe(FD_CLOEXEC);
    expect(proc.fcntl(fd, F_GETFL)).toBe(O_RDWR);
    const m = proc.mmap(fd, 0, MiB);
    expect(m.views.reduce((n, v) => n + v.length, 0)).toBe(MiB);
    expect(proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW })).toBe(0);
    for (const v of m.views) v.fill(1);
    expect(proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW })).toBe(0);
    proc.munmap(m);
    expect(contents(proc, fd).every((b) => b === 1)).toBe(true);
    proc.close(fd);
    expect(lab.stats().pages.freeBytes).toBe(before);
    proc.closeAll();
  });

  test.each([4 * KiB, MiB])("alloc_zeroed: 32 buffers of %i bytes filled with 0xff and closed, then 32 new ones all zero", async (size) => {
    const { proc, heapFd } = await setup();
    const fill = (fd: number) => {
      const m = proc.mmap(fd, 0, size);
      proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW });
      for (const v of m.views) v.fill(0xff);
      proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW });
      proc.munmap(m);
    };
    const first = Array.from({ length: 32 }, () => alloc(proc, heapFd, size));
    first.forEach(fill);
    first.forEach((fd) => proc.close(fd));
    const second = Array.from({ length: 32 }, () => alloc(proc, heapFd, size));
    for (const fd of second) expect(contents(proc, fd).every((b) => b === 0), `fd ${fd} is zeroed`).toBe(true);
    proc.closeAll();
  });

  test("alloc_compat: a 16-byte struct (no heap_flags) and a 48-byte one (extra fields ignored)", async () => {
    const { proc, heapFd } = await setup();
    // The older struct ends before heap_flags: a value there is not read.
    const smaller = { len: MiB, fd: 0, fd_flags: O_RDWR | O_CLOEXEC, heap_flags: 0xdead };
    expect(proc.ioctl(heapFd, dmaHeapAllocRequest(16), smaller)).toBe(0);
    expect(proc.lseek(smaller.fd, 0, SEEK_END)).toBe(MiB);
    const bigger = { len: MiB, fd: 0, fd_flags: O_RDWR | O_CLOEXEC, heap_flags: 0, garbage1: 0xffffffff, garbage2: 0x88888888, garbage3: 0x11111111 };
    expect(proc.ioctl(heapFd, dmaHeapAllocRequest(48), bigger)).toBe(0);
    expect(proc.lseek(bigger.fd, 0, SEEK_END)).toBe(MiB);
    expect(bigger.fd).not.toBe(smaller.fd);
    // A struct too short to hold fd: nothing is written back.
    const tiny = { len: 4 * KiB, fd: 0 } as dma_heap_allocation_data;
    const before = proc.fds;
    expect(proc.ioctl(heapFd, dmaHeapAllocRequest(8), tiny)).toBe(0);
    expect(tiny.fd).toBe(0);
    expect(proc.fds.length).toBe(before.length + 1);
    proc.closeAll();
  });

  test("alloc_errors: fd not 0 on input, bad fd_flags, bad heap_flags, len 0, ENOMEM, EMFILE, unknown requests; nothing changes", async () => {
    const { lab, proc, heapFd } = await setup();
    const keep = alloc(proc, heapFd, 64 * KiB);
    const before = state(lab, proc);
    const fails = (arg: Partial<dma_heap_allocation_data>, code: string, request = DMA_HEAP_IOCTL_ALLOC) => {
      const data = { len: MiB, fd: 0, fd_flags: O_RDWR | O_CLOEXEC, heap_flags: 0, ...arg };
      const e = expectErrno(() => proc.ioctl(heapFd, request, data), code);
      expect(data.fd, `${e.message}: fd is not written`).toBe(arg.fd ?? 0);
      expect(state(lab, proc), e.message).toEqual(before);
    };
    // The selftest's "invalid fd": fd 0, stdin, which is not a heap (ENOTTY, as a tty or pipe answers); an fd not open is EBADF.
    expectErrno(() => proc.ioctl(0, DMA_HEAP_IOCTL_ALLOC, { len: MiB, fd: 0, fd_flags: 0, heap_flags: 0 }), "ENOTTY");
    expectErrno(() => proc.ioctl(999, DMA_HEAP_IOCTL_ALLOC, { len: MiB, fd: 0, fd_flags: 0, heap_flags: 0 }), "EBADF");
    fails({ fd: 1 }, "EINVAL");
    fails({ fd: keep }, "EINVAL");
    fails({ fd_flags: 0xffffffff }, "EINVAL");
    fails({ fd_flags: 0o4000 /* O_NONBLOCK */ }, "EINVAL");
    fails({ heap_flags: 0xffffffff }, "EINVAL");
    fails({ heap_flags: 1 }, "EINVAL");
    fails({ len: 0 }, "EINVAL");
    fails({ len: 64 * MiB }, "ENOMEM"); // the whole pool, less the 64 KiB kept
    fails({ len: -1 }, "EFAULT");
    fails({}, "EINVAL", _IOWR(DMA_HEAP_IOC_MAGIC, 1, 24));
    fails({}, "EINVAL", DMA_BUF_IOCTL_SYNC);
    // fd_flags O_RDONLY | O_CLOEXEC is valid; the file is read-only.
    const ro = alloc(proc, heapFd, 4 * KiB, O_RDONLY);
    expect(proc.fcntl(ro, F_GETFL)).toBe(O_RDONLY);
    expect(proc.fcntl(ro, F_GETFD)).toBe(0);
    proc.close(ro);
    expect(state(lab, proc)).toEqual(before);
    proc.closeAll();
  });

  test("len is rounded up to a page; EMFILE at the fd limit changes nothing", async () => {
    const lab = await labs.create();
    const proc = new Process(lab, { maxFds: 6 });
    const heapFd = proc.open(`/dev/dma_heap/${heap}`, O_RDWR);
    const a = alloc(proc, heapFd, 1);
    expect(proc.lseek(a, 0, SEEK_END)).toBe(4 * KiB);
    const b = alloc(proc, heapFd, 4 * KiB + 1);
    expect(proc.lseek(b, 0, SEEK_END)).toBe(8 * KiB);
    expect(proc.fds).toEqual([0, 1, 2, 3, 4, 5]);
    const before = state(lab, proc);
    expectErrno(() => alloc(proc, heapFd, MiB), "EMFILE");
    expectErrno(() => proc.open(`/dev/dma_heap/${heap}`), "EMFILE");
    expectErrno(() => proc.dup(a), "EMFILE");
    expect(state(lab, proc)).toEqual(before);
    proc.closeAll();
  });
});

test("open: unknown heaps and devices are ENOENT", async () => {
  const proc = new Process(await labs.create());
  expectErrno(() => proc.open("/dev/dma_heap/nope"), "ENOENT");
  expectErrno(() => proc.open("/dev/null"), "ENOENT");
  expect(proc.fds).toEqual([0, 1, 2]);
});

describe("udmabuf selftests, through fds", () => {
  /** memfd_create + ftruncate + F_ADD_SEALS, as the selftest prepares its memfd. */
  function memfd(proc: Process, pages: number, seals = F_SEAL_SHRINK): number {
    const fd = proc.memfd_create("udmabuf-test", MFD_ALLOW_SEALING);
    proc.ftruncate(fd, pages * PAGE_SIZE);
    proc.fcntl(fd, F_ADD_SEALS, seals);
    return fd;
  }

  test("a half-page offset fails, a half-page size fails, a non-memfd fails, a sealed 4-page memfd works", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const dev = proc.open("/dev/udmabuf", O_RDWR);
    const mfd = memfd(proc, 4);
    const create = (arg: udmabuf_create) => proc.ioctl(dev, UDMABUF_CREATE, arg);
    const before = state(lab, proc);
    expectErrno(() => create({ memfd: mfd, flags: UDMABUF_FLAGS_CLOEXEC, offset: PAGE_SIZE / 2, size: PAGE_SIZE }), "EINVAL");
    expectErrno(() => create({ memfd: mfd, flags: UDMABUF_FLAGS_CLOEXEC, offset: 0, size: PAGE_SIZE / 2 }), "EINVAL");
    expectErrno(() => create({ memfd: dev, flags: 0, offset: 0, size: PAGE_SIZE }), "EBADFD"); // not a memfd
    expectErrno(() => create({ memfd: 999, flags: 0, offset: 0, size: PAGE_SIZE }), "EBADFD"); // not open
    expectErrno(() => create({ memfd: 0, flags: 0, offset: 0, size: PAGE_SIZE }), "EBADFD"); // stdin
    expect(state(lab, proc)).toEqual(before);
    const buf = create({ memfd: mfd, flags: UDMABUF_FLAGS_CLOEXEC, offset: 0, size: 4 * PAGE_SIZE });
    expect(proc.fcntl(buf, F_GETFD)).toBe(FD_CLOEXEC);
    expect(proc.fdinfo(buf)).toContain("exp_name:\tudmabuf");
    expect(proc.lseek(buf, 0, SEEK_END)).toBe(4 * PAGE_SIZE);
    // The buffer's pages are the memfd's: write through the dma-buf, see it through a fresh udmabuf.
    proc.pwrite(buf, new Uint8Array(16).fill(0x6b), PAGE_SIZE);
    const again = create({ memfd: mfd, flags: 0, offset: PAGE_SIZE, size: PAGE_SIZE });
    const out = new Uint8Array(16);
    proc.pread(again, out, 0);
    expect(out.every((b) => b === 0x6b)).toBe(true);
    proc.closeAll();
  });

  test("the memfd must be sealed against shrinking and not against writing; F_GET_SEALS answers; CREATE_LIST joins ranges", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const dev = proc.open("/dev/udmabuf", O_RDWR);
    const unsealed = proc.memfd_create("plain", MFD_ALLOW_SEALING);
    proc.ftruncate(unsealed, PAGE_SIZE);
    expectErrno(() => proc.ioctl(dev, UDMABUF_CREATE, { memfd: unsealed, flags: 0, offset: 0, size: PAGE_SIZE }), "EINVAL");
    const writeSealed = memfd(proc, 1, F_SEAL_SHRINK | F_SEAL_WRITE);
    expect(proc.fcntl(writeSealed, F_GET_SEALS)).toBe(F_SEAL_SHRINK | F_SEAL_WRITE);
    expectErrno(() => proc.ioctl(dev, UDMABUF_CREATE, { memfd: writeSealed, flags: 0, offset: 0, size: PAGE_SIZE }), "EINVAL");
    expectErrno(() => proc.ftruncate(writeSealed, 0), "EPERM");
    expectErrno(() => proc.ftruncate(dev, 0), "EINVAL");
    const a = memfd(proc, 2);
    const b = memfd(proc, 2);
    const list: udmabuf_create_list = { flags: 0, count: 2, list: [{ memfd: a, offset: 0, size: 2 * PAGE_SIZE }, { memfd: b, offset: PAGE_SIZE, size: PAGE_SIZE }] };
    const joined = proc.ioctl(dev, UDMABUF_CREATE_LIST, list);
    expect(proc.lseek(joined, 0, SEEK_END)).toBe(3 * PAGE_SIZE);
    expectErrno(() => proc.ioctl(dev, UDMABUF_CREATE_LIST, { ...list, count: 3 }), "EINVAL");
    proc.closeAll();
  });
});

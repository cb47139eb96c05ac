/*
 * The read/write path at its edges, each test named after what it protects:
 * positions at and far past the end of a cached buffer in a non-coherent lab
 * (no length may wrap to 32 bits: canaries around unrelated lab.alloc()
 * regions), readv/writev that fail on one iovec (no byte moved anywhere),
 * and errors that name the system call the user made.
 */
import { describe, expect, test } from "vitest";
import { DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_RW, DMA_HEAP_IOCTL_ALLOC, O_RDWR, Process, SEEK_CUR, SEEK_SET, type Lab } from "../src/index.js";
import { Lab as LabClass } from "../src/api/lab.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { CANARY } from "./helpers/canary.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const MiB = 1024 * 1024;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
cleanUpAfterEach({ labs });

function allocFd(proc: Process, len: number): number {
  const heap = proc.open("/dev/dma_heap/system", O_RDWR);
  const data = { len, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, data);
  proc.close(heap);
  return data.fd;
}

/** Unrelated user memory, every byte a canary: regions of several sizes spread over the user heap. */
function canaryRegions(lab: Lab): Uint8Array[] {
  const regions = [64, 4096, 65536, 256, 1 << 20].map((n) => lab.alloc(n).fill(CANARY));
  return regions;
}

function expectCanaries(regions: Uint8Array[]): void {
  for (const r of regions) {
    const bad = r.findIndex((b) => b !== CANARY);
    expect(bad, `canary byte ${bad} of a ${r.length}-byte lab.alloc() region at 0x${r.byteOffset.toString(16)}`).toBe(-1);
  }
}

/** Positions at and past the end of a `size`-byte buffer, up to where 32-bit arithmetic wraps and beyond. */
const pastTheEnd = (size: number): number[] => [
  size, size + 1, size + 63, size + 64, size + PAGE_SIZE + 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32 - 64, 2 ** 32 - 100,
  2 ** 32 - size, 2 ** 32, 2 ** 32 + 5, 2 ** 40, Number.MAX_SAFE_INTEGER,
];

describe("positions past the end", () => {
  for (const coherent of [false, true]) {
    test(`a read or a zero-byte write past the end of a cached buffer moves nothing and corrupts no memory (${coherent ? "coherent" : "non-coherent"} lab)`, async () => {
      const lab = await labs.create({ coherent });
      const proc = new Process(lab);
      const size = 2 * PAGE_SIZE;
      const fd = allocFd(proc, size);
      try {
        // Fill the buffer through the path (the CPU cache of a non-coherent lab exists from here on).
        const content = new Uint8Array(size).map((_, i) => (i * 7 + 3) & 0xff);
        expect(proc.pwrite(fd, content, 0)).toBe(size);
        const regions = canaryRegions(lab);
        const out = new Uint8Array(128).fill(CANARY);
        const empty = new Uint8Array(0);
        for (const pos of pastTheEnd(size)) {
          expect(proc.pread(fd, out, pos), `pread at ${pos}`).toBe(0);
          expect(proc.pwrite(fd, empty, pos), `zero-byte pwrite at ${pos}`).toBe(0);
          expect(proc.lseek(fd, pos, SEEK_SET)).toBe(pos);
          expect(proc.read(fd, out), `read at ${pos}`).toBe(0);
          expect(proc.write(fd, empty), `zero-byte write at ${pos}`).toBe(0);
          expect(proc.readv(fd, [out, lab.alloc(64)]), `readv at ${pos}`).toBe(0);
          expectErrno(() => proc.write(fd, out), "ENOSPC");
        }
        expect(out.every((b) => b === CANARY)).toBe(true);
        expectCanaries(regions);
        const back = new Uint8Array(size);
        expect(proc.pread(fd, back, 0)).toBe(size);
        expect(Buffer.compare(back, content)).toBe(0);
      } finally {
        proc.closeAll();
      }
      // The allocator is intact: every region goes back once, and a double free is still refused.
      const probe = lab.alloc(4096);
      lab.free(probe);
      expectErrno(() => lab.free(probe), "EINVAL");
    });
  }
});

describe("readv and writev check every iovec before any byte moves", () => {
  for (const coherent of [false, true]) {
    test(`a writev whose last iovec faults writes nothing; a readv whose last iovec faults fills nothing (${coherent ? "coherent" : "non-coherent"})`, async () => {
      const lab = await labs.create({ coherent });
      const proc = new Process(lab);
      const size = PAGE_SIZE;
      const fd = allocFd(proc, size);
      try {
        const before = new Uint8Array(size).fill(0x11);
        proc.pwrite(fd, before, 0);
        // An arena view outside the DMA range (the control block at offset 0).
        const outside = new Uint8Array(lab.arena.memory.buffer, 0, 16);
        const outsideCopy = outside.slice();
        const plain = new Uint8Array(100).fill(0x22);
        const arenaView = lab.alloc(100).fill(0x33);
        const e = expectErrno(() => proc.writev(fd, [plain, arenaView, outside]), "EFAULT");
        expect(e.syscall).toBe("writev");
        expect(e.message).toContain("iovec 2");
        const now = new Uint8Array(size);
        proc.pread(fd, now, 0);
        expect(now.every((b) => b === 0x11), "the buffer after a failed writev").toBe(true);
        expect(proc.lseek(fd, 0, 1)).toBe(0);

        const intoPlain = new Uint8Array(100).fill(CANARY);
        const intoArena = lab.alloc(100).fill(CANARY);
        expect(expectErrno(() => proc.readv(fd, [intoPlain, intoArena, outside]), "EFAULT").syscall).toBe("readv");
        expect(intoPlain.every((b) => b === CANARY), "ordinary memory after a failed readv").toBe(true);
        expect(intoArena.every((b) => b === CANARY), "arena memory after a failed readv").toBe(true);
        expect(Buffer.compare(outside, outsideCopy)).toBe(0);
        // A non-Uint8Array iovec anywhere: EFAULT, nothing moved either.
        expectErrno(() => proc.readv(fd, [intoPlain, {} as Uint8Array]), "EFAULT");
        expect(intoPlain.every((b) => b === CANARY)).toBe(true);
      } finally {
        proc.closeAll();
      }
    });
  }
});

describe("errors name the system call the user made", () => {
  test("read, write, readv, writev, pread, pwrite and their async twins each name their own syscall", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    try {
      const bad = {} as Uint8Array;
      expect(expectErrno(() => proc.write(fd, bad), "EFAULT").syscall).toBe("write");
      expect(expectErrno(() => proc.read(fd, bad), "EFAULT").syscall).toBe("read");
      expect(expectErrno(() => proc.writev(fd, [bad]), "EFAULT").syscall).toBe("writev");
      expect(expectErrno(() => proc.readv(fd, [bad]), "EFAULT").syscall).toBe("readv");
      expect(expectErrno(() => proc.pwrite(fd, new Uint8Array(1), -1), "EINVAL").syscall).toBe("pwrite");
      expect(expectErrno(() => proc.pread(fd, new Uint8Array(1), 1.5), "EINVAL").syscall).toBe("pread");
      proc.lseek(fd, PAGE_SIZE, SEEK_SET);
      expect(expectErrno(() => proc.write(fd, new Uint8Array(1)), "ENOSPC").syscall).toBe("write");
      expect((await expectErrnoAsync(() => proc.writeAsync(fd, bad), "EFAULT")).syscall).toBe("write");
      expect((await expectErrnoAsync(() => proc.readvAsync(fd, [bad]), "EFAULT")).syscall).toBe("readv");
    } finally {
      proc.closeAll();
    }
  });
});

describe("semantics that must not drift", () => {
  test("fdinfo shows the open file description's real position", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    try {
      expect(proc.fdinfo(fd)).toMatch(/^pos:\t0\n/);
      proc.lseek(fd, 100, SEEK_SET);
      expect(proc.read(fd, new Uint8Array(28))).toBe(28);
      expect(proc.fdinfo(fd)).toMatch(/^pos:\t128\n/);
      const dup = proc.dup(fd); // the description, and so the position, is shared
      expect(proc.fdinfo(dup)).toMatch(/^pos:\t128\n/);
    } finally {
      proc.closeAll();
    }
  });

  test("pread and pwrite need a position: null and undefined are both EINVAL; the optional positions take null as undefined", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    try {
      for (const pos of [null, undefined]) {
        expectErrno(() => proc.pread(fd, new Uint8Array(4), pos as unknown as number), "EINVAL");
        expectErrno(() => proc.pwrite(fd, new Uint8Array(4), pos as unknown as number), "EINVAL");
      }
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(0);
      // The async twins and the object API: null, like undefined, is the file position, advanced.
      expect(await proc.writeAsync(fd, new Uint8Array(8).fill(1), null as unknown as undefined)).toBe(8);
      expect(await proc.writeAsync(fd, new Uint8Array(8).fill(2), undefined)).toBe(8);
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(16);
      const buf = lab.heap("system").alloc(PAGE_SIZE);
      try {
        expect(buf.write(new Uint8Array(4), null)).toBe(4);
        expect(buf.write(new Uint8Array(4), undefined)).toBe(4);
        expect(buf.position).toBe(8);
      } finally {
        buf.close();
      }
    } finally {
      proc.closeAll();
    }
  });

  test("timeoutMs: null means no limit for read, write and DMA_BUF_IOCTL_SYNC alike; a bad one is EINVAL for all", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    try {
      expect(proc.write(fd, new Uint8Array(4), { timeoutMs: null })).toBe(4);
      expect(proc.pread(fd, new Uint8Array(4), 0, { timeoutMs: null })).toBe(4);
      expect(proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_RW, timeoutMs: null })).toBe(0);
      expect(proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END, timeoutMs: null })).toBe(0);
      for (const timeoutMs of [-1, NaN, "5"]) {
        expectErrno(() => proc.write(fd, new Uint8Array(4), { timeoutMs: timeoutMs as number }), "EINVAL");
        expectErrno(() => proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_RW, timeoutMs }), "EINVAL");
      }
    } finally {
      proc.closeAll();
    }
  });

  test("a DmaBufRecord view after put() is EBADF, never a size read from a freed record", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const other = buf.get();
    other.put(); // not the last reference: the buffer lives on, this view does not
    expectErrno(() => other.size, "EBADF");
    expect(buf.size).toBe(PAGE_SIZE);
    buf.put(); // the last
    expectErrno(() => buf.size, "EBADF");
    expectErrno(() => buf.caching, "EBADF");
  });

  test("lab.close() gives back the thread's read/write state (its CPU timeline and descriptor table)", async () => {
    const lab = await labs.create();
    const free = () => { const t = lab.stats(); return [t.pages.freeBytes, t.user.freeBytes, t.sync.freeBytes]; };
    const before = free();
    // Another Lab over the same memory stands for another thread: its read/write calls make its own state.
    const other = await LabClass.attach(lab.share());
    const proc = new Process(other);
    const fd = allocFd(proc, PAGE_SIZE);
    proc.writev(fd, [new Uint8Array(10), new Uint8Array(10)]);
    proc.pread(fd, new Uint8Array(4), 0);
    proc.closeAll();
    other.close();
    expect(free()).toEqual(before);
  });
});

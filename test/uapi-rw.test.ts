/*
 * read/write on dma-buf fds (the read/write path through the uapi): file
 * positions, pread/pwrite, readv/writev, the edges, O_NONBLOCK and an
 * async read that waits for an sw_sync point; the non-coherent mode through
 * mmap and DMA_BUF_IOCTL_SYNC; and a seeded fast-check model test of fds,
 * positions and buffer contents over random operation sequences.
 */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START,
  DMA_BUF_SYNC_WRITE, DMA_HEAP_IOCTL_ALLOC, F_SETFL, O_NONBLOCK, O_RDWR, Process, SEEK_CUR, SEEK_END, SEEK_SET,
  SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC, DmaBufFile, type sw_sync_create_fence_data,
} from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { testSeed } from "./helpers/prng.js";

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

const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);

describe("read and write on dma-buf fds", () => {
  test("read/write move the file position; pread/pwrite do not; readv/writev take several buffers", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, 2 * PAGE_SIZE);
    try {
      expect(proc.write(fd, bytes(100, 1))).toBe(100);
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(100);
      expect(proc.writev(fd, [bytes(50, 2), bytes(50, 3)])).toBe(100);
      expect(proc.pwrite(fd, bytes(10, 9), 1000)).toBe(10);
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(200);
      proc.lseek(fd, 0, SEEK_SET);
      const a = new Uint8Array(120);
      const b = new Uint8Array(100);
      expect(proc.readv(fd, [a, b])).toBe(220);
      expect(a.subarray(0, 100).every((x) => x === 1)).toBe(true);
      expect(a.subarray(100, 120).every((x) => x === 2)).toBe(true);
      expect(b.subarray(30, 80).every((x) => x === 3)).toBe(true);
      expect(b.subarray(80).every((x) => x === 0)).toBe(true);
      const p = new Uint8Array(10);
      expect(proc.pread(fd, p, 1000)).toBe(10);
      expect(p.every((x) => x === 9)).toBe(true);
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(220);
    } finally {
      proc.closeAll();
    }
  });

  test("edges: a read at the end returns 0, across it is short; a write is short at the end and ENOSPC past it", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    try {
      proc.lseek(fd, -10, SEEK_END);
      expect(proc.write(fd, bytes(100, 7))).toBe(10);
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(PAGE_SIZE);
      expectErrno(() => proc.write(fd, bytes(1, 7)), "ENOSPC");
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(PAGE_SIZE); // unchanged by the failure
      expect(proc.read(fd, new Uint8Array(5))).toBe(0);
      expect(proc.pread(fd, new Uint8Array(100), PAGE_SIZE - 4)).toBe(4);
      const sw = proc.open("/dev/sw_sync", O_RDWR);
      expectErrno(() => proc.read(sw, new Uint8Array(1)), "EINVAL"); // no read on that file
    } finally {
      proc.closeAll();
    }
  });

  test("O_NONBLOCK reads give EAGAIN while a write fence is pending; an async read waits for it and sees the writer's data", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    const tl = proc.open("/dev/sw_sync", O_RDWR);
    try {
      const point: sw_sync_create_fence_data = { value: 1, name: "w" };
      proc.ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, point);
      proc.ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_WRITE, fd: point.fence! });
      proc.fcntl(fd, F_SETFL, O_NONBLOCK);
      expectErrno(() => proc.read(fd, new Uint8Array(8)), "EAGAIN");
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(0);
      proc.fcntl(fd, F_SETFL, 0);
      const out = new Uint8Array(8);
      const reading = proc.readAsync(fd, out);
      // The writer (the fence's owner) fills the buffer's memory, then signals its point.
      for (const seg of (proc.file(fd) as DmaBufFile).buf.segments()) lab.engine.fill(seg.addr, 0x44, seg.len);
      proc.ioctl(tl, SW_SYNC_IOC_INC, 1);
      expect(await reading).toBe(8);
      expect(out.every((x) => x === 0x44)).toBe(true);
      expect(proc.lseek(fd, 0, SEEK_CUR)).toBe(8);
    } finally {
      proc.closeAll();
    }
  });
});

describe("non-coherent mode through the uapi", () => {
  test("mmap without DMA_BUF_IOCTL_SYNC sees stale data and hides CPU writes; with SYNC START/END both are right", async () => {
    const lab = await labs.create({ coherent: false });
    const proc = new Process(lab);
    const fd = allocFd(proc, PAGE_SIZE);
    try {
      const [cpu] = proc.mmap(fd, 0, PAGE_SIZE).views;
      // A device writes memory; the CPU's mapping is stale until SYNC START.
      proc.pwrite(fd, bytes(64, 0x10), 0); // (the read/write path itself keeps the cache right)
      expect(cpu[0]).toBe(0x10);
      const memory = (proc.file(fd) as DmaBufFile).buf.segments()[0].addr;
      lab.engine.fill(memory, 0x20, 64); // a device write, straight to memory
      expect(cpu[0]).toBe(0x10);
      proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW });
      expect(cpu[0]).toBe(0x20);
      // The CPU writes through the mapping; memory (and pread) see it only after SYNC END.
      cpu.fill(0x30, 0, 64);
      expect(lab.arena.u8[memory]).toBe(0x20);
      proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW });
      expect(lab.arena.u8[memory]).toBe(0x30);
      const check = new Uint8Array(64);
      proc.pread(fd, check, 0);
      expect(check.every((x) => x === 0x30)).toBe(true);
    } finally {
      proc.closeAll();
    }
  });
});

describe("the uapi against a model", () => {
  type Op =
    | { op: "alloc"; pages: number }
    | { op: "dup"; which: number }
    | { op: "close"; which: number }
    | { op: "lseek"; which: number; offset: number; whence: 0 | 1 | 2 }
    | { op: "write"; which: number; len: number; value: number; at?: number }
    | { op: "read"; which: number; len: number; at?: number };

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ op: fc.constant("alloc" as const), pages: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ op: fc.constant("dup" as const), which: fc.nat(20) }),
    fc.record({ op: fc.constant("close" as const), which: fc.nat(20) }),
    fc.record({ op: fc.constant("lseek" as const), which: fc.nat(20), offset: fc.integer({ min: -5000, max: 13000 }), whence: fc.constantFrom(0 as const, 1 as const, 2 as const) }),
    fc.record({ op: fc.constant("write" as const), which: fc.nat(20), len: fc.nat(5000), value: fc.nat(255), at: fc.option(fc.nat(13000), { nil: undefined }) }),
    fc.record({ op: fc.constant("read" as const), which: fc.nat(20), len: fc.nat(5000), at: fc.option(fc.nat(13000), { nil: undefined }) }),
  );

  /** The model: buffers as byte arrays, open file descriptions with a position, fds pointing at them. */
  interface MFile { buf: Uint8Array; pos: number }

  test("random sequences of alloc, dup, close, lseek, read, write, pread and pwrite agree with a plain model", async () => {
    const lab = await labs.create();
    const seed = testSeed();
    fc.assert(fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const proc = new Process(lab, { maxFds: 16 });
      const fds = new Map<number, MFile>();
      const code = (fn: () => unknown): string | number => {
        try {
          return fn() as number;
        } catch (e) {
          return (e as { code?: string }).code ?? String(e);
        }
      };
      try {
        for (const o of ops) {
          const open = [...fds.keys()].sort((x, y) => x - y);
          const fd = open.length > 0 && "which" in o ? open[o.which % open.length] : -1;
          const f = fds.get(fd);
          switch (o.op) {
            case "alloc": {
              const got = code(() => allocFd(proc, o.pages * PAGE_SIZE));
              if (typeof got === "number") fds.set(got, { buf: new Uint8Array(o.pages * PAGE_SIZE), pos: 0 });
              else expect(got).toBe("EMFILE");
              break;
            }
            case "dup": {
              if (!f) break;
              const got = code(() => proc.dup(fd));
              if (typeof got === "number") fds.set(got, f);
              else expect(got).toBe("EMFILE");
              break;
            }
            case "close":
              if (!f) break;
              proc.close(fd);
              fds.delete(fd);
              expect(code(() => proc.lseek(fd, 0, SEEK_CUR))).toBe("EBADF");
              break;
            case "lseek": {
              if (!f) break;
              const base = o.whence === SEEK_SET ? 0 : o.whence === SEEK_CUR ? f.pos : f.buf.length;
              const want = base + o.offset < 0 ? "EINVAL" : base + o.offset;
              expect(code(() => proc.lseek(fd, o.offset, o.whence))).toBe(want);
              if (typeof want === "number") f.pos = want;
              break;
            }
            case "write": {
              if (!f) break;
              const data = bytes(o.len, o.value);
              const at = o.at ?? f.pos;
              const want = at >= f.buf.length && o.len > 0 ? "ENOSPC" : Math.min(o.len, Math.max(0, f.buf.length - at));
              expect(code(() => (o.at === undefined ? proc.write(fd, data) : proc.pwrite(fd, data, o.at)))).toBe(want);
              if (typeof want === "number") {
                // A zero-byte write past the end moves nothing (and the model must not set past its end).
                if (want > 0) f.buf.set(data.subarray(0, want), at);
                if (o.at === undefined) f.pos += want;
              }
              break;
            }
            case "read": {
              if (!f) break;
              const out = new Uint8Array(o.len);
              const at = o.at ?? f.pos;
              const want = Math.max(0, Math.min(o.len, f.buf.length - at));
              expect(code(() => (o.at === undefined ? proc.read(fd, out) : proc.pread(fd, out, o.at)))).toBe(want);
              expect(Buffer.compare(out.subarray(0, want), f.buf.subarray(at, at + want))).toBe(0);
              if (o.at === undefined) f.pos += want;
              break;
            }
          }
        }
      } finally {
        proc.closeAll();
      }
    }), {
      seed,
      numRuns: 150,
      // The model's own edge (seed -1154263235): a zero-byte pwrite past the end, replayed every run.
      examples: [[[{ op: "alloc", pages: 1 }, { op: "write", which: 0, len: 0, value: 0, at: PAGE_SIZE + 1 }]]],
    });
  });
});

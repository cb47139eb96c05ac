/*
 * copy_file_range between regular files and dma-bufs (both ways, buffered
 * and direct) and Tao Wang's DMA_BUF_IOCTL_RW_FILE, on real files beneath a
 * temporary lab directory: the bytes land between canaries, the file is
 * never read or written outside the requested range, the direct path is the
 * storage device's DMA through a per-I/O IOMMU mapping, and bad input of
 * every kind is an error that changes nothing (buffer, file, positions).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { spawnStorage, type StorageDevice } from "../src/devices/storage.js";
import type { Lab } from "../src/api/lab.js";
import { Process } from "../src/uapi/process.js";
import {
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_RW_FILE, DMA_BUF_RW_FLAGS_DIRECT, DMA_BUF_RW_FLAGS_READ, DMA_BUF_RW_FLAGS_WRITE,
  DMA_HEAP_IOCTL_ALLOC, F_SETFL, O_CREAT, O_DIRECT, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, SEEK_CUR, SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC,
} from "../src/uapi/uapi.js";
import { LabSet } from "./helpers/lab.js";
import { expectErrno } from "./helpers/errors.js";
import { prng, withSeed } from "./helpers/prng.js";
import { expectSame } from "./helpers/bytes.js";

const KiB = 1024;
const BUF = 64 * KiB;
const FILE = 256 * KiB;
const CANARY = 0xa5;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 32 * 1024 * KiB });
const dirs: string[] = [];
const storages: StorageDevice[] = [];

afterEach(async () => {
  await Promise.all(storages.splice(0).map((s) => s.shutdown()));
  labs.closeAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Setup { lab: Lab; proc: Process; dir: string; content: Uint8Array; file: number; dmabuf: number }

async function setup(options: { storage?: boolean; flags?: number } = {}): Promise<Setup> {
  const lab = await labs.create();
  if (options.storage === true) storages.push(await spawnStorage(lab, { size: 1024 * KiB, blockSize: 512 }));
  const dir = mkdtempSync(join(tmpdir(), "dmabuf-lab-cfr-"));
  dirs.push(dir);
  const content = prng(21).bytes(new Uint8Array(FILE));
  writeFileSync(join(dir, "data.bin"), content);
  const proc = new Process(lab, { root: dir });
  const file = proc.open("data.bin", (options.flags ?? 0) | O_RDWR);
  const heap = proc.open("/dev/dma_heap/system", O_RDWR);
  const alloc = { len: BUF, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
  proc.close(heap);
  proc.pwrite(alloc.fd, new Uint8Array(BUF).fill(CANARY), 0);
  return { lab, proc, dir, content, file, dmabuf: alloc.fd };
}

/** The whole buffer, read through the read/write path. */
function bufferBytes(s: Setup): Uint8Array {
  const out = new Uint8Array(BUF);
  expect(s.proc.pread(s.dmabuf, out, 0)).toBe(BUF);
  return out;
}

/** The buffer holds `bytes` at `at` and the canary everywhere else. */
function expectBuffer(s: Setup, at: number, bytes: Uint8Array): void {
  const want = new Uint8Array(BUF).fill(CANARY);
  want.set(bytes, at);
  expectSame(bufferBytes(s), want, "the buffer, canaries included (line 69)");
}

const fileBytes = (s: Setup) => new Uint8Array(readFileSync(join(s.dir, "data.bin")));

describe("copy_file_range: regular file -> dma-buf", () => {
  test("buffered: the file's range lands at off_out between canaries; the file and its other bytes are untouched; null offsets are the positions, advanced", async () => {
    const s = await setup();
    expect(s.proc.copy_file_range(s.file, 1000, s.dmabuf, 300, 5000)).toBe(5000);
    expectBuffer(s, 300, s.content.subarray(1000, 6000));
    expectSame(fileBytes(s), s.content, "the file (line 79)");
    // The positions: both advance when the offsets are null.
    s.proc.lseek(s.file, 7, 0);
    s.proc.lseek(s.dmabuf, 10_000, 0);
    expect(s.proc.copy_file_range(s.file, null, s.dmabuf, null, 100)).toBe(100);
    expect(s.proc.lseek(s.file, 0, SEEK_CUR)).toBe(107);
    expect(s.proc.lseek(s.dmabuf, 0, SEEK_CUR)).toBe(10_100);
    const all = bufferBytes(s);
    expectSame(all.subarray(10_000, 10_100), s.content.subarray(7, 107), "the buffer (line 87)");
  });

  test("the length is shortened to the end of the file (0 at or past it) and to the end of the dma-buf; a destination at its end is ENOSPC", async () => {
    const s = await setup();
    expect(s.proc.copy_file_range(s.file, FILE - 100, s.dmabuf, 0, 4096)).toBe(100);
    expect(s.proc.copy_file_range(s.file, FILE, s.dmabuf, 0, 4096)).toBe(0);
    expect(s.proc.copy_file_range(s.file, FILE + 5, s.dmabuf, 0, 4096)).toBe(0);
    expect(s.proc.copy_file_range(s.file, 0, s.dmabuf, BUF - 10, 4096)).toBe(10);
    const before = bufferBytes(s);
    expectErrno(() => s.proc.copy_file_range(s.file, 0, s.dmabuf, BUF, 1), "ENOSPC");
    expectSame(bufferBytes(s), before, "the buffer (line 98)");
    expect(s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 0)).toBe(0);
  });

  test("direct (O_DIRECT): the storage device's DMA through a per-I/O IOMMU mapping, gone afterwards; offsets and length in 512-byte blocks, else EINVAL with nothing moved", async () => {
    const s = await setup({ storage: true, flags: O_DIRECT });
    const st = storages[0];
    const jobs = st.device.stats().jobsDone;
    expect(s.proc.copy_file_range(s.file, 4096, s.dmabuf, 8192, 16 * KiB)).toBe(16 * KiB);
    expectBuffer(s, 8192, s.content.subarray(4096, 4096 + 16 * KiB));
    expect(st.device.stats().jobsDone).toBeGreaterThan(jobs);
    expect(st.record.iommu.stats().mappings).toBe(0);
    const before = bufferBytes(s);
    expectErrno(() => s.proc.copy_file_range(s.file, 100, s.dmabuf, 0, 512), "EINVAL");
    expectErrno(() => s.proc.copy_file_range(s.file, 0, s.dmabuf, 100, 512), "EINVAL");
    expectErrno(() => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 500), "EINVAL");
    expectSame(bufferBytes(s), before, "the buffer (line 114)");
    expectSame(fileBytes(s), s.content, "the file (line 115)");
  });

  test("direct without a storage device under the lab's directory is ENODEV, nothing moved", async () => {
    const s = await setup({ flags: O_DIRECT });
    expectErrno(() => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 4096), "ENODEV");
    expectBuffer(s, 0, new Uint8Array(0));
  });
});

describe("copy_file_range: dma-buf -> regular file", () => {
  for (const direct of [false, true]) {
    test(`${direct ? "direct" : "buffered"}: only [off_out, +len) of the file changes, to the buffer's bytes; the file grows when written past its end`, async () => {
      const s = await setup({ storage: direct, flags: direct ? O_DIRECT : 0 });
      const src = prng(5).bytes(new Uint8Array(BUF));
      s.proc.pwrite(s.dmabuf, src, 0);
      expect(s.proc.copy_file_range(s.dmabuf, 4096, s.file, 8192, 8192)).toBe(8192);
      const want = s.content.slice();
      want.set(src.subarray(4096, 12_288), 8192);
      expectSame(fileBytes(s), want, "the file (line 134)");
      expect(s.proc.copy_file_range(s.dmabuf, 0, s.file, FILE + 512, 1024)).toBe(1024);
      const grown = fileBytes(s);
      expect(grown.length).toBe(FILE + 1536);
      expectSame(grown.subarray(FILE + 512), src.subarray(0, 1024), "the file (line 138)");
      expect(grown.subarray(FILE, FILE + 512).every((b) => b === 0)).toBe(true);
      // The source dma-buf's end shortens the copy.
      expect(s.proc.copy_file_range(s.dmabuf, BUF - 512, s.file, 0, 4096)).toBe(512);
      expect(s.proc.copy_file_range(s.dmabuf, BUF, s.file, 0, 4096)).toBe(0);
    });
  }
});

describe("copy_file_range: regular -> regular", () => {
  test("copies between files; the same file is fine when the ranges do not overlap, EINVAL when they do (nothing changed)", async () => {
    const s = await setup();
    const out = s.proc.open("out.bin", O_RDWR | O_CREAT);
    expect(s.proc.copy_file_range(s.file, 100, out, 0, 3 * 1024 * 1024)).toBe(FILE - 100);
    expectSame(new Uint8Array(readFileSync(join(s.dir, "out.bin"))), s.content.subarray(100), "the file (line 152)");
    expect(s.proc.copy_file_range(s.file, 0, s.file, 8192, 8192)).toBe(8192);
    const want = s.content.slice();
    want.set(s.content.subarray(0, 8192), 8192);
    expectSame(fileBytes(s), want, "the file (line 156)");
    expectErrno(() => s.proc.copy_file_range(s.file, 0, s.file, 4096, 8192), "EINVAL");
    const other = s.proc.open("data.bin", O_RDONLY); // another open file description, the same file
    expectErrno(() => s.proc.copy_file_range(other, 4096, s.file, 0, 8192), "EINVAL");
    expectSame(fileBytes(s), want, "the file (line 160)");
  });
});

describe("copy_file_range: bad input changes nothing", () => {
  test("EBADF, EINVAL, EFAULT, EOVERFLOW, EAGAIN: the buffer, the file and both positions stay as they were", async () => {
    const s = await setup();
    const ro = s.proc.open("data.bin", O_RDONLY);
    const wo = s.proc.open("data.bin", O_WRONLY);
    const memfd = s.proc.memfd_create("m");
    s.proc.ftruncate(memfd, 4096);
    const heap = s.proc.open("/dev/dma_heap/system", O_RDWR);
    const alloc = { len: 4096, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
    s.proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
    const closed = s.proc.dup(s.file);
    s.proc.close(closed);
    s.proc.lseek(s.file, 11, 0);
    s.proc.lseek(s.dmabuf, 13, 0);
    const cases: [string, () => unknown, string][] = [
      ["closed fd_in", () => s.proc.copy_file_range(closed, 0, s.dmabuf, 0, 16), "EBADF"],
      ["closed fd_out", () => s.proc.copy_file_range(s.file, 0, closed, 0, 16), "EBADF"],
      ["flags 1", () => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 16, 1), "EINVAL"],
      ["off_in -1", () => s.proc.copy_file_range(s.file, -1, s.dmabuf, 0, 16), "EINVAL"],
      ["off_out 0.5", () => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0.5, 16), "EINVAL"],
      ["off_in a string", () => s.proc.copy_file_range(s.file, "0" as never, s.dmabuf, 0, 16), "EFAULT"],
      ["len -1", () => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, -1), "EINVAL"],
      ["len a BigInt", () => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 16n as never), "EINVAL"],
      ["a memfd", () => s.proc.copy_file_range(memfd, 0, s.dmabuf, 0, 16), "EINVAL"],
      ["stdin", () => s.proc.copy_file_range(0, 0, s.dmabuf, 0, 16), "EINVAL"],
      ["two dma-bufs", () => s.proc.copy_file_range(alloc.fd, 0, s.dmabuf, 0, 16), "EINVAL"],
      ["fd_in O_WRONLY", () => s.proc.copy_file_range(wo, 0, s.dmabuf, 0, 16), "EBADF"],
      ["fd_out O_RDONLY", () => s.proc.copy_file_range(s.dmabuf, 0, ro, 0, 16), "EBADF"],
      ["off_in + len overflows", () => s.proc.copy_file_range(s.file, Number.MAX_SAFE_INTEGER - 8, s.dmabuf, 0, 16), "EOVERFLOW"],
    ];
    const buffer = bufferBytes(s);
    for (const [what, call, code] of cases) {
      expectErrno(call, code);
      expectSame(bufferBytes(s), buffer, "the buffer (line 197)");
      expectSame(fileBytes(s), s.content, "the file (line 198)");
      expect([s.proc.lseek(s.file, 0, SEEK_CUR), s.proc.lseek(s.dmabuf, 0, SEEK_CUR)], what).toEqual([11, 13]);
    }
  });

  test("implicit sync: a pending writer's fence on the buffer makes an O_NONBLOCK copy EAGAIN with nothing moved; once it signals, the copy runs", async () => {
    const s = await setup();
    const sw = s.proc.open("/dev/sw_sync", O_RDWR);
    const create = { value: 1, name: "writer" } as { value: number; name: string; fence?: number };
    s.proc.ioctl(sw, SW_SYNC_IOC_CREATE_FENCE, create);
    s.proc.ioctl(s.dmabuf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: 2, fd: create.fence! });
    s.proc.fcntl(s.dmabuf, F_SETFL, O_NONBLOCK);
    expectErrno(() => s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 4096), "EAGAIN");
    s.proc.fcntl(s.dmabuf, F_SETFL, 0);
    s.proc.ioctl(sw, SW_SYNC_IOC_INC, 1);
    s.proc.fcntl(s.dmabuf, F_SETFL, O_NONBLOCK);
    expect(s.proc.copy_file_range(s.file, 0, s.dmabuf, 0, 4096)).toBe(4096);
    expectBuffer(s, 0, s.content.subarray(0, 4096));
  });
});

describe("DMA_BUF_IOCTL_RW_FILE", () => {
  for (const direct of [false, true]) {
    test(`${direct ? "DIRECT" : "buffered"} READ fills [buf_offset, +buf_len) from the file, WRITE saves it back: between canaries, nothing else of the file changes`, async () => {
      const s = await setup({ storage: direct });
      const D = direct ? DMA_BUF_RW_FLAGS_DIRECT : 0;
      const n = s.proc.ioctl(s.dmabuf, DMA_BUF_IOCTL_RW_FILE, { flags: DMA_BUF_RW_FLAGS_READ | D, fd: s.file, file_offset: 8192, buf_offset: 4096, buf_len: 8192 });
      expect(n).toBe(8192);
      expectBuffer(s, 4096, s.content.subarray(8192, 16_384));
      s.proc.pwrite(s.dmabuf, new Uint8Array(512).fill(7), 4096);
      expect(s.proc.ioctl(s.dmabuf, DMA_BUF_IOCTL_RW_FILE, { flags: DMA_BUF_RW_FLAGS_WRITE | D, fd: s.file, file_offset: 1024, buf_offset: 4096, buf_len: 1024 })).toBe(1024);
      const want = s.content.slice();
      want.fill(7, 1024, 1536);
      want.set(s.content.subarray(8192 + 512, 8192 + 1024), 1536);
      expectSame(fileBytes(s), want, "the file (line 232)");
      if (direct) expect(storages[0].record.iommu.stats().mappings).toBe(0);
      // A READ across the end of the file is short.
      expect(s.proc.ioctl(s.dmabuf, DMA_BUF_IOCTL_RW_FILE, { flags: DMA_BUF_RW_FLAGS_READ | D, fd: s.file, file_offset: FILE - 512, buf_offset: 0, buf_len: 4096 })).toBe(512);
    });
  }

  test("bad flags, fds, ranges and alignment: EINVAL, EBADF, EFAULT with the buffer and the file unchanged", async () => {
    const s = await setup({ storage: true });
    const ro = s.proc.open("data.bin", O_RDONLY);
    const sw = s.proc.open("/dev/sw_sync", O_RDWR);
    const R = DMA_BUF_RW_FLAGS_READ;
    const ok = { flags: R, fd: s.file, file_offset: 0, buf_offset: 0, buf_len: 4096 };
    const cases: [unknown, string][] = [
      [null, "EFAULT"],
      [{ ...ok, flags: 0 }, "EINVAL"],
      [{ ...ok, flags: 3 }, "EINVAL"],
      [{ ...ok, flags: 4 }, "EINVAL"],
      [{ ...ok, flags: R | 0x100 }, "EINVAL"],
      [{ ...ok, fd: 999 }, "EBADF"],
      [{ ...ok, fd: sw }, "EINVAL"],
      [{ ...ok, fd: ro, flags: DMA_BUF_RW_FLAGS_WRITE }, "EBADF"],
      [{ ...ok, file_offset: -1 }, "EINVAL"],
      [{ ...ok, buf_offset: BUF - 100 }, "EINVAL"],
      [{ ...ok, buf_len: BUF + 1 }, "EINVAL"],
      [{ ...ok, buf_len: "4096" }, "EINVAL"],
      [{ ...ok, flags: R | DMA_BUF_RW_FLAGS_DIRECT, file_offset: 100 }, "EINVAL"],
      [{ ...ok, flags: R | DMA_BUF_RW_FLAGS_DIRECT, buf_len: 1000 }, "EINVAL"],
    ];
    const buffer = bufferBytes(s);
    for (const [arg, code] of cases) {
      expectErrno(() => s.proc.ioctl(s.dmabuf, DMA_BUF_IOCTL_RW_FILE, arg), code);
      expectSame(bufferBytes(s), buffer, "the buffer (line 264)");
      expectSame(fileBytes(s), s.content, "the file (line 265)");
    }
  });
});

describe("seeded random copies against a model", () => {
  test("random ranges both ways, buffered and direct, match a model of the buffer and the file", async () => {
    await withSeed(async (rng) => {
      const s = await setup({ storage: true });
      const direct = s.proc.open("data.bin", O_RDWR | O_DIRECT);
      const file = new Uint8Array(FILE + 128 * KiB);
      file.set(s.content);
      const buffer = new Uint8Array(BUF).fill(CANARY);
      let fileLen = FILE;
      for (let i = 0; i < 60; i++) {
        const dir = rng.int(0, 1) === 1;
        const useDirect = rng.int(0, 2) === 0;
        const unit = useDirect ? 512 : 1;
        const len = rng.int(0, 32) * unit * (useDirect ? 1 : 97);
        const filePos = rng.int(0, (FILE + 8192) / 512) * (useDirect ? 512 : rng.int(1, 511));
        const bufPos = rng.int(0, BUF / 512 - 1) * unit;
        const fd = useDirect ? direct : s.file;
        if (dir) {
          // file -> buffer
          const n = Math.max(0, Math.min(len, fileLen - filePos, BUF - bufPos));
          expect(s.proc.copy_file_range(fd, filePos, s.dmabuf, bufPos, len), `step ${i}`).toBe(n);
          buffer.set(file.subarray(filePos, filePos + n), bufPos);
        } else {
          const n = Math.min(len, BUF - bufPos);
          expect(s.proc.copy_file_range(s.dmabuf, bufPos, fd, filePos, len), `step ${i}`).toBe(n);
          if (n > 0) {
            fileLen = Math.max(fileLen, filePos + n);
            file.set(buffer.subarray(bufPos, bufPos + n), filePos);
          }
        }
      }
      expectSame(bufferBytes(s), buffer, "the buffer (line 301)");
      expectSame(fileBytes(s), file.subarray(0, fileLen), "the file (line 302)");
    });
  });
});

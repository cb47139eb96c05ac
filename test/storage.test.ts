/*
 * The storage device: a device worker backed by a real file, opened as
 * /dev/nvme0n1 through the Process, read and written through io_uring and
 * pread/pwrite with O_DIRECT's alignment rules; its DMA goes through a
 * per-I/O IOMMU mapping; a crashed device fails requests with EIO.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { spawnStorage, type StorageDevice } from "../src/devices/storage.js";
import { Process } from "../src/uapi/process.js";
import { O_DIRECT, O_RDONLY, O_RDWR } from "../src/uapi/uapi.js";
import { IORING_SETUP_SQPOLL, IOSQE_FIXED_FILE } from "../src/io_uring/io_uring.js";
import {
  io_uring_cqe_seen, io_uring_get_sqe, io_uring_prep_read, io_uring_prep_write, io_uring_queue_init, io_uring_register_files,
  io_uring_sqe_set_data, io_uring_sqe_set_flags, io_uring_submit, io_uring_wait_cqe_timeout, type Cqe, type IoUring,
} from "../src/io_uring/liburing.js";
import type { IoUringFile } from "../src/uapi/io_uring_file.js";
import { LabSet } from "./helpers/lab.js";
import { exitRings } from "./helpers/io-uring.js";
import { expectErrno } from "./helpers/errors.js";
import { brokenCanary, guard } from "./helpers/canary.js";
import { prng } from "./helpers/prng.js";
import { expectSame } from "./helpers/bytes.js";

const KiB = 1024;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 32 * 1024 * KiB });
const storages: StorageDevice[] = [];
const rings: IoUring[] = [];

afterEach(async () => {
  await exitRings(rings);
  await Promise.all(storages.splice(0).map((s) => s.shutdown()));
  labs.closeAll();
});

async function storage(blockSize: number, flags = 0) {
  const lab = await labs.create();
  const st = await spawnStorage(lab, { size: 1024 * KiB, blockSize });
  storages.push(st);
  const content = prng(blockSize).bytes(new Uint8Array(st.capacity));
  writeFileSync(st.path, content);
  const proc = new Process(lab);
  const ring = io_uring_queue_init(proc, 16, flags === 0 ? 0 : { flags, sq_thread_idle: 20 });
  rings.push(ring);
  await (proc.file(ring.fd) as IoUringFile).started;
  return { lab, st, content, proc, ring };
}

function reap(ring: IoUring, n: number): Map<number, Cqe> {
  const out = new Map<number, Cqe>();
  for (let i = 0; i < n; i++) {
    const { err, cqe } = io_uring_wait_cqe_timeout(ring, 10_000);
    if (err !== 0) throw new Error(`wait_cqe: ${err} after ${i} of ${n}`);
    out.set(cqe!.user_data, cqe!);
    io_uring_cqe_seen(ring, cqe!);
  }
  return out;
}

describe("storage device", () => {
  test("the caller's file keeps its size (a whole number of blocks of it is the capacity); size grows it; a file with no whole block is EINVAL", async () => {
    const lab = await labs.create();
    const dir = mkdtempSync(join(tmpdir(), "storage-path-"));
    try {
      const file = join(dir, "disk.img");
      const bytes = prng(9).bytes(new Uint8Array(40 * KiB + 100));
      writeFileSync(file, bytes);
      const st = await spawnStorage(lab, { path: file, blockSize: 4096 });
      storages.push(st);
      expect(st.capacity).toBe(40 * KiB);
      await st.shutdown();
      expect(Buffer.compare(readFileSync(file), Buffer.from(bytes))).toBe(0); // not grown, not written
      const grown = await spawnStorage(lab, { name: "nvme1n1", path: file, size: 64 * KiB, blockSize: 4096 });
      storages.push(grown);
      expect(grown.capacity).toBe(64 * KiB);
      expect(readFileSync(file).length).toBe(64 * KiB);
      const empty = join(dir, "empty.img");
      writeFileSync(empty, new Uint8Array(100));
      await expect(spawnStorage(lab, { name: "nvme2n1", path: empty, blockSize: 512 })).rejects.toMatchObject({ code: "EINVAL" });
      expect(readFileSync(empty).length).toBe(100);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("READ from /dev/nvme0n1 (4096-byte blocks) lands in user memory between canaries, through a per-I/O IOMMU mapping that is gone afterwards", async () => {
    const { lab, st, content, proc, ring } = await storage(4096);
    const fd = proc.open("/dev/nvme0n1", O_RDONLY | O_DIRECT);
    const area = lab.alloc(64 * KiB, { align: 4096 });
    const g = guard(area, 8 * KiB, 16 * KiB, 4 * KiB);
    const s = io_uring_get_sqe(ring)!;
    io_uring_prep_read(s, fd, area.subarray(8 * KiB, 24 * KiB), 16 * KiB, 12 * KiB);
    io_uring_sqe_set_data(s, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(16 * KiB);
    expect(area.subarray(8 * KiB, 24 * KiB)).toEqual(content.subarray(12 * KiB, 28 * KiB));
    expect(brokenCanary(g, 4 * KiB)).toBeUndefined();
    expect(st.record.iommu.stats().mappings).toBe(0);
    expect(st.device.stats().jobsDone).toBeGreaterThan(0);
  });

  test("O_DIRECT alignment (512-byte blocks): a misaligned offset, length or buffer is -EINVAL and nothing moves; a read at the end is 0 and a read across it short", async () => {
    const { lab, st, content, proc, ring } = await storage(512);
    const fd = proc.open("/dev/nvme0n1", O_RDWR);
    const buf = lab.alloc(4 * KiB, { align: 4096 });
    buf.fill(0xa5);
    const cases: [number, number, number, number][] = [
      [-22, buf.byteOffset, 512, 100],
      [-22, buf.byteOffset, 100, 0],
      [-22, buf.byteOffset + 8, 512, 0],
      [0, buf.byteOffset, 512, st.capacity],
      [512, buf.byteOffset, 1024, st.capacity - 512],
    ];
    cases.forEach(([, addr, len, off], i) => {
      const s = io_uring_get_sqe(ring)!;
      io_uring_prep_read(s, fd, addr, len, off);
      io_uring_sqe_set_data(s, i);
    });
    io_uring_submit(ring);
    const got = reap(ring, cases.length);
    cases.forEach(([res], i) => expect(got.get(i)!.res, `case ${i}`).toBe(res));
    expect(buf.subarray(0, 512)).toEqual(content.subarray(st.capacity - 512));
    expect(buf.subarray(512).every((x) => x === 0xa5)).toBe(true);
    expectErrno(() => proc.pread(fd, buf.subarray(0, 100), 0), "EINVAL");
    expectErrno(() => proc.pread(fd, new Uint8Array(512), 0), "EFAULT");
  });

  test("WRITE changes exactly the requested blocks of the backing file", async () => {
    const { lab, st, content, proc, ring } = await storage(512);
    const fd = proc.open("/dev/nvme0n1", O_RDWR | O_DIRECT);
    const src = lab.alloc(1536, { align: 512 });
    prng(9).bytes(src);
    const s = io_uring_get_sqe(ring)!;
    io_uring_prep_write(s, fd, src, 1536, 5120);
    io_uring_sqe_set_data(s, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(1536);
    const want = Uint8Array.from(content);
    want.set(src, 5120);
    expectSame(new Uint8Array(readFileSync(st.path)), want, "the backing file");
    // pwrite through the fd waits for the device the same way.
    expect(proc.pwrite(fd, src.subarray(0, 512), 0)).toBe(512);
    expect(new Uint8Array(readFileSync(st.path)).subarray(0, 512)).toEqual(src.subarray(0, 512));
  });

  test("a crashed storage device fails requests with -EIO; after shutdown its open files get ENODEV", async () => {
    const { lab, st, proc, ring } = await storage(512);
    const fd = proc.open("/dev/nvme0n1", O_RDWR);
    const buf = lab.alloc(4 * KiB, { align: 4096 });
    await st.crash();
    const s = io_uring_get_sqe(ring)!;
    io_uring_prep_read(s, fd, buf, 512, 0);
    io_uring_sqe_set_data(s, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(-5);
    await st.shutdown();
    expectErrno(() => proc.pread(fd, buf.subarray(0, 512), 0), "ENODEV");
    expectErrno(() => proc.open("/dev/nvme0n1", O_RDWR), "ENOENT");
  });

  test("SQPOLL: reads from the registered storage device complete without io_uring_enter", async () => {
    const { lab, content, proc, ring } = await storage(4096, IORING_SETUP_SQPOLL);
    const fd = proc.open("/dev/nvme0n1", O_RDONLY | O_DIRECT);
    expect(io_uring_register_files(ring, [fd])).toBe(0);
    const bufs = [0, 1, 2, 3].map(() => lab.alloc(8 * KiB, { align: 4096 }));
    bufs.forEach((b, i) => {
      const s = io_uring_get_sqe(ring)!;
      io_uring_prep_read(s, 0, b, 8 * KiB, i * 8 * KiB);
      io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
      io_uring_sqe_set_data(s, i);
    });
    io_uring_submit(ring);
    const got = reap(ring, 4);
    bufs.forEach((b, i) => {
      expect(got.get(i)!.res).toBe(8 * KiB);
      expect(b).toEqual(content.subarray(i * 8 * KiB, (i + 1) * 8 * KiB));
    });
  });
});

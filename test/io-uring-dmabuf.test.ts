/*
 * Registered dma-bufs, the rules of the io_uring dma-buf read/write series:
 * registration with a target file makes the token (a dynamic attachment of
 * the storage device); the first I/O maps, later ones reuse the map;
 * invalidation drops the map while requests in flight keep theirs and the
 * next request maps again; revoke fails new requests, and no byte lands in
 * a page after it was unmapped (canaries); fixed I/O against another file is
 * refused; zero length maps nothing; the I/O adds no fence.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { afterEach, describe, expect, test } from "vitest";
import { spawnStorage, type StorageDevice } from "../src/devices/storage.js";
import { dmaBufInvalidateMappings, dmaBufRevoke } from "../src/dmabuf/attachment.js";
import { Process } from "../src/uapi/process.js";
import { O_DIRECT, O_RDWR, DMA_HEAP_IOCTL_ALLOC } from "../src/uapi/uapi.js";
import type { DmaBufFile } from "../src/uapi/dma_buf_file.js";
import { IORING_REGISTER_BUFFERS_UPDATE, IORING_RSRC_F_EXTENDED_UPDATE } from "../src/io_uring/io_uring.js";
import { BUF_ADDR } from "../src/io_uring/table.js";
import { dmaTokenMaps } from "../src/io_uring/dma_token.js";
import {
  io_uring_cqe_seen, io_uring_get_sqe, io_uring_prep_read_fixed, io_uring_prep_write_fixed, io_uring_queue_init,
  io_uring_prep_readv_fixed, io_uring_prep_writev_fixed, io_uring_register_buffers, io_uring_sqe_set_data, io_uring_submit, io_uring_wait_cqe_timeout, type Cqe, type IoUring,
} from "../src/io_uring/liburing.js";
import { DMA_RESV_USAGE_BOOKKEEP } from "../src/sync/resv.js";
import { LabSet } from "./helpers/lab.js";
import { exitRings } from "./helpers/io-uring.js";
import { expectErrno } from "./helpers/errors.js";
import { prng } from "./helpers/prng.js";
import { expectSame } from "./helpers/bytes.js";

const KiB = 1024;
const BUF = 64 * KiB;
const UADDR = 0x1000_0000;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 32 * 1024 * KiB });
const storages: StorageDevice[] = [];
const rings: IoUring[] = [];

afterEach(async () => {
  await exitRings(rings);
  await Promise.all(storages.splice(0).map((s) => s.shutdown()));
  labs.closeAll();
});

async function setup() {
  const lab = await labs.create();
  const st = await spawnStorage(lab, { size: 4 * 1024 * KiB, blockSize: 4096 });
  storages.push(st);
  const content = prng(14).bytes(new Uint8Array(st.capacity));
  writeFileSync(st.path, content);
  const proc = new Process(lab);
  const ring = io_uring_queue_init(proc, 64);
  rings.push(ring);
  const heap = proc.open("/dev/dma_heap/system", O_RDWR);
  const alloc = { len: BUF, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
  const dmabuf = alloc.fd;
  const disk = proc.open("/dev/nvme0n1", O_RDWR | O_DIRECT);
  // A one-slot sparse table, then the dma-buf into slot 0 against the disk.
  expect(io_uring_register_buffers(ring, [{ iov_base: 0, iov_len: 0 }])).toBe(0);
  expect(proc.io_uring_register(ring.fd, IORING_REGISTER_BUFFERS_UPDATE,
    { offset: 0, flags: IORING_RSRC_F_EXTENDED_UPDATE, data: [{ iov_uaddr: UADDR, target_fd: disk, dmabuf_fd: dmabuf }], nr: 1 }, 1)).toBe(1);
  const buf = (proc.file(dmabuf) as DmaBufFile).buf;
  const token = () => lab.sync.u32[((lab.sync.u32[(ring.ring.offset + 408) >>> 2]) + BUF_ADDR) >>> 2];
  return { lab, st, content, proc, ring, dmabuf, disk, buf, token };
}

function read(ring: IoUring, fd: number, offset: number, len: number, pos: number, data: number): void {
  const s = io_uring_get_sqe(ring)!;
  io_uring_prep_read_fixed(s, fd, UADDR + offset, len, pos, 0);
  io_uring_sqe_set_data(s, data);
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

function bufBytes(proc: Process, fd: number): Uint8Array {
  const out = new Uint8Array(BUF);
  expect(proc.pread(fd, out, 0)).toBe(BUF);
  return out;
}

describe("registered dma-bufs", () => {
  test("the first fixed read maps the token, later ones reuse the map; the data lands at the offset named by iov_uaddr + offset", async () => {
    const { st, content, proc, ring, dmabuf, disk, token } = await setup();
    const mappingsBefore = st.record.iommu.stats().mappings; // the token's attachment is not mapped yet
    expect(mappingsBefore).toBe(0);
    for (let i = 0; i < 4; i++) read(ring, disk, i * 16 * KiB, 16 * KiB, (i + 2) * 16 * KiB, i);
    io_uring_submit(ring);
    const got = reap(ring, 4);
    for (let i = 0; i < 4; i++) expect(got.get(i)!.res).toBe(16 * KiB);
    expectSame(bufBytes(proc, dmabuf), content.subarray(32 * KiB, 32 * KiB + BUF), "the dma-buf");
    expect(dmaTokenMaps(proc.lab, token())).toBe(1);
    expect(st.record.iommu.stats().mappings).toBe(1); // premapped: stays
    read(ring, disk, 0, 4096, 0, 9);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(9)!.res).toBe(4096);
    // WRITE_FIXED: the dma-buf's bytes at offset 8 KiB go to the disk at 1 MiB, through the same map.
    const s = io_uring_get_sqe(ring)!;
    io_uring_prep_write_fixed(s, disk, UADDR + 8 * KiB, 8 * KiB, 1024 * KiB, 0);
    io_uring_sqe_set_data(s, 10);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(10)!.res).toBe(8 * KiB);
    const file = new Uint8Array(readFileSync(st.path));
    expectSame(file.subarray(1024 * KiB, 1032 * KiB), bufBytes(proc, dmabuf).subarray(8 * KiB, 16 * KiB), "the disk after WRITE_FIXED");
    expectSame(file.subarray(1032 * KiB), content.subarray(1032 * KiB), "the disk after the written range");
    expectSame(file.subarray(0, 1024 * KiB), content.subarray(0, 1024 * KiB), "the disk before the written range");
    expect(dmaTokenMaps(proc.lab, token())).toBe(1);
  });

  test("past the buffer is -EFAULT; zero length completes with 0; another open of the same device works; fixed I/O against another device is -EINVAL and reaches nothing", async () => {
    const { st, proc, ring, disk, token } = await setup();
    const other = proc.open("/dev/nvme0n1", O_RDWR | O_DIRECT); // another open of the same device is fine
    const cases: [number, () => void][] = [
      [0, () => read(ring, disk, 0, 0, 0, 1)],
      [-14, () => read(ring, disk, BUF - 4096, 8192, 0, 2)],
      [-14, () => { const s = io_uring_get_sqe(ring)!; io_uring_prep_read_fixed(s, disk, UADDR - 4096, 4096, 0, 0); io_uring_sqe_set_data(s, 3); }],
      [4096, () => read(ring, other, 0, 4096, 0, 4)],
    ];
    for (const [, prep] of cases) prep();
    io_uring_submit(ring);
    const got = reap(ring, cases.length);
    expect([1, 2, 3, 4].map((k) => got.get(k)!.res)).toEqual(cases.map(([r]) => r));
    expect(dmaTokenMaps(proc.lab, token())).toBe(1);
    // Another storage device: the token is not for it.
    const st2 = await spawnStorage(proc.lab, { name: "nvme1n1", size: 1024 * KiB, blockSize: 4096 });
    storages.push(st2);
    const disk2 = proc.open("/dev/nvme1n1", O_RDWR | O_DIRECT);
    read(ring, disk2, 0, 4096, 0, 5);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(5)!.res).toBe(-22);
    expect(st2.device.stats().jobsDone).toBe(0);
    void st;
  });

  test("vectored fixed I/O (READV_FIXED, WRITEV_FIXED) on a registered dma-buf is -EOPNOTSUPP and maps nothing", async () => {
    const { lab, st, ring, disk, token, proc } = await setup();
    const iov = lab.alloc(16);
    new Uint32Array(iov.buffer, iov.byteOffset, 4).set([UADDR, 0, 4096, 0]);
    let s = io_uring_get_sqe(ring)!;
    io_uring_prep_readv_fixed(s, disk, iov, 1, 0, 0);
    io_uring_sqe_set_data(s, 1);
    s = io_uring_get_sqe(ring)!;
    io_uring_prep_writev_fixed(s, disk, iov, 1, 0, 0);
    io_uring_sqe_set_data(s, 2);
    io_uring_submit(ring);
    const got = reap(ring, 2);
    expect([got.get(1)!.res, got.get(2)!.res]).toEqual([-95, -95]);
    expect(dmaTokenMaps(proc.lab, token())).toBe(0);
    expect(st.device.stats().jobsDone).toBe(0);
  });

  test("the I/O adds no fence to the dma-buf's reservation object", async () => {
    const { proc, ring, disk, buf } = await setup();
    const before = buf.resv.getFences(DMA_RESV_USAGE_BOOKKEEP);
    read(ring, disk, 0, 4096, 0, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(4096);
    const after = buf.resv.getFences(DMA_RESV_USAGE_BOOKKEEP);
    expect(after.length).toBe(before.length);
    for (const f of [...before, ...after]) f.put();
    void proc;
  });

  test("move_notify (invalidation) drops the token's map while a request in flight keeps its mapping; the next request maps again", async () => {
    const { st, content, proc, ring, dmabuf, disk, token } = await setup();
    read(ring, disk, 0, BUF, 0, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(BUF);
    expect(dmaTokenMaps(proc.lab, token())).toBe(1);
    // A request in flight (submitted, not reaped), then the exporter invalidates.
    read(ring, disk, 0, BUF, BUF, 2);
    io_uring_submit(ring);
    expect(dmaBufInvalidateMappings((proc.file(dmabuf) as DmaBufFile).buf)).toBe(1);
    // The request's map (and its IOMMU mapping) lives until it completes.
    expect(st.record.iommu.stats().mappings).toBe(1);
    expect(reap(ring, 1).get(2)!.res).toBe(BUF);
    expectSame(bufBytes(proc, dmabuf), content.subarray(BUF, 2 * BUF), "the dma-buf after the in-flight read");
    // The next request maps again, through a fresh attachment.
    read(ring, disk, 0, BUF, 2 * BUF, 3);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(3)!.res).toBe(BUF);
    expect(dmaTokenMaps(proc.lab, token())).toBe(2);
    expect(st.record.iommu.stats().mappings).toBe(1);
    expectSame(bufBytes(proc, dmabuf), content.subarray(2 * BUF, 3 * BUF), "the dma-buf after the remap");
  });

  test("revoke with I/O in flight: every request either completed or failed with -EFAULT, no byte lands in a failed request's range after the unmap (canaries), and new requests are -ENODEV", async () => {
    const { proc, ring, dmabuf, disk, buf } = await setup();
    const N = 16;
    const chunk = BUF / N;
    // Warm the map, then canaries in the whole buffer.
    read(ring, disk, 0, 4096, 0, 100);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(100)!.res).toBe(4096);
    expect(proc.pwrite(dmabuf, new Uint8Array(BUF).fill(0xa5), 0)).toBe(BUF);
    for (let i = 0; i < N; i++) read(ring, disk, i * chunk, chunk, i * chunk, i);
    io_uring_submit(ring);
    dmaBufRevoke(buf);
    const got = reap(ring, N);
    const bytes = bufBytes(proc, dmabuf);
    let failed = 0;
    for (let i = 0; i < N; i++) {
      const res = got.get(i)!.res;
      expect([chunk, -14]).toContain(res);
      if (res === -14) {
        failed++;
        expect(bytes.subarray(i * chunk, (i + 1) * chunk).every((x) => x === 0xa5), `request ${i}'s range`).toBe(true);
      }
    }
    console.log(`revoke with ${N} reads in flight: ${N - failed} had completed their DMA, ${failed} faulted`);
    read(ring, disk, 0, 4096, 0, 200);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(200)!.res).toBe(-19);
  });

  test("bad updates change nothing: a closed dmabuf_fd or target_fd is EBADF, a regular target EOPNOTSUPP, a slot past the table EINVAL", async () => {
    const { proc, ring, dmabuf, disk, token } = await setup();
    const t = token();
    const up = (e: object, offset = 0) => proc.io_uring_register(ring.fd, IORING_REGISTER_BUFFERS_UPDATE, { offset, flags: IORING_RSRC_F_EXTENDED_UPDATE, data: [e], nr: 1 }, 1);
    expectErrno(() => up({ iov_uaddr: 0, target_fd: disk, dmabuf_fd: 999 }), "EBADF");
    expectErrno(() => up({ iov_uaddr: 0, target_fd: 999, dmabuf_fd: dmabuf }), "EBADF");
    expectErrno(() => up({ iov_uaddr: 0, target_fd: dmabuf, dmabuf_fd: dmabuf }), "EOPNOTSUPP");
    expectErrno(() => up({ iov_uaddr: 0, target_fd: disk, dmabuf_fd: dmabuf }, 1), "EINVAL");
    expect(token()).toBe(t);
  });
});

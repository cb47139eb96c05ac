/*
 * io_uring in the arena: the SQ/CQ rings in liburing's layout, plain mode
 * and SQPOLL, the opcodes, links and drain, registered files and buffers,
 * and bad SQEs failing alone (CQE res = -errno). Regular files are real
 * files beneath a temporary root directory.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { Lab } from "../src/api/lab.js";
import { Process } from "../src/uapi/process.js";
import { O_CREAT, O_DIRECT, O_RDONLY, O_RDWR } from "../src/uapi/uapi.js";
import {
  IORING_SETUP_SQPOLL, IOSQE_FIXED_FILE, IOSQE_IO_DRAIN, IOSQE_IO_HARDLINK, IOSQE_IO_LINK, IORING_UNREGISTER_BUFFERS, CQ_OVERFLOW, SQ_FLAGS, IORING_SQ_NEED_WAKEUP,
} from "../src/io_uring/io_uring.js";
import {
  io_uring_cqe_seen, io_uring_get_sqe, io_uring_prep_nop, io_uring_prep_read, io_uring_prep_read_fixed, io_uring_prep_readv, io_uring_prep_readv_fixed, io_uring_prep_rw,
  io_uring_prep_write, io_uring_prep_write_fixed, io_uring_prep_writev, io_uring_prep_writev_fixed, io_uring_queue_init, io_uring_register_buffers,
  io_uring_register_files, io_uring_sqe_set_data, io_uring_sqe_set_flags, io_uring_submit, io_uring_submit_and_wait, io_uring_wait_cqe,
  io_uring_wait_cqe_timeout, type Cqe, type IoUring, type Sqe,
} from "../src/io_uring/liburing.js";
import type { IoUringFile } from "../src/uapi/io_uring_file.js";
import { LabSet } from "./helpers/lab.js";
import { exitRings } from "./helpers/io-uring.js";
import { expectErrno } from "./helpers/errors.js";
import { brokenCanary, guard } from "./helpers/canary.js";
import { prng } from "./helpers/prng.js";

const KiB = 1024;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 32 * 1024 * KiB });
const dirs: string[] = [];
const rings: IoUring[] = [];

afterEach(async () => {
  await exitRings(rings);
  labs.closeAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function root(): string {
  const d = mkdtempSync(join(tmpdir(), "dmabuf-lab-uring-"));
  dirs.push(d);
  return d;
}

function pattern(n: number, seed: number): Uint8Array {
  return prng(seed).bytes(new Uint8Array(n));
}

async function setup(flags = 0, entries = 8): Promise<{ lab: Lab; proc: Process; dir: string; ring: IoUring }> {
  const lab = await labs.create();
  const dir = root();
  const proc = new Process(lab, { root: dir });
  const ring = io_uring_queue_init(proc, entries, flags === 0 ? 0 : { flags, sq_thread_idle: 20 });
  rings.push(ring);
  await (proc.file(ring.fd) as IoUringFile).started;
  return { lab, proc, dir, ring };
}

function sqe(ring: IoUring): Sqe {
  const s = io_uring_get_sqe(ring);
  if (s === null) throw new Error("SQ full");
  return s;
}

/** Waits for n CQEs (bounded), sees them, returns them by user_data. */
function reap(ring: IoUring, n: number): Map<number, Cqe> {
  const out = new Map<number, Cqe>();
  for (let i = 0; i < n; i++) {
    const { err, cqe } = io_uring_wait_cqe_timeout(ring, 5000);
    if (err !== 0) throw new Error(`wait_cqe: ${err} after ${i} of ${n}`);
    out.set(cqe!.user_data, cqe!);
    io_uring_cqe_seen(ring, cqe!);
  }
  return out;
}

describe("io_uring rings (plain mode)", () => {
  test("io_uring_setup: entries rounded to a power of two, CQ twice as big, liburing's offsets; bad entries EINVAL with no fd made", async () => {
    const lab = await labs.create();
    const proc = new Process(lab);
    const params: Parameters<Process["io_uring_setup"]>[1] = {};
    const fd = proc.io_uring_setup(5, params);
    expect(params.sq_entries).toBe(8);
    expect(params.cq_entries).toBe(16);
    expect(params.sq_off!.tail - params.sq_off!.head).toBeGreaterThanOrEqual(64); // head and tail on their own lines
    expect(lab.arena.u32[(params.ring! + params.sq_off!.ring_mask) >>> 2]).toBe(7);
    expectErrno(() => proc.io_uring_setup(0), "EINVAL");
    expectErrno(() => proc.io_uring_setup(8192), "EINVAL");
    expectErrno(() => proc.io_uring_setup(8, { flags: 1 << 20 }), "EINVAL");
    expect(proc.fds).toEqual([0, 1, 2, fd]); // stdin, stdout, stderr and the ring
    proc.close(fd);
  });

  test("NOP: every CQE carries its SQE's user_data", async () => {
    const { ring } = await setup();
    for (let i = 0; i < 6; i++) {
      const s = sqe(ring);
      io_uring_prep_nop(s);
      io_uring_sqe_set_data(s, 2 ** 40 + i);
    }
    expect(io_uring_submit(ring)).toBe(6);
    const got = reap(ring, 6);
    for (let i = 0; i < 6; i++) expect(got.get(2 ** 40 + i)?.res).toBe(0);
  });

  test("READ and WRITE of a regular file land in user memory between canaries, and touch no byte of the file outside the range", async () => {
    const { lab, proc, dir, ring } = await setup();
    const content = pattern(64 * KiB, 1);
    writeFileSync(join(dir, "data.bin"), content);
    const fd = proc.open("data.bin", O_RDWR);
    const area = lab.alloc(16 * KiB);
    const g = guard(area, 4 * KiB, 5000);
    let s = sqe(ring);
    io_uring_prep_read(s, fd, area.subarray(4 * KiB, 4 * KiB + 5000), 5000, 777);
    io_uring_sqe_set_data(s, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(5000);
    expect(brokenCanary(g)).toBeUndefined();
    expect(area.subarray(4 * KiB, 4 * KiB + 5000)).toEqual(content.subarray(777, 777 + 5000));
    // WRITE: only [1000, 1000 + 300) of the file changes.
    const src = lab.alloc(300);
    src.set(pattern(300, 2));
    s = sqe(ring);
    io_uring_prep_write(s, fd, src, 300, 1000);
    io_uring_sqe_set_data(s, 2);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(2)!.res).toBe(300);
    const after = readFileSync(join(dir, "data.bin"));
    const want = Uint8Array.from(content);
    want.set(src, 1000);
    expect(new Uint8Array(after)).toEqual(want);
  });

  test("READV/WRITEV with struct iovecs in user memory; offset -1 uses and advances the file position", async () => {
    const { lab, proc, dir, ring } = await setup();
    writeFileSync(join(dir, "v.bin"), new Uint8Array(0));
    const fd = proc.open("v.bin", O_RDWR);
    const a = lab.alloc(100); a.fill(1);
    const b = lab.alloc(200); b.fill(2);
    const iov = lab.alloc(32);
    const w = new Uint32Array(iov.buffer, iov.byteOffset, 8);
    w.set([a.byteOffset, 0, 100, 0, b.byteOffset, 0, 200, 0]);
    let s = sqe(ring);
    io_uring_prep_writev(s, fd, iov, 2, -1);
    io_uring_sqe_set_data(s, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(300);
    expect(proc.lseek(fd, 0, 1)).toBe(300);
    a.fill(0); b.fill(0);
    s = sqe(ring);
    io_uring_prep_readv(s, fd, iov, 2, 0);
    io_uring_sqe_set_data(s, 2);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(2)!.res).toBe(300);
    expect(a.every((x) => x === 1) && b.every((x) => x === 2)).toBe(true);
  });

  test("READV_FIXED/WRITEV_FIXED: iovecs inside registered buffer buf_index move bytes; an iovec outside it is -EFAULT with nothing moved", async () => {
    const { lab, proc, dir, ring } = await setup();
    const content = pattern(8 * KiB, 9);
    writeFileSync(join(dir, "vf.bin"), content);
    const fd = proc.open("vf.bin", O_RDWR);
    const reg = lab.alloc(8 * KiB, { align: 4096 });
    const outside = lab.alloc(4 * KiB, { align: 4096 });
    expect(io_uring_register_buffers(ring, [reg])).toBe(0);
    const iov = lab.alloc(32);
    const w = new Uint32Array(iov.buffer, iov.byteOffset, 8);
    w.set([reg.byteOffset + 100, 0, 1000, 0, reg.byteOffset + 4096, 0, 3000, 0]);
    reg.fill(0);
    let s = sqe(ring);
    io_uring_prep_readv_fixed(s, fd, iov, 2, 500, 0);
    io_uring_sqe_set_data(s, 1);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(1)!.res).toBe(4000);
    expect(reg.subarray(100, 1100)).toEqual(content.subarray(500, 1500));
    expect(reg.subarray(4096, 7096)).toEqual(content.subarray(1500, 4500));
    expect(reg.subarray(0, 100).every((x) => x === 0) && reg.subarray(1100, 4096).every((x) => x === 0)).toBe(true);
    // WRITEV_FIXED back at 0: the file's first 4000 bytes become what was read.
    s = sqe(ring);
    io_uring_prep_writev_fixed(s, fd, iov, 2, 0, 0);
    io_uring_sqe_set_data(s, 2);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(2)!.res).toBe(4000);
    const want = Uint8Array.from(content);
    want.set(content.subarray(500, 4500), 0);
    expect(new Uint8Array(readFileSync(join(dir, "vf.bin")))).toEqual(want);
    // One iovec outside the registered buffer (user memory, but not registered): -EFAULT, no byte read.
    outside.fill(0xa5);
    w.set([reg.byteOffset, 0, 16, 0, outside.byteOffset, 0, 16, 0]);
    s = sqe(ring);
    io_uring_prep_readv_fixed(s, fd, iov, 2, 0, 0);
    io_uring_sqe_set_data(s, 3);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(3)!.res).toBe(-14);
    expect(outside.every((x) => x === 0xa5)).toBe(true);
    expect(reg.subarray(0, 16).every((x) => x === 0)).toBe(true);
  });

  test("a bad SQE fails alone with -errno and its neighbours complete: unknown opcode, closed fd, memory outside user memory, O_DIRECT misalignment", async () => {
    const { lab, proc, dir, ring } = await setup(0, 16);
    writeFileSync(join(dir, "f.bin"), pattern(8 * KiB, 3));
    const fd = proc.open("f.bin", O_RDONLY);
    const dfd = proc.open("f.bin", O_RDONLY | O_DIRECT);
    const closed = proc.open("f.bin", O_RDONLY);
    proc.close(closed);
    const buf = lab.alloc(4 * KiB, { align: 4096 });
    const cases: [number, (s: Sqe) => void][] = [
      [0, (s) => io_uring_prep_nop(s)],
      [-22, (s) => io_uring_prep_rw(200, s, fd, buf.byteOffset, 16, 0)],
      [-9, (s) => io_uring_prep_read(s, closed, buf, 16, 0)],
      [-9, (s) => io_uring_prep_write(s, fd, buf, 16, 0)], // O_RDONLY
      [-14, (s) => io_uring_prep_read(s, fd, 64, 16, 0)], // the control block: not user memory
      [-22, (s) => io_uring_prep_read(s, dfd, buf, 512, 100)], // O_DIRECT: offset
      [-22, (s) => io_uring_prep_read(s, dfd, buf.byteOffset + 8, 512, 0)], // O_DIRECT: address
      [512, (s) => io_uring_prep_read(s, dfd, buf, 512, 512)],
      [16, (s) => io_uring_prep_read(s, fd, buf, 16, 0)],
    ];
    cases.forEach(([, prep], i) => {
      const s = sqe(ring);
      prep(s);
      io_uring_sqe_set_data(s, i + 1);
    });
    expect(io_uring_submit(ring)).toBe(cases.length);
    const got = reap(ring, cases.length);
    cases.forEach(([res], i) => expect(got.get(i + 1)!.res, `case ${i}`).toBe(res));
  });

  test("IOSQE_IO_LINK: a write then a read of the same bytes run in order; a failure cancels the rest of the chain (-ECANCELED), a hard link does not", async () => {
    const { lab, proc, dir, ring } = await setup();
    writeFileSync(join(dir, "l.bin"), new Uint8Array(4 * KiB));
    const fd = proc.open("l.bin", O_RDWR);
    const src = lab.alloc(512); src.set(pattern(512, 4));
    const dst = lab.alloc(512);
    let s = sqe(ring);
    io_uring_prep_write(s, fd, src, 512, 0); io_uring_sqe_set_flags(s, IOSQE_IO_LINK); io_uring_sqe_set_data(s, 1);
    s = sqe(ring);
    io_uring_prep_read(s, fd, dst, 512, 0); io_uring_sqe_set_data(s, 2);
    io_uring_submit(ring);
    const got = reap(ring, 2);
    expect([got.get(1)!.res, got.get(2)!.res]).toEqual([512, 512]);
    expect(dst).toEqual(src);
    // A failing head: the linked requests are cancelled.
    s = sqe(ring);
    io_uring_prep_read(s, 999, dst, 512, 0); io_uring_sqe_set_flags(s, IOSQE_IO_LINK); io_uring_sqe_set_data(s, 3);
    s = sqe(ring);
    io_uring_prep_nop(s); io_uring_sqe_set_flags(s, IOSQE_IO_LINK); io_uring_sqe_set_data(s, 4);
    s = sqe(ring);
    io_uring_prep_nop(s); io_uring_sqe_set_data(s, 5);
    // A hard link goes on after a failure.
    s = sqe(ring);
    io_uring_prep_read(s, 999, dst, 512, 0); io_uring_sqe_set_flags(s, IOSQE_IO_HARDLINK); io_uring_sqe_set_data(s, 6);
    s = sqe(ring);
    io_uring_prep_nop(s); io_uring_sqe_set_data(s, 7);
    io_uring_submit(ring);
    const more = reap(ring, 5);
    expect([3, 4, 5, 6, 7].map((k) => more.get(k)!.res)).toEqual([-9, -125, -125, -9, 0]);
  });

  test("a short read breaks a soft link", async () => {
    const { lab, proc, dir, ring } = await setup();
    writeFileSync(join(dir, "short.bin"), new Uint8Array(100));
    const fd = proc.open("short.bin", O_RDONLY);
    const dst = lab.alloc(512);
    let s = sqe(ring);
    io_uring_prep_read(s, fd, dst, 512, 0); io_uring_sqe_set_flags(s, IOSQE_IO_LINK); io_uring_sqe_set_data(s, 1);
    s = sqe(ring);
    io_uring_prep_nop(s); io_uring_sqe_set_data(s, 2);
    io_uring_submit(ring);
    const got = reap(ring, 2);
    expect([got.get(1)!.res, got.get(2)!.res]).toEqual([100, -125]);
  });

  test("READ_FIXED/WRITE_FIXED within a registered buffer; past its end, an unregistered index or after unregistering: -EFAULT with nothing read", async () => {
    const { lab, proc, dir, ring } = await setup(0, 16);
    const content = pattern(8 * KiB, 5);
    writeFileSync(join(dir, "fx.bin"), content);
    const fd = proc.open("fx.bin", O_RDWR);
    const area = lab.alloc(8 * KiB);
    const reg = area.subarray(KiB, 5 * KiB);
    expect(io_uring_register_buffers(ring, [reg])).toBe(0);
    expect(io_uring_register_buffers(ring, [reg])).toBe(-16); // EBUSY
    const g = guard(area, KiB, 4 * KiB, KiB);
    let s = sqe(ring);
    io_uring_prep_read_fixed(s, fd, reg.byteOffset + 100, 1000, 0, 0); io_uring_sqe_set_data(s, 1);
    s = sqe(ring);
    io_uring_prep_read_fixed(s, fd, reg.byteOffset + 4000, 200, 0, 0); io_uring_sqe_set_data(s, 2); // runs past the end
    s = sqe(ring);
    io_uring_prep_read_fixed(s, fd, reg.byteOffset, 100, 0, 1); io_uring_sqe_set_data(s, 3); // index 1 is not registered
    io_uring_submit(ring);
    const got = reap(ring, 3);
    expect([1, 2, 3].map((k) => got.get(k)!.res)).toEqual([1000, -14, -14]);
    expect(brokenCanary(g, KiB)).toBeUndefined();
    expect(reg.subarray(100, 1100)).toEqual(content.subarray(0, 1000));
    expect(reg.subarray(4000, 4096).every((x) => x === 0xa5)).toBe(true);
    s = sqe(ring);
    io_uring_prep_write_fixed(s, fd, reg.byteOffset + 100, 1000, 4096, 0); io_uring_sqe_set_data(s, 4);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(4)!.res).toBe(1000);
    expect(new Uint8Array(readFileSync(join(dir, "fx.bin"))).subarray(4096, 5096)).toEqual(content.subarray(0, 1000));
    proc.io_uring_register(ring.fd, IORING_UNREGISTER_BUFFERS, null, 0);
    expectErrno(() => proc.io_uring_register(ring.fd, IORING_UNREGISTER_BUFFERS, null, 0), "ENXIO");
    s = sqe(ring);
    io_uring_prep_read_fixed(s, fd, reg.byteOffset, 100, 0, 0); io_uring_sqe_set_data(s, 5);
    io_uring_submit(ring);
    expect(reap(ring, 1).get(5)!.res).toBe(-14);
  });

  test("registering buffers outside user memory or of zero length is EFAULT, and nothing is registered", async () => {
    const { proc, ring } = await setup();
    expect(io_uring_register_buffers(ring, [{ iov_base: 64, iov_len: 100 }])).toBe(-14);
    expect(io_uring_register_buffers(ring, [{ iov_base: proc.lab.alloc(64).byteOffset, iov_len: 0 }])).toBe(-14);
    expectErrno(() => proc.io_uring_register(ring.fd, IORING_UNREGISTER_BUFFERS, null, 0), "ENXIO");
  });

  test("registered files: IOSQE_FIXED_FILE uses the slot, an index past the table is -EBADF; the file stays open after close() of its fd", async () => {
    const { lab, proc, dir, ring } = await setup();
    const content = pattern(KiB, 6);
    writeFileSync(join(dir, "r.bin"), content);
    const fd = proc.open("r.bin", O_RDONLY);
    expect(io_uring_register_files(ring, [-1, fd])).toBe(0);
    proc.close(fd);
    const dst = lab.alloc(KiB);
    let s = sqe(ring);
    io_uring_prep_read(s, 1, dst, KiB, 0); io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE); io_uring_sqe_set_data(s, 1);
    s = sqe(ring);
    io_uring_prep_read(s, 0, dst, KiB, 0); io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE); io_uring_sqe_set_data(s, 2); // an empty slot
    s = sqe(ring);
    io_uring_prep_read(s, 2, dst, KiB, 0); io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE); io_uring_sqe_set_data(s, 3);
    io_uring_submit(ring);
    const got = reap(ring, 3);
    expect([1, 2, 3].map((k) => got.get(k)!.res)).toEqual([KiB, -9, -9]);
    expect(dst).toEqual(content);
  });

  test("IOSQE_IO_DRAIN: the drained request completes after every earlier one, and later ones after it", async () => {
    const { lab, proc, dir, ring } = await setup(0, 16);
    writeFileSync(join(dir, "d.bin"), new Uint8Array(KiB));
    const fd = proc.open("d.bin", O_RDWR);
    const buf = lab.alloc(KiB);
    const order: number[] = [];
    for (let i = 1; i <= 5; i++) {
      const s = sqe(ring);
      if (i === 3) { io_uring_prep_nop(s); io_uring_sqe_set_flags(s, IOSQE_IO_DRAIN); } else io_uring_prep_read(s, fd, buf, KiB, 0);
      io_uring_sqe_set_data(s, i);
    }
    io_uring_submit(ring);
    for (let i = 0; i < 5; i++) {
      const { cqe } = io_uring_wait_cqe(ring);
      order.push(cqe!.user_data);
      io_uring_cqe_seen(ring, cqe!);
    }
    expect(order.indexOf(3)).toBeGreaterThan(Math.max(order.indexOf(1), order.indexOf(2)));
    expect(order.indexOf(3)).toBeLessThan(Math.min(order.indexOf(4), order.indexOf(5)));
  });

  test("a full CQ keeps CQEs in the overflow list (IORING_FEAT_NODROP) and delivers them in order", async () => {
    const { ring } = await setup(0, 4); // CQ of 8
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) { const s = sqe(ring); io_uring_prep_nop(s); io_uring_sqe_set_data(s, round * 4 + i); }
      io_uring_submit(ring);
    }
    expect(ring.ring.word(CQ_OVERFLOW)).toBe(4);
    const seen: number[] = [];
    for (let i = 0; i < 12; i++) {
      const { cqe } = io_uring_wait_cqe(ring);
      seen.push(cqe!.user_data);
      io_uring_cqe_seen(ring, cqe!);
    }
    expect(seen).toEqual([...Array(12).keys()]);
  });

  test("wait_cqe_timeout with nothing in flight returns -ETIME at once", async () => {
    const { ring } = await setup();
    expect(io_uring_wait_cqe_timeout(ring, 10).err).toBe(-62);
  });
});

describe("paths beneath the lab's directory", () => {
  test("'..' out of the directory is EXDEV, a symbolic link anywhere is ELOOP, a missing file ENOENT: no fd is made", async () => {
    const lab = await labs.create();
    const dir = root();
    const outside = root();
    writeFileSync(join(outside, "secret"), "secret");
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "sub", "ok"), "ok");
    symlinkSync(join(outside, "secret"), join(dir, "link"));
    symlinkSync(outside, join(dir, "dirlink"));
    const proc = new Process(lab, { root: dir });
    expectErrno(() => proc.open("../" + outside.split("/").pop() + "/secret", O_RDONLY), "EXDEV");
    expectErrno(() => proc.open("sub/../../secret", O_RDONLY), "EXDEV");
    expectErrno(() => proc.open("link", O_RDONLY), "ELOOP");
    expectErrno(() => proc.open("dirlink/secret", O_RDONLY), "ELOOP");
    expectErrno(() => proc.open("nope", O_RDONLY), "ENOENT");
    expectErrno(() => proc.open("sub", O_RDONLY), "EISDIR");
    expect(proc.fds).toEqual([0, 1, 2]); // the standard streams only
    const fd = proc.open("/sub/../sub/ok", O_RDONLY);
    const created = proc.open("new.bin", O_RDWR | O_CREAT);
    expect(proc.fds).toEqual([0, 1, 2, fd, created]);
    expectErrno(() => new Process(lab).open("sub/ok", O_RDONLY), "ENOENT");
  });
});

describe("IORING_SETUP_SQPOLL", () => {
  test("the SQ thread consumes SQEs and posts CQEs without io_uring_enter, sleeps after sq_thread_idle, and is woken by SQ_WAKEUP", async () => {
    const { lab, proc, dir, ring } = await setup(IORING_SETUP_SQPOLL);
    const content = pattern(4 * KiB, 7);
    writeFileSync(join(dir, "s.bin"), content);
    const fd = proc.open("s.bin", O_RDONLY);
    expect(io_uring_register_files(ring, [fd])).toBe(0);
    const dst = lab.alloc(4 * KiB);
    for (let round = 0; round < 3; round++) {
      dst.fill(0);
      let s = sqe(ring);
      io_uring_prep_read(s, 0, dst, 4 * KiB, 0); io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE); io_uring_sqe_set_data(s, 10 + round);
      s = sqe(ring);
      io_uring_prep_read(s, fd, dst, 4 * KiB, 0); io_uring_sqe_set_data(s, 20 + round); // not a registered file
      expect(io_uring_submit_and_wait(ring, 0)).toBeGreaterThanOrEqual(0);
      const got = reap(ring, 2);
      expect(got.get(10 + round)!.res).toBe(4 * KiB);
      expect(got.get(20 + round)!.res).toBe(-9);
      expect(dst).toEqual(content);
      // The thread goes idle after sq_thread_idle (20 ms) and asks to be woken.
      const until = Date.now() + 5000;
      while ((ring.ring.load(SQ_FLAGS) & IORING_SQ_NEED_WAKEUP) === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      expect(ring.ring.load(SQ_FLAGS) & IORING_SQ_NEED_WAKEUP).toBe(IORING_SQ_NEED_WAKEUP);
    }
  });
});

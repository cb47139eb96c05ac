/*
 * The model-based fuzzer of the uapi and the object API.
 *
 * Contract: runFuzz(lab, options) draws `steps` operations from fast-check
 * arbitraries with a fixed seed (the same seed gives the same operations),
 * runs each against the real lab through one Process (and the object API's
 * DmaBuf) in this thread, and after every step checks the lab against a plain
 * reference model: the fd table, each description's kind, position and
 * O_NONBLOCK flag, every dma-buf's bytes (read from its pages, bypassing
 * fences), the status of every sync_file (from sw_sync timeline values), and
 * poll readiness. A call the model says must fail must fail with exactly that
 * DmaBufError code, and then the check shows it changed nothing; any other
 * exception is a finding. Teardown closes everything and requires the
 * arena's free space (pages, user memory, sync heap) to be what it was at
 * the start. The first finding ends the run; shrink() then looks for a
 * shorter sequence of the same operations that still fails (delta debugging
 * over the operation list, each replay on a fresh lab).
 *
 * Every wait is bounded without sleeping: read/write pass timeoutMs 0 and
 * SYNC START too, so a pending fence is ETIMEDOUT (EAGAIN with O_NONBLOCK),
 * which the model predicts.
 */
import fc from "fast-check";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ,
  DMA_BUF_SYNC_WRITE, DMA_HEAP_IOCTL_ALLOC, DmaBufError, DmaBufFile, F_GETFL, F_SETFL, O_NONBLOCK, O_RDWR, POLLIN, POLLOUT,
  Process, SEEK_CUR, SEEK_SET, SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC, SYNC_IOC_FILE_INFO, SYNC_IOC_MERGE,
  type DmaBuf, type Lab,
} from "../../src/index.js";
import { PAGE_SIZE } from "../../src/memory/layout.js";

export type Op =
  | { op: "alloc"; pages: number; uncached: boolean }
  | { op: "dup"; which: number }
  | { op: "close"; which: number }
  | { op: "lseek"; which: number; offset: number; whence: 0 | 1 | 2 }
  | { op: "write"; which: number; len: number; value: number; at: number | null; vec: boolean }
  | { op: "read"; which: number; len: number; at: number | null; vec: boolean }
  | { op: "nonblock"; which: number; on: boolean }
  | { op: "map"; which: number; write: boolean; at: number; len: number; value: number }
  | { op: "timeline" }
  | { op: "fence"; which: number; value: number }
  | { op: "inc"; which: number; by: number }
  | { op: "merge"; which: number; which2: number }
  | { op: "import"; which: number; which2: number; write: boolean }
  | { op: "export"; which: number; write: boolean }
  | { op: "poll"; which: number }
  | { op: "bad"; which: number; kind: number }
  | { op: "objAlloc"; pages: number }
  | { op: "objWrite"; which: number; len: number; value: number; at: number | null }
  | { op: "objRead"; which: number; len: number; at: number | null }
  | { op: "objSeek"; which: number; offset: number }
  | { op: "objClose"; which: number };

const which = fc.nat(40);
const pos = fc.option(fc.nat(3 * PAGE_SIZE + 200), { nil: null });
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("alloc" as const), pages: fc.integer({ min: 1, max: 3 }), uncached: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant("dup" as const), which }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("close" as const), which }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant("lseek" as const), which, offset: fc.integer({ min: -5000, max: 13000 }), whence: fc.constantFrom(0 as const, 1 as const, 2 as const) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("write" as const), which, len: fc.nat(5000), value: fc.nat(255), at: pos, vec: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ op: fc.constant("read" as const), which, len: fc.nat(5000), at: pos, vec: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ op: fc.constant("nonblock" as const), which, on: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("map" as const), which, write: fc.boolean(), at: fc.nat(3 * PAGE_SIZE), len: fc.nat(300), value: fc.nat(255) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("timeline" as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("fence" as const), which, value: fc.integer({ min: 0, max: 8 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("inc" as const), which, by: fc.integer({ min: 1, max: 3 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("merge" as const), which, which2: which }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("import" as const), which, which2: which, write: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("export" as const), which, write: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("poll" as const), which }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("bad" as const), which, kind: fc.nat(9) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("objAlloc" as const), pages: fc.integer({ min: 1, max: 2 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("objWrite" as const), which, len: fc.nat(3000), value: fc.nat(255), at: pos }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("objRead" as const), which, len: fc.nat(3000), at: pos }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("objSeek" as const), which, offset: fc.nat(9000) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("objClose" as const), which }), weight: 1 },
);

/** The operations of a run: `steps` of them from `seed`, drawn in chunks (the same seed, the same list). */
export function* operations(seed: number, steps: number, chunk = 4096): Generator<Op> {
  for (let done = 0, k = 0; done < steps; k++) {
    const n = Math.min(chunk, steps - done);
    const [ops] = fc.sample(fc.array(opArb, { minLength: n, maxLength: n }), { seed: (seed + k * 0x9e3779b1) | 0, numRuns: 1 });
    yield* ops;
    done += n;
  }
}

// ---- the model ---------------------------------------------------------------

interface MTimeline { value: number; closed: boolean; files: number }
/** A sync_file's fence as its leaves: one point per timeline (the later one kept, as merge does). */
type Leaves = Map<MTimeline, number>;
interface MBuffer { bytes: Uint8Array; fences: { tl: MTimeline; seqno: number; write: boolean }[] }
type MFile =
  | { kind: "dma-heap" }
  | { kind: "dma-buf"; buf: MBuffer; pos: number; nonblock: boolean }
  | { kind: "sw_sync"; tl: MTimeline }
  | { kind: "sync_file"; leaves: Leaves };

function leafStatus(tl: MTimeline, seqno: number): number {
  if (tl.value >= seqno) return 1;
  return tl.closed ? -2 : 0;
}

/** A sync_file's status: 0 while any leaf is pending; then 1, or an error when a leaf failed (null: either). */
function leavesStatus(leaves: Leaves): number | null {
  let failed = false;
  for (const [tl, seqno] of leaves) {
    const s = leafStatus(tl, seqno);
    if (s === 0) return 0;
    if (s < 0) failed = true;
  }
  return failed ? null : 1;
}

const pending = (b: MBuffer, write: boolean): boolean =>
  b.fences.some((f) => (write || f.write) && leafStatus(f.tl, f.seqno) === 0);

export interface FuzzOptions {
  seed: number;
  steps: number;
  /** RLIMIT_NOFILE of the fuzzed Process (small, so EMFILE happens). */
  maxFds?: number;
  /** Called every `every` steps with the count so far (progress). */
  progress?: (done: number) => void;
  every?: number;
  /** Replay exactly these operations instead of drawing them. */
  ops?: Op[];
}

export interface Finding {
  step: number;
  op: Op;
  message: string;
}

export interface FuzzResult {
  steps: number;
  /** Calls that failed as the model said (a DmaBufError with the expected code). */
  expectedErrors: number;
  finding?: Finding;
  /** The operations run (kept only when there is a finding, for shrinking). */
  ops?: Op[];
}

class Mismatch extends Error {}

/** Every buffer's bytes are compared with the model every this many steps (the touched ones after every step). */
const FULL_CHECK = 64;

function check(cond: boolean, what: () => string): asserts cond {
  if (!cond) throw new Mismatch(what());
}

const bytes = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v);

/** The lab's free space: pages, user memory and the sync heap (its fence cache counted free). */
function freeSpace(lab: Lab): string {
  const s = lab.stats();
  return `pages ${s.pages.freeBytes}, user ${s.user.freeBytes}, sync ${s.sync.freeBytes}`;
}

/**
 * Runs the fuzzer on `lab` in this thread. Other threads may fuzz the same
 * lab at once with their own Process: each run checks only its own objects,
 * and its teardown check is skipped (`checkFreeSpace` false) since the
 * others' allocations move the free space.
 */
export function runFuzz(lab: Lab, options: FuzzOptions, checkFreeSpace = true): FuzzResult {
  const { seed, steps, maxFds = 24, progress, every = 10_000 } = options;
  // Warm up what the lab makes once per thread (the read/write path's timeline and table).
  const warm = new Process(lab);
  const warmFd = allocFd(warm, warm.open("/dev/dma_heap/system", O_RDWR), 1);
  warm.pwrite(warmFd, bytes(4, 1), 0);
  warm.writev(warmFd, [bytes(4, 1), bytes(4, 2)]);
  warm.closeAll();
  const before = freeSpace(lab);

  const proc = new Process(lab, { maxFds });
  const model = new Map<number, MFile>();
  const objs: { buf: DmaBuf; model: MBuffer; pos: number }[] = [];
  // One DmaHeap for the run, as a careful user keeps it (each lab.heap() opens a heap fd of its own).
  const objHeap = lab.heap("system");
  const heaps = [proc.open("/dev/dma_heap/system", O_RDWR), proc.open("/dev/dma_heap/system-uncached", O_RDWR)];
  for (const h of heaps) model.set(h, { kind: "dma-heap" });
  const ran: Op[] = [];
  /** The buffers the current step touched: their bytes are checked after it (every buffer every FULL_CHECK steps). */
  const touched = new Set<MBuffer>();
  let expectedErrors = 0;
  let step = 0;

  /** Runs a call the model answered: `want` a number (or undefined: any) or an errno code. */
  const call = (fn: () => unknown, want: string | number | undefined, what: string): unknown => {
    let got: unknown;
    try {
      got = fn();
    } catch (e) {
      if (!(e instanceof DmaBufError)) throw new Mismatch(`${what}: threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}, not a DmaBufError`);
      check(e.code === want, () => `${what}: ${e.message}; the model says ${String(want)}`);
      expectedErrors++;
      return e;
    }
    check(typeof want !== "string", () => `${what}: returned ${String(got)}; the model says ${String(want)}`);
    if (typeof want === "number") check(got === want, () => `${what}: returned ${String(got)}; the model says ${want}`);
    return got;
  };

  const fdsOf = (kinds: MFile["kind"][]): number[] =>
    [...model.keys()].filter((fd) => kinds.includes(model.get(fd)!.kind)).sort((a, b) => a - b);
  const pick = (kinds: MFile["kind"][], n: number): number | undefined => {
    const fds = fdsOf(kinds);
    return fds.length === 0 ? undefined : fds[n % fds.length];
  };
  const install = (fd: number, f: MFile): void => {
    check(!model.has(fd), () => `fd ${fd} was handed out while open`);
    model.set(fd, f);
  };
  const touch = <T extends { buf: MBuffer }>(f: T): T => {
    touched.add(f.buf);
    return f;
  };
  const rwWant = (b: MBuffer, nonblock: boolean, write: boolean): string | undefined =>
    pending(b, write) ? (nonblock ? "EAGAIN" : "ETIMEDOUT") : undefined;

  const apply = (o: Op): void => {
    const syscalls = `${JSON.stringify(o)}`;
    switch (o.op) {
      case "alloc": {
        const full = model.size >= maxFds - 3;
        const got = call(() => allocFd(proc, heaps[o.uncached ? 1 : 0], o.pages), full ? "EMFILE" : undefined, syscalls);
        if (typeof got === "number") install(got, { kind: "dma-buf", buf: { bytes: new Uint8Array(o.pages * PAGE_SIZE), fences: [] }, pos: 0, nonblock: false });
        return;
      }
      case "dup": {
        const fd = pick(["dma-buf", "sw_sync", "sync_file"], o.which);
        if (fd === undefined) return;
        const f = model.get(fd)!;
        const got = call(() => proc.dup(fd), model.size >= maxFds - 3 ? "EMFILE" : undefined, syscalls);
        if (typeof got === "number") {
          install(got, f);
          if (f.kind === "sw_sync") f.tl.files++;
        }
        return;
      }
      case "close": {
        const fd = pick(["dma-buf", "sw_sync", "sync_file"], o.which);
        if (fd === undefined) return;
        const f = model.get(fd)!;
        call(() => proc.close(fd), undefined, syscalls);
        model.delete(fd);
        if (f.kind === "sw_sync" && --f.tl.files === 0) f.tl.closed = true;
        call(() => proc.lseek(fd, 0, SEEK_CUR), "EBADF", `${syscalls} then lseek`);
        return;
      }
      case "lseek": {
        const fd = pick(["dma-buf"], o.which);
        if (fd === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        const base = o.whence === SEEK_SET ? 0 : o.whence === SEEK_CUR ? f.pos : f.buf.bytes.length;
        const to = base + o.offset;
        call(() => proc.lseek(fd, o.offset, o.whence), to < 0 ? "EINVAL" : to, syscalls);
        if (to >= 0) f.pos = to;
        return;
      }
      case "write": {
        const fd = pick(["dma-buf"], o.which);
        if (fd === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        const at = o.at ?? f.pos;
        const size = f.buf.bytes.length;
        const data = bytes(o.len, o.value);
        const want = at >= size && o.len > 0 ? "ENOSPC" : rwWant(f.buf, f.nonblock, true) ?? Math.min(o.len, Math.max(0, size - at));
        const io = { timeoutMs: 0 };
        const half = o.len >> 1;
        call(() => (o.at !== null ? proc.pwrite(fd, data, o.at, io)
          : o.vec ? proc.writev(fd, [data.subarray(0, half), data.subarray(half)], io) : proc.write(fd, data, io)), want, syscalls);
        if (typeof want === "number") {
          if (want > 0) f.buf.bytes.set(data.subarray(0, want), at);
          if (o.at === null) f.pos += want;
        }
        return;
      }
      case "read": {
        const fd = pick(["dma-buf"], o.which);
        if (fd === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        const at = o.at ?? f.pos;
        const size = f.buf.bytes.length;
        const want = rwWant(f.buf, f.nonblock, false) ?? Math.max(0, Math.min(o.len, size - at));
        const out = new Uint8Array(o.len).fill(0xa5);
        const io = { timeoutMs: 0 };
        const half = o.len >> 1;
        call(() => (o.at !== null ? proc.pread(fd, out, o.at, io)
          : o.vec ? proc.readv(fd, [out.subarray(0, half), out.subarray(half)], io) : proc.read(fd, out, io)), want, syscalls);
        const n = typeof want === "number" ? want : 0;
        check(Buffer.compare(out.subarray(0, n), f.buf.bytes.subarray(at, at + n)) === 0, () => `${syscalls}: read bytes differ from the model`);
        check(out.subarray(n).every((b) => b === 0xa5), () => `${syscalls}: bytes past the count changed (canary)`);
        if (typeof want === "number" && o.at === null) f.pos += want;
        return;
      }
      case "nonblock": {
        const fd = pick(["dma-buf"], o.which);
        if (fd === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        call(() => proc.fcntl(fd, F_SETFL, o.on ? O_NONBLOCK : 0), 0, syscalls);
        f.nonblock = o.on;
        return;
      }
      case "map": {
        const fd = pick(["dma-buf"], o.which);
        if (fd === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        const size = f.buf.bytes.length;
        const mapping = proc.mmap(fd, 0, size);
        try {
          const flags = o.write ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_READ;
          const started = call(() => proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags, timeoutMs: 0 }), rwWant(f.buf, f.nonblock, o.write) ?? 0, `${syscalls} SYNC START`);
          if (started !== 0) return;
          const whole = concat(mapping.views);
          check(Buffer.compare(whole, f.buf.bytes) === 0, () => `${syscalls}: the mapping differs from the model`);
          if (o.write) {
            const at = o.at % size;
            const len = Math.min(o.len, size - at);
            writeViews(mapping.views, at, len, o.value);
            f.buf.bytes.fill(o.value, at, at + len);
          }
          call(() => proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: flags | DMA_BUF_SYNC_END }), 0, `${syscalls} SYNC END`);
        } finally {
          proc.munmap(mapping);
        }
        return;
      }
      case "timeline": {
        const got = call(() => proc.open("/dev/sw_sync"), model.size >= maxFds - 3 ? "EMFILE" : undefined, syscalls);
        if (typeof got === "number") install(got, { kind: "sw_sync", tl: { value: 0, closed: false, files: 1 } });
        return;
      }
      case "fence": {
        const fd = pick(["sw_sync"], o.which);
        if (fd === undefined) return;
        const { tl } = model.get(fd) as Extract<MFile, { kind: "sw_sync" }>;
        const data: { value: number; name: string; fence?: number } = { value: o.value, name: "fuzz" };
        const got = call(() => proc.ioctl(fd, SW_SYNC_IOC_CREATE_FENCE, data), model.size >= maxFds - 3 ? "EMFILE" : 0, syscalls);
        if (got === 0) install(data.fence!, { kind: "sync_file", leaves: new Map([[tl, o.value]]) });
        return;
      }
      case "inc": {
        const fd = pick(["sw_sync"], o.which);
        if (fd === undefined) return;
        const { tl } = model.get(fd) as Extract<MFile, { kind: "sw_sync" }>;
        call(() => proc.ioctl(fd, SW_SYNC_IOC_INC, o.by), 0, syscalls);
        tl.value += o.by;
        return;
      }
      case "merge": {
        const fd = pick(["sync_file"], o.which);
        const fd2 = pick(["sync_file", "dma-buf"], o.which2);
        if (fd === undefined || fd2 === undefined) return;
        const a = model.get(fd) as Extract<MFile, { kind: "sync_file" }>;
        const b = model.get(fd2)!;
        const data: { name: string; fd2: number; fence?: number } = { name: "merged", fd2 };
        // The new fd is found first (EMFILE), then fd2 is looked up (ENOENT), as sync_file_ioctl_merge does.
        const want = model.size >= maxFds - 3 ? "EMFILE" : b.kind !== "sync_file" ? "ENOENT" : 0;
        const got = call(() => proc.ioctl(fd, SYNC_IOC_MERGE, data), want, syscalls);
        if (got === 0 && b.kind === "sync_file") {
          const leaves: Leaves = new Map(a.leaves);
          for (const [tl, seqno] of b.leaves) leaves.set(tl, Math.max(seqno, leaves.get(tl) ?? 0));
          install(data.fence!, { kind: "sync_file", leaves });
        }
        return;
      }
      case "import": {
        const fd = pick(["dma-buf"], o.which);
        const fd2 = pick(["sync_file", "sw_sync"], o.which2);
        if (fd === undefined || fd2 === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        const s = model.get(fd2)!;
        const flags = o.write ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_READ;
        const got = call(() => proc.ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags, fd: fd2 }), s.kind === "sync_file" ? 0 : "EINVAL", syscalls);
        if (got === 0 && s.kind === "sync_file") {
          for (const [tl, seqno] of s.leaves) if (leafStatus(tl, seqno) === 0) f.buf.fences.push({ tl, seqno, write: o.write });
        }
        return;
      }
      case "export": {
        const fd = pick(["dma-buf"], o.which);
        if (fd === undefined) return;
        const f = touch(model.get(fd) as Extract<MFile, { kind: "dma-buf" }>);
        const data: { flags: number; fd?: number } = { flags: o.write ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_READ };
        const got = call(() => proc.ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, data), model.size >= maxFds - 3 ? "EMFILE" : 0, syscalls);
        if (got === 0) {
          const leaves: Leaves = new Map();
          for (const x of f.buf.fences) {
            if ((o.write || x.write) && leafStatus(x.tl, x.seqno) === 0) leaves.set(x.tl, Math.max(x.seqno, leaves.get(x.tl) ?? 0));
          }
          install(data.fd!, { kind: "sync_file", leaves });
        }
        return;
      }
      case "poll":
        return; // every step's check polls every fd
      case "bad":
        return bad(o);
      case "objAlloc": {
        const got = call(() => objHeap.alloc(o.pages * PAGE_SIZE), undefined, syscalls) as DmaBuf;
        objs.push({ buf: got, model: { bytes: new Uint8Array(o.pages * PAGE_SIZE), fences: [] }, pos: 0 });
        return;
      }
      case "objWrite": {
        const x = objs[o.which % Math.max(1, objs.length)];
        if (x === undefined) return;
        touched.add(x.model);
        const at = o.at ?? x.pos;
        const size = x.model.bytes.length;
        const want = at >= size && o.len > 0 ? "ENOSPC" : Math.min(o.len, Math.max(0, size - at));
        const data = bytes(o.len, o.value);
        call(() => x.buf.write(data, o.at), want, syscalls);
        if (typeof want === "number") {
          if (want > 0) x.model.bytes.set(data.subarray(0, want), at);
          if (o.at === null) x.pos += want;
        }
        return;
      }
      case "objRead": {
        const x = objs[o.which % Math.max(1, objs.length)];
        if (x === undefined) return;
        touched.add(x.model);
        const at = o.at ?? x.pos;
        const want = Math.max(0, Math.min(o.len, x.model.bytes.length - at));
        const out = new Uint8Array(o.len);
        call(() => x.buf.read(out, o.at), want, syscalls);
        check(Buffer.compare(out.subarray(0, want), x.model.bytes.subarray(at, at + want)) === 0, () => `${syscalls}: bytes differ`);
        if (o.at === null) x.pos += want;
        return;
      }
      case "objSeek": {
        const x = objs[o.which % Math.max(1, objs.length)];
        if (x === undefined) return;
        touched.add(x.model);
        call(() => x.buf.seek(o.offset), o.offset, syscalls);
        x.pos = o.offset;
        return;
      }
      case "objClose": {
        const i = o.which % Math.max(1, objs.length);
        const x = objs[i];
        if (x === undefined) return;
        x.buf.close();
        objs.splice(i, 1);
        call(() => x.buf.read(new Uint8Array(1)), "EBADF", `${syscalls} then read`);
        return;
      }
    }
  };

  /** Calls that must fail, each with its code, changing nothing. */
  const bad = (o: Extract<Op, { op: "bad" }>): void => {
    const fd = pick(["dma-buf"], o.which);
    const any = pick(["sw_sync", "sync_file"], o.which);
    const what = JSON.stringify(o);
    switch (o.kind) {
      case 0: call(() => proc.close(maxFds + 5), "EBADF", what); return;
      case 1: if (fd !== undefined) call(() => proc.lseek(fd, -1, SEEK_SET), "EINVAL", what); return;
      case 2: if (fd !== undefined) call(() => proc.readv(fd, [new Uint8Array(4), {} as Uint8Array]), "EFAULT", what); return;
      case 3: if (fd !== undefined) call(() => proc.ioctl(fd, 0x7fff), "ENOTTY", what); return;
      case 4: if (fd !== undefined) call(() => proc.fcntl(fd, 9999), "EINVAL", what); return;
      case 5: if (fd !== undefined) call(() => proc.mmap(fd, 1, PAGE_SIZE), "EINVAL", what); return;
      case 6: if (any !== undefined) call(() => proc.write(any, new Uint8Array(4)), "EINVAL", what); return;
      case 7: if (fd !== undefined) call(() => proc.ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_WRITE, fd }), "EINVAL", what); return;
      case 8: if (fd !== undefined) call(() => proc.pwrite(fd, new Uint8Array(1), Number.MAX_SAFE_INTEGER), "ENOSPC", what); return;
      default: if (fd !== undefined) call(() => proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, { flags: 0 }), "EINVAL", what);
    }
  };

  /** The whole state against the model. */
  const verify = (full: boolean): void => {
    const fds = proc.fds;
    const want = [...model.keys()].sort((a, b) => a - b);
    check(fds.join() === want.join(), () => `fd table [${fds.join()}], the model [${want.join()}]`);
    for (const [fd, f] of model) {
      const file = proc.file(fd);
      check(file.kind === f.kind, () => `fd ${fd} is a ${file.kind}, the model a ${f.kind}`);
      const polled: { fd: number; events: number; revents?: number }[] = [{ fd, events: POLLIN | POLLOUT }];
      proc.poll(polled, 0);
      const revents = polled[0].revents;
      if (f.kind === "dma-buf") {
        check(proc.lseek(fd, 0, SEEK_CUR) === f.pos, () => `fd ${fd}: position ${proc.lseek(fd, 0, SEEK_CUR)}, the model ${f.pos}`);
        check(((proc.fcntl(fd, F_GETFL) & O_NONBLOCK) !== 0) === f.nonblock, () => `fd ${fd}: O_NONBLOCK differs from the model`);
        check(proc.fdinfo(fd).startsWith(`pos:\t${f.pos}\n`), () => `fd ${fd}: fdinfo pos differs`);
        const buf = (file as DmaBufFile).buf;
        check(buf.size === f.buf.bytes.length, () => `fd ${fd}: size ${buf.size}, the model ${f.buf.bytes.length}`);
        if (full || touched.has(f.buf)) {
          check(Buffer.compare(memoryOf(lab, file as DmaBufFile), f.buf.bytes) === 0, () => `fd ${fd}: the buffer's bytes differ from the model`);
        }
        const wantPoll = (pending(f.buf, false) ? 0 : POLLIN) | (pending(f.buf, true) ? 0 : POLLOUT);
        check(revents === wantPoll, () => `fd ${fd}: poll ${revents}, the model ${wantPoll}`);
      } else if (f.kind === "sync_file") {
        const info = { num_fences: 0 } as { num_fences: number; status?: number };
        proc.ioctl(fd, SYNC_IOC_FILE_INFO, info);
        const s = leavesStatus(f.leaves);
        check(s === null ? info.status !== 0 : info.status === s, () => `fd ${fd}: sync_file status ${info.status}, the model ${String(s)}`);
        check(revents === (info.status !== 0 ? POLLIN : 0), () => `fd ${fd}: poll ${revents} for status ${info.status}`);
      }
    }
    for (const x of objs) {
      check(x.buf.position === x.pos, () => `DmaBuf position ${x.buf.position}, the model ${x.pos}`);
      if (full || touched.has(x.model)) check(Buffer.compare(memoryOfRecord(lab, x.buf), x.model.bytes) === 0, () => "a DmaBuf's bytes differ from the model");
    }
  };

  let finding: Finding | undefined;
  const source = options.ops ?? operations(seed, steps);
  try {
    for (const o of source) {
      ran.push(o);
      try {
        touched.clear();
        apply(o);
        verify(step % FULL_CHECK === 0);
      } catch (e) {
        finding = { step, op: o, message: e instanceof Mismatch ? e.message : `${e instanceof Error ? `${e.name}: ${e.message}` : String(e)} (not a DmaBufError)` };
        break;
      }
      step++;
      if (progress !== undefined && step % every === 0) progress(step);
    }
  } finally {
    try {
      proc.closeAll();
      for (const x of objs) x.buf.close();
    } catch (e) {
      finding ??= { step, op: ran[ran.length - 1], message: `teardown: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
  if (finding === undefined && checkFreeSpace) {
    const after = freeSpace(lab);
    if (after !== before) finding = { step, op: ran[ran.length - 1], message: `the arena's free space after teardown is ${after}, at the start ${before}` };
  }
  return { steps: step, expectedErrors, finding, ops: finding !== undefined ? ran : undefined };
}

/** DMA_HEAP_IOCTL_ALLOC on a heap fd: the new dma-buf's fd. */
function allocFd(proc: Process, heap: number, pages: number): number {
  const data = { len: pages * PAGE_SIZE, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
  proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, data);
  return data.fd;
}

function concat(views: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(views.reduce((n, v) => n + v.length, 0));
  let at = 0;
  for (const v of views) { out.set(v, at); at += v.length; }
  return out;
}

function writeViews(views: Uint8Array[], at: number, len: number, value: number): void {
  let skip = at;
  let left = len;
  for (const v of views) {
    if (skip >= v.length) { skip -= v.length; continue; }
    const n = Math.min(v.length - skip, left);
    v.fill(value, skip, skip + n);
    left -= n;
    skip = 0;
    if (left === 0) return;
  }
}

/** A dma-buf's bytes as devices see them: its pages, read directly (no fence, no cache). */
function memoryOf(lab: Lab, file: DmaBufFile): Uint8Array {
  return concat(file.buf.segments().map((s) => lab.arena.u8.subarray(s.addr, s.addr + s.len)));
}

function memoryOfRecord(lab: Lab, buf: DmaBuf): Uint8Array {
  return concat(buf.record.segments().map((s) => lab.arena.u8.subarray(s.addr, s.addr + s.len)));
}

/**
 * Delta debugging over a failing operation list: removes chunks (halves,
 * quarters, ... single operations) while the run still has a finding,
 * each replay on a fresh lab from `makeLab`, for at most `budget` replays
 * and `deadlineMs`. Returns the shortest list found.
 */
export async function shrink(ops: Op[], makeLab: () => Promise<Lab>, budget = 400, deadlineMs = 120_000): Promise<{ ops: Op[]; finding: Finding }> {
  const deadline = performance.now() + deadlineMs;
  const fails = async (list: Op[]): Promise<Finding | undefined> => {
    const lab = await makeLab();
    try {
      return runFuzz(lab, { seed: 0, steps: list.length, ops: list }).finding;
    } finally {
      lab.close();
    }
  };
  let best = ops;
  let finding = (await fails(best))!;
  if (finding === undefined) throw new Error("the failing sequence did not fail again on a fresh lab (a race with another thread?)");
  let tries = 0;
  const more = () => tries < budget && performance.now() < deadline;
  for (let size = Math.ceil(best.length / 2); size >= 1 && more(); size = size === 1 ? 0 : Math.ceil(size / 2)) {
    for (let i = 0; i < best.length && more(); ) {
      const candidate = [...best.slice(0, i), ...best.slice(i + size)];
      tries++;
      const f = await fails(candidate);
      if (f !== undefined) { best = candidate; finding = f; } else i += size;
    }
  }
  return { ops: best, finding };
}

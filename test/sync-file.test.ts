/*
 * sync_file and sw_sync, rule by rule (drivers/dma-buf/sync_file.c and
 * sw_sync.c as user space sees them; the kernel's own selftests are in
 * sync-selftests.test.ts):
 *
 *   SYNC_IOC_MERGE        flags/pad EINVAL; the other side not an open
 *                         sync_file ENOENT; the name cut to 31 bytes
 *   names                 "<driver>-<timeline><context>-<seqno>" by default
 *   SYNC_IOC_FILE_INFO    the two-call protocol and its statuses
 *   SYNC_IOC_SET_DEADLINE pad EINVAL; the hint reaches every fence
 *   poll                  POLLIN once signalled, an error included
 *   close                 every later use EBADF (the fd is looked up first)
 *   sw_sync               reached values, shared pending points, ordered
 *                         signalling, 32-bit wrap, INT_MAX chunks, close
 *                         with ENOENT, dup, bad arguments
 * Every error case also checks that nothing changed: the sync heap (records
 * allocated and freed), reference counts, timeline values and fence states.
 */
import { describe, expect, test, vi } from "vitest";
import { Lab, POLLIN, SwSyncTimeline, SyncFile, type Fence } from "../src/index.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { withSeed } from "./helpers/prng.js";

const MiB = 1024 * 1024;
const ENOENT = -2;
const EIO = -5;
const INT_MAX = 0x7fffffff;

const labs = new LabSet({ memoryBytes: 32 * MiB });
cleanUpAfterEach({ labs });
const newLab = (): Promise<Lab> => labs.create();

/** What the sync heap has done: a failed call must not move any of it. */
function heapState(lab: Lab): { freeBytes: number; allocs: number; frees: number } {
  const { freeBytes, allocs, frees } = lab.stats().sync;
  return { freeBytes, allocs, frees };
}

/** A sync_file over a new pending plain fence on its own timeline (the file holds the only reference). */
function plainFile(lab: Lab, name: string): SyncFile {
  const tl = lab.sync.timeline({ driver: "test-driver", name });
  const f = tl.createFence();
  try {
    return lab.sync.syncFile(f);
  } finally {
    f.put();
    tl.unref();
  }
}

describe("SYNC_IOC_MERGE", () => {
  test("non-zero flags or pad give EINVAL and change nothing", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("merge");
    const a = tl.createFence(1);
    const b = tl.createFence(2);
    const before = heapState(lab);
    const refs = [a.fence.refcount, b.fence.refcount];
    for (const args of [{ flags: 1 }, { pad: 1 }, { flags: 0x80000000, pad: 0 }, { flags: 0, pad: -1 }, { flags: 2, pad: 3 }]) {
      expectErrno(() => SyncFile.merge(a, b, { name: "m", ...args }), "EINVAL");
    }
    expect(heapState(lab)).toEqual(before);
    expect([a.fence.refcount, b.fence.refcount]).toEqual(refs);
    // flags and pad given as 0 are fine.
    const m = SyncFile.merge(a, b, { name: "m", flags: 0, pad: 0 });
    expect(m.fence.is(b.fence)).toBe(true);
    for (const f of [m, b, a]) f.close();
    tl.close();
  });

  test("the other side not an open sync_file gives ENOENT and changes nothing", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("merge");
    const a = tl.createFence(1);
    const closed = tl.createFence(2);
    closed.close();
    const fence: Fence = a.fence.get();
    const before = heapState(lab);
    const refs = a.fence.refcount;
    for (const other of [closed, fence, tl, -1, 0, null, undefined, { fence }, "fd"]) {
      expectErrno(() => SyncFile.merge(a, other, { name: "m" }), "ENOENT");
    }
    expect(heapState(lab)).toEqual(before);
    expect(a.fence.refcount).toBe(refs);

    // An open sync_file of another lab is not one of this lab's files either
    // (its fence is an offset in another memory).
    const other = await newLab();
    const otl = other.sync.swSync("other");
    const foreign = otl.createFence(1);
    const otherBefore = heapState(other);
    expectErrno(() => SyncFile.merge(a, foreign, { name: "m" }), "ENOENT");
    expectErrno(() => SyncFile.merge(foreign, a, { name: "m" }), "ENOENT");
    expect(heapState(lab)).toEqual(before);
    expect(heapState(other)).toEqual(otherBefore);
    expect(a.fence.refcount).toBe(refs);
    foreign.close();
    otl.close();
    fence.put();
    a.close();
    tl.close();
  });

  test("the name is at most 31 bytes: longer is cut", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("merge");
    const a = tl.createFence(1);
    const b = tl.createFence(2);
    const bytes = (s: string) => new TextEncoder().encode(s).length;
    const cases: [string, string][] = [
      ["mergeFence", "mergeFence"],
      ["x".repeat(31), "x".repeat(31)],
      ["y".repeat(32), "y".repeat(31)],
      ["0123456789".repeat(10), "0123456789012345678901234567890"],
    ];
    for (const [given, expected] of cases) {
      const m = SyncFile.merge(a, b, { name: given });
      expect(m.name).toBe(expected);
      expect(m.info().name).toBe(expected);
      m.close();
    }
    // Multi-byte characters: never more than 31 bytes, and a prefix of the name.
    const wide = "é".repeat(20);
    const m = SyncFile.merge(a, b, { name: wide });
    expect(bytes(m.name)).toBeLessThanOrEqual(31);
    expect(bytes(m.name)).toBeGreaterThanOrEqual(30);
    expect(wide.startsWith(m.name)).toBe(true);
    for (const f of [m, b, a]) f.close();
    tl.close();
  });

  test("the merged fence follows unwrap-merge: itself, the later point, an array by context, a signalled stub", async () => {
    const lab = await newLab();
    const t1 = lab.sync.swSync("one");
    const t2 = lab.sync.swSync("two");
    const a1 = t1.createFence(1);
    const a3 = t1.createFence(3);
    const b5 = t2.createFence(5);

    const same = SyncFile.merge(a1, a1, { name: "same" });
    expect(same.fence.is(a1.fence)).toBe(true);
    const later = SyncFile.merge(a3, a1, { name: "later" });
    expect(later.fence.is(a3.fence)).toBe(true);
    const two = SyncFile.merge(b5, later, { name: "two" });
    const info = two.info({ numFences: 2 });
    expect(info.numFences).toBe(2);
    expect(two.fence.leaves().map((f) => [f.context, f.seqno])).toEqual([[t1.context, 3n], [t2.context, 5n]]);

    t1.inc(3);
    t2.inc(5);
    const t0 = lab.sync.clock.nowNs();
    const done = SyncFile.merge(a3, b5, { name: "" });
    const stub = done.info({ numFences: 1 });
    expect(stub.numFences).toBe(1);
    expect(stub.status).toBe(1);
    expect(stub.fences![0]).toMatchObject({ objName: "stub", driverName: "stub", status: 1 });
    // The stub carries the latest timestamp of the signalled inputs.
    expect(stub.fences![0].timestampNs).toBe(Math.max(a3.fence.timestampNs, b5.fence.timestampNs));
    expect(stub.fences![0].timestampNs).toBeLessThanOrEqual(t0);
    expect(done.fence.context).toBe(0n);
    expect(done.fence.seqno).toBe(0n);

    for (const f of [done, two, later, same, b5, a3, a1]) f.close();
    t2.close();
    t1.close();
  });
});

describe("names", () => {
  test("the default is '<driver>-<timeline><context>-<seqno>'", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("gpu");
    const f = tl.createFence(7);
    expect(f.name).toBe(`sw_sync-gpu${tl.context}-7`);
    expect(f.info().name).toBe(`sw_sync-gpu${tl.context}-7`);
    // A merge without a name: the merged fence's own names (an array here).
    const other = lab.sync.swSync("other");
    const g = other.createFence(1);
    const m = SyncFile.merge(f, g, { name: "" });
    expect(m.name).toBe(`dma_fence_array-unbound${m.fence.context}-1`);
    // A merge that gives back one fence, named after it.
    const n = SyncFile.merge(f, f, { name: "" });
    expect(n.name).toBe(f.name);
    // The default timeline name.
    const plain = lab.sync.swSync();
    const p = plain.createFence(1);
    expect(p.name).toBe(`sw_sync-dmabuf-lab${plain.context}-1`);
    for (const x of [p, n, m, g, f]) x.close();
    for (const t of [plain, other, tl]) t.close();
  });

  test("the default name is cut to 31 bytes too", async () => {
    const lab = await newLab();
    const long = "t".repeat(31);
    const tl = lab.sync.swSync(long);
    const f = tl.createFence(123456);
    const full = `sw_sync-${long}${tl.context}-123456`;
    expect(f.name).toBe(full.slice(0, 31));
    // The entries keep the whole timeline name (obj_name is 32 bytes too).
    expect(f.info({ numFences: 1 }).fences![0].objName).toBe(long);
    f.close();
    tl.close();
  });
});

describe("SYNC_IOC_FILE_INFO", () => {
  test("the count call: no entries, the number of fences and the fence's own status", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("info");
    const f = tl.createFence(1);
    let info = f.info({ numFences: 0 });
    expect(info).toEqual({ name: f.name, status: 0, flags: 0, numFences: 1 });
    expect(info.fences).toBeUndefined();
    tl.inc(1);
    expect(f.info().status).toBe(1);

    // An error status shows in the count call (the timeline closed under a pending point).
    const tl2 = lab.sync.swSync("info2");
    const g = tl2.createFence(1);
    tl2.close();
    expect(g.info().status).toBe(ENOENT);

    // An array: one count per fence; its status is the array's.
    const ta = lab.sync.swSync("a");
    const tb = lab.sync.swSync("b");
    const a = ta.createFence(1);
    const b = tb.createFence(1);
    const m = SyncFile.merge(a, b, { name: "m" });
    info = m.info();
    expect(info).toEqual({ name: "m", status: 0, flags: 0, numFences: 2 });
    ta.inc(1);
    expect(m.info().status).toBe(0);
    tb.inc(1);
    expect(m.info().status).toBe(1);
    for (const x of [m, b, a, g, f]) x.close();
    for (const t of [tb, ta, tl]) t.close();
  });

  test("the entries call: too small a numFences gives EINVAL; enough gives one entry per fence", async () => {
    const lab = await newLab();
    const tls = ["a", "b", "c"].map((n) => lab.sync.swSync(n));
    let m = tls[0].createFence(4);
    for (const t of tls.slice(1)) {
      const f = t.createFence(4);
      const next = SyncFile.merge(m, f, { name: "three" });
      m.close();
      f.close();
      m = next;
    }
    const { numFences } = m.info();
    expect(numFences).toBe(3);
    for (const small of [1, 2]) expectErrno(() => m.info({ numFences: small }), "EINVAL");
    for (const enough of [3, 4, 100]) {
      const info = m.info({ numFences: enough });
      expect(info.numFences).toBe(3);
      expect(info.status).toBe(0);
      expect(info.name).toBe("three");
      expect(info.fences).toEqual(tls.map((t) => ({
        objName: t.name, driverName: "sw_sync", status: 0, flags: 0, timestampNs: 0,
      })));
    }
    m.close();
    for (const t of tls) t.close();
  });

  test("non-zero flags or pad give EINVAL, in both calls", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("info");
    const f = tl.createFence(1);
    for (const numFences of [0, 1]) {
      expectErrno(() => f.info({ numFences, flags: 1 }), "EINVAL");
      expectErrno(() => f.info({ numFences, pad: 1 }), "EINVAL");
      expectErrno(() => f.info({ numFences, flags: 1, pad: 1 }), "EINVAL");
    }
    expect(f.info({ numFences: 1, flags: 0, pad: 0 }).numFences).toBe(1);
    f.close();
    tl.close();
  });

  // Statuses of the three entries (in context order) -> the entries call's
  // overall status (the first entry <= 0, else 1) and the count call's
  // status (the array's own: 0 while any is pending, else its first error, else 1).
  test.each([
    [[1, EIO, 0], EIO, 0],
    [[1, 0, EIO], 0, 0],
    [[0, EIO, ENOENT], 0, 0],
    [[1, 1, 1], 1, 1],
    [[1, EIO, ENOENT], EIO, EIO],
    [[ENOENT, 1, EIO], ENOENT, ENOENT],
  ])("entries %j: overall status %i, count-call status %i", async (statuses, overall, count) => {
    const lab = await newLab();
    const files = statuses.map((_, i) => plainFile(lab, `t${i}`));
    let m = files[0];
    for (const f of files.slice(1)) {
      const next = SyncFile.merge(m, f, { name: "m" });
      if (m !== files[0]) m.close();
      m = next;
    }
    // Merged while all pending: the array lists all three, in context order = creation order.
    expect(m.fence.leaves().map((l) => l.offset)).toEqual(files.map((f) => f.fence.offset));
    const t0 = lab.sync.clock.nowNs();
    statuses.forEach((s, i) => {
      if (s === 1) files[i].fence.signal();
      else if (s < 0) files[i].fence.signal(s);
    });
    const t1 = lab.sync.clock.nowNs();
    const info = m.info({ numFences: 3 });
    expect(info.fences!.map((e) => e.status)).toEqual(statuses);
    expect(info.status).toBe(overall);
    expect(m.info().status).toBe(count);
    for (const [i, e] of info.fences!.entries()) {
      expect(e.objName).toBe(`t${i}`);
      expect(e.driverName).toBe("test-driver");
      if (statuses[i] === 0) {
        expect(e.timestampNs).toBe(0);
      } else {
        expect(e.timestampNs).toBeGreaterThanOrEqual(t0);
        expect(e.timestampNs).toBeLessThanOrEqual(t1);
      }
    }
    // Pending entries still pending: signal them so that nothing is left waiting.
    for (const f of files) if (!f.fence.isSignaled()) f.fence.signal();
    m.close();
    for (const f of files) f.close();
  });

  test("a signalled sw_sync point has its signal time; a pending one 0", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("ts");
    const f = tl.createFence(2);
    expect(f.info({ numFences: 1 }).fences![0].timestampNs).toBe(0);
    tl.inc(1);
    expect(f.info({ numFences: 1 }).fences![0].timestampNs).toBe(0);
    const t0 = lab.sync.clock.nowNs();
    tl.inc(1);
    const t1 = lab.sync.clock.nowNs();
    const ts = f.info({ numFences: 1 }).fences![0].timestampNs;
    expect(ts).toBeGreaterThanOrEqual(t0);
    expect(ts).toBeLessThanOrEqual(t1);
    f.close();
    tl.close();
  });
});

describe("SYNC_IOC_SET_DEADLINE", () => {
  test("non-zero pad gives EINVAL and sets nothing", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("deadline");
    const f = tl.createFence(1);
    expectErrno(() => f.setDeadline({ deadlineNs: 1000, pad: 1 }), "EINVAL");
    expect(f.fence.deadlineNs).toBe(0);
    f.setDeadline({ deadlineNs: 1000, pad: 0 });
    expect(f.fence.deadlineNs).toBe(1000);
    f.close();
    tl.close();
  });

  test("the deadline reaches every fence of the file; the earliest is kept", async () => {
    const lab = await newLab();
    const tls = ["a", "b", "c"].map((n) => lab.sync.swSync(n));
    const points = tls.map((t) => t.createFence(1));
    let m = SyncFile.merge(points[0], points[1], { name: "m" });
    const next = SyncFile.merge(m, points[2], { name: "m" });
    m.close();
    m = next;
    m.setDeadline({ deadlineNs: 5_000_000 });
    expect(points.map((p) => p.fence.deadlineNs)).toEqual([5_000_000, 5_000_000, 5_000_000]);
    points[1].setDeadline({ deadlineNs: 2_000_000 });
    m.setDeadline({ deadlineNs: 3_000_000 });
    expect(points.map((p) => p.fence.deadlineNs)).toEqual([3_000_000, 2_000_000, 3_000_000]);
    m.setDeadline({ deadlineNs: 9_000_000 });
    expect(points.map((p) => p.fence.deadlineNs)).toEqual([3_000_000, 2_000_000, 3_000_000]);
    m.close();
    for (const p of points) p.close();
    for (const t of tls) t.close();
  });
});

describe("sw_sync callbacks", () => {
  test("a callback of a point may use its own timeline: it runs after inc() released the lock", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("reentrant");
    const first = tl.createFence(1);
    const order: string[] = [];
    first.fence.addCallback(() => {
      order.push("cb");
      const later = tl.createFence(3); // takes the timeline lock
      later.close();
      tl.inc(1); // and advances it
    });
    tl.inc(1);
    order.push("after inc");
    expect(order).toEqual(["cb", "after inc"]);
    // Under the lock, the callback's createFence would have failed with
    // EDEADLK and its inc would not have happened.
    expect(tl.value).toBe(2);
    first.close();
    tl.close();
  });
});

describe("poll and wait", () => {
  test("POLLIN once signalled, and after an error signal too", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("poll");
    const ok = tl.createFence(1);
    const err = tl.createFence(2);
    expect(ok.poll()).toBe(0);
    expect(ok.wait(0)).toBe(false);
    expect(ok.wait(1)).toBe(false);
    tl.inc(1);
    expect(ok.poll()).toBe(POLLIN);
    expect(ok.wait(0)).toBe(true);
    expect(err.poll()).toBe(0);
    tl.close(); // ENOENT on the pending point
    expect(err.info().status).toBe(ENOENT);
    expect(err.poll()).toBe(POLLIN);
    expect(err.wait(1000)).toBe(true);
    expect(await err.waitAsync(1000)).toBe(true);

    const eio = plainFile(lab, "eio");
    eio.fence.setError(EIO);
    expect(eio.poll()).toBe(0); // an error set before signalling is not a signal
    expect(eio.info().status).toBe(0);
    eio.fence.signal();
    expect(eio.poll()).toBe(POLLIN);
    expect(eio.info().status).toBe(EIO);
    for (const f of [eio, err, ok]) f.close();
  });

  test("waitAsync resolves when the timeline reaches the point, false on timeout", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("async");
    const f = tl.createFence(1);
    expect(await f.waitAsync(0)).toBe(false);
    expect(await f.waitAsync(1)).toBe(false);
    const waiting = f.waitAsync(30_000);
    setTimeout(() => tl.inc(1), 0);
    expect(await waiting).toBe(true);
    f.close();
    tl.close();
  });
});

describe("a closed sync_file", () => {
  test("every use gives EBADF, bad arguments or not; close again is harmless; the reference is dropped", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("closed");
    const f = tl.createFence(1);
    const g = tl.createFence(1);
    expect(g.fence.is(f.fence)).toBe(true);
    const fence = g.fence;
    const refs = fence.refcount;
    f.close();
    expect(f.closed).toBe(true);
    expect(fence.refcount).toBe(refs - 1);
    const before = heapState(lab);

    expectErrno(() => f.fence, "EBADF");
    expectErrno(() => f.name, "EBADF");
    expectErrno(() => f.poll(), "EBADF");
    expectErrno(() => f.wait(0), "EBADF");
    await expectErrnoAsync(() => f.waitAsync(0), "EBADF");
    expectErrno(() => f.info(), "EBADF");
    expectErrno(() => f.info({ numFences: 1 }), "EBADF");
    expectErrno(() => f.setDeadline({ deadlineNs: 1 }), "EBADF");
    expectErrno(() => SyncFile.merge(f, g, { name: "m" }), "EBADF");
    // The file is looked up before the arguments are read (as an ioctl on a
    // closed fd fails in fdget): bad arguments still give EBADF.
    expectErrno(() => f.info({ flags: 1 }), "EBADF");
    expectErrno(() => f.info({ numFences: 1, pad: 1 }), "EBADF");
    expectErrno(() => f.setDeadline({ deadlineNs: 1, pad: 1 }), "EBADF");
    expectErrno(() => SyncFile.merge(f, g, { name: "m", flags: 1 }), "EBADF");
    // As the second file of a merge: ENOENT.
    expectErrno(() => SyncFile.merge(g, f, { name: "m" }), "ENOENT");
    f.close();
    expect(fence.refcount).toBe(refs - 1);
    expect(heapState(lab)).toEqual(before);

    // The other file of the same point is untouched.
    tl.inc(1);
    expect(g.poll()).toBe(POLLIN);
    g.close();
    tl.close();
  });
});

describe("sw_sync", () => {
  test("a value already reached gives a signalled fence (timestamped now), not tracked by the timeline", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("reached");
    const t0 = lab.sync.clock.nowNs();
    const zero = tl.createFence(0);
    const t1 = lab.sync.clock.nowNs();
    expect(zero.poll()).toBe(POLLIN);
    const e = zero.info({ numFences: 1 }).fences![0];
    expect(e.status).toBe(1);
    expect(e.timestampNs).toBeGreaterThanOrEqual(t0);
    expect(e.timestampNs).toBeLessThanOrEqual(t1);
    tl.inc(10);
    const files = [3, 9, 10].map((v) => tl.createFence(v));
    for (const f of files) expect(f.info().status).toBe(1);
    const pending = tl.createFence(11);
    expect(pending.info().status).toBe(0);
    // Closing the timeline errors only what was pending.
    tl.close();
    for (const f of [zero, ...files]) expect(f.info().status).toBe(1);
    expect(pending.info().status).toBe(ENOENT);
    for (const f of [zero, ...files, pending]) f.close();
  });

  test("the same pending value gives the same fence; once reached, a new signalled one", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("same");
    const a = tl.createFence(5, "first");
    const b = tl.createFence(5, "second"); // the name argument is ignored
    expect(b).not.toBe(a);
    expect(b.fence.offset).toBe(a.fence.offset);
    expect(b.name).toBe(a.name);
    expect(b.name).toBe(`sw_sync-same${tl.context}-5`);
    const c = tl.createFence(6);
    expect(c.fence.offset).not.toBe(a.fence.offset);
    a.close();
    const d = tl.createFence(5); // still pending (b and the timeline hold it)
    expect(d.fence.offset).toBe(b.fence.offset);
    tl.inc(5);
    expect(b.poll()).toBe(POLLIN);
    expect(d.poll()).toBe(POLLIN);
    const e = tl.createFence(5);
    expect(e.poll()).toBe(POLLIN);
    expect(c.poll()).toBe(0);
    for (const f of [b, c, d, e]) f.close();
    tl.close();
  });

  test("inc signals the points it reaches in ascending order, and only those", async () => {
    const lab = await newLab();
    await withSeed((rng) => {
      const tl = lab.sync.swSync("order");
      const values = Array.from({ length: 64 }, (_, i) => 1 + i * 3);
      // Created in a random order (with repeats), they still signal in value order.
      const order = [...values, ...values.slice(0, 16)];
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(0, i);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const files = order.map((v) => tl.createFence(v));
      const seen: number[] = [];
      const registered = new Set<number>();
      for (const f of files) {
        if (registered.has(f.fence.offset)) continue;
        registered.add(f.fence.offset);
        f.fence.addCallback((x) => seen.push(Number(x.seqno)));
      }
      const step = rng.int(2, 40);
      let value = 0;
      while (value < values[values.length - 1]) {
        tl.inc(step);
        value += step;
        expect(seen).toEqual(values.filter((v) => v <= value));
        for (const f of files) expect(f.poll(), `point ${f.fence.seqno} at value ${value}`).toBe(Number(f.fence.seqno) <= value ? POLLIN : 0);
      }
      for (const f of files) f.close();
      tl.close();
    });
  });

  test("32-bit values wrap: a timeline near 0xffffffff", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("wrap");
    tl.inc(0xfffffff0);
    expect(tl.value).toBe(0xfffffff0);
    const behind = tl.createFence(0xffffffe0);
    expect(behind.poll()).toBe(POLLIN);
    const beforeWrap = tl.createFence(0xfffffff5);
    const afterWrap = tl.createFence(3); // 19 ahead, past the wrap
    const farAhead = tl.createFence(0x7fffffef); // INT_MAX ahead: still pending
    const tooFar = tl.createFence(0x7ffffff0); // INT_MAX + 1 ahead: counts as behind, as in the kernel
    expect([beforeWrap, afterWrap, farAhead].map((f) => f.poll())).toEqual([0, 0, 0]);
    expect(tooFar.poll()).toBe(POLLIN);
    const seen: bigint[] = [];
    for (const f of [farAhead, afterWrap, beforeWrap]) f.fence.addCallback((x) => seen.push(x.seqno));

    tl.inc(0x10);
    expect(tl.value).toBe(0);
    expect([beforeWrap, afterWrap, farAhead].map((f) => f.poll())).toEqual([POLLIN, 0, 0]);
    tl.inc(3);
    expect(tl.value).toBe(3);
    expect([afterWrap, farAhead].map((f) => f.poll())).toEqual([POLLIN, 0]);
    tl.inc(0x7fffffef - 3);
    expect(farAhead.poll()).toBe(POLLIN);
    expect(seen).toEqual([0xfffffff5n, 3n, 0x7fffffefn]);
    for (const f of [behind, beforeWrap, afterWrap, farAhead, tooFar]) f.close();
    tl.close();
  });

  test("inc by more than INT_MAX advances in INT_MAX steps, so every pending point is reached", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("big");
    const points = [1, 5, INT_MAX].map((v) => tl.createFence(v));
    const seen: bigint[] = [];
    for (const p of points) p.fence.addCallback((x) => seen.push(x.seqno));
    // One step of 0xffffffff would leave the value at -1, behind every point;
    // the kernel signals INT_MAX, INT_MAX, then 1.
    tl.inc(0xffffffff);
    expect(tl.value).toBe(0xffffffff);
    expect(points.map((p) => p.poll())).toEqual([POLLIN, POLLIN, POLLIN]);
    expect(seen).toEqual([1n, 5n, BigInt(INT_MAX)]);

    const tl2 = lab.sync.swSync("big2");
    const q = [2, 0x7ffffff0].map((v) => tl2.createFence(v));
    tl2.inc(INT_MAX + 10);
    expect(tl2.value).toBe(INT_MAX + 10);
    expect(q.map((p) => p.poll())).toEqual([POLLIN, POLLIN]);
    for (const f of [...points, ...q]) f.close();
    tl.close();
    tl2.close();
  });

  test("closing the last reference signals every pending point with ENOENT; a dup keeps it open", async () => {
    const lab = await newLab();
    const heap = heapState(lab).freeBytes;
    const tl = lab.sync.swSync("close");
    const dup = SwSyncTimeline.dup(lab.sync, tl.offset);
    expect(dup.offset).toBe(tl.offset);
    expect(dup.context).toBe(tl.context);
    const done = tl.createFence(1);
    const p2 = tl.createFence(2);
    const p3 = dup.createFence(3);
    tl.inc(1);
    const seen: number[] = [];
    p2.fence.addCallback((x) => seen.push(x.status));
    p3.fence.addCallback((x) => seen.push(x.status));

    tl.close();
    tl.close(); // harmless
    expectErrno(() => tl.createFence(4), "EBADF");
    expectErrno(() => tl.inc(1), "EBADF");
    // Still open through the dup: nothing signalled, and it still advances.
    expect([p2, p3].map((f) => f.info().status)).toEqual([0, 0]);
    dup.inc(1);
    expect([p2, p3].map((f) => f.info().status)).toEqual([1, 0]);

    dup.close();
    expect(p3.info().status).toBe(ENOENT);
    expect(p3.poll()).toBe(POLLIN);
    expect(p3.wait(1000)).toBe(true);
    expect(seen).toEqual([1, ENOENT]);
    expect(done.info().status).toBe(1);
    // No more references: dup and the calls give EBADF.
    expectErrno(() => SwSyncTimeline.dup(lab.sync, tl.offset), "EBADF");
    expectErrno(() => dup.createFence(9), "EBADF");
    // The timeline record lives while its fences do: their names still read.
    expect(p3.info({ numFences: 1 }).fences![0]).toMatchObject({ objName: "close", driverName: "sw_sync", status: ENOENT });
    expect(p3.name).toBe(`sw_sync-close${tl.context}-3`);
    for (const f of [done, p2, p3]) f.close();
    // Then the timeline and its points are freed (once this thread's callback
    // watches, which hold a reference until their waitAsync settles, are done).
    await vi.waitFor(() => expect(heapState(lab).freeBytes).toBe(heap), { timeout: 10_000 });
  });

  test("dup needs an sw_sync timeline: EINVAL for anything else", async () => {
    const lab = await newLab();
    const generic = lab.sync.timeline({ name: "generic" });
    expectErrno(() => SwSyncTimeline.dup(lab.sync, generic.offset), "EINVAL");
    for (const bad of [-1, 0, 1, 0.5, NaN, lab.layout.syncBase + lab.layout.syncBytes]) {
      expectErrno(() => SwSyncTimeline.dup(lab.sync, bad), "EINVAL");
    }
    generic.unref();
  });

  test("bad values give EINVAL and change nothing", async () => {
    const lab = await newLab();
    const tl = lab.sync.swSync("bad");
    tl.inc(7);
    const pending = tl.createFence(9);
    const before = heapState(lab);
    const refs = pending.fence.refcount;
    const bad: unknown[] = [-1, -0.5, 1.5, 2 ** 32, 2 ** 53, NaN, Infinity, -Infinity, "8", 8n, null, undefined];
    for (const v of bad) {
      expectErrno(() => tl.createFence(v as number), "EINVAL");
      expectErrno(() => tl.inc(v as number), "EINVAL");
    }
    expect(tl.value).toBe(7);
    expect(pending.poll()).toBe(0);
    expect(pending.fence.refcount).toBe(refs);
    expect(heapState(lab)).toEqual(before);
    // The edges are fine.
    const top = tl.createFence(0xffffffff); // more than INT_MAX ahead of 7: already reached
    expect(top.poll()).toBe(POLLIN);
    tl.inc(0);
    expect(tl.value).toBe(7);
    tl.inc(2);
    expect(pending.poll()).toBe(POLLIN);
    for (const f of [top, pending]) f.close();
    tl.close();
  });
});

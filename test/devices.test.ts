/*
 * Devices as worker threads (issue 5): real device workers over the lab's
 * memory, jobs through the ring, fences as completions, implicit sync
 * through the buffers' reservation objects, faults and the watchdog.
 */
import { describe, expect, test } from "vitest";
import { Lab } from "../src/api/lab.js";
import { POLLIN, type Fence, type PollFd } from "../src/index.js";
import { spawnDevice, type Device, type DeviceBuffer } from "../src/devices/device.js";
import { dmaBufRevoke } from "../src/dmabuf/attachment.js";
import type { DmaBufRecord } from "../src/dmabuf/dma_buf.js";
import { bufferRuns } from "../src/dmabuf/runs.js";
import { pwritev, preadv } from "../src/dmabuf/rw.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { runModule } from "./helpers/module.js";
import { expectErrno } from "./helpers/errors.js";
import { prng } from "./helpers/prng.js";
import { until, within } from "./helpers/waits.js";
import { xxh32 } from "./helpers/xxh32.js";
import { FAULT_ASYNC_THROW, FAULT_EXIT, FAULT_SPIN, FAULT_THROW } from "./workers/kernel-faulty.js";

const KiB = 1024;
const FAULTY = new URL("../build/test-workers/kernel-faulty.mjs", import.meta.url);
const WAIT_MS = 10_000;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 32 * 1024 * KiB });
const devices = new DeviceSet();
cleanUpAfterEach({ devices, labs });
const device = (lab: Lab, options: Parameters<typeof spawnDevice>[1] = {}): Promise<Device> => devices.spawn(lab, options);

/** Waits (bounded, blocking) until the fence is signalled, and checks its status (1, or a negative errno). */
function expectSignalled(fence: Fence, status: number): void {
  expect(fence.wait(WAIT_MS), "signalled within the wait").toBeGreaterThan(0);
  expect(fence.status).toBe(status);
}

/** The buffer's bytes, read through the CPU path. */
function contents(buf: DmaBufRecord): Uint8Array {
  const out = new Uint8Array(buf.size);
  preadv(buf, [out], 0);
  return out;
}

function fillPattern(buf: DmaBufRecord, seed: number): Uint8Array {
  const bytes = new Uint8Array(buf.size);
  const rng = prng(seed);
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
  pwritev(buf, [bytes], 0);
  return bytes;
}

describe("device jobs", () => {
  test("fill, copy and checksum run on the device and signal their fences", async () => {
    const lab = await labs.create();
    const dev = await device(lab, { name: "gpu" });
    const a = lab.exporter("system").alloc(64 * KiB);
    const b = lab.exporter("system").alloc(64 * KiB);
    const c = lab.exporter("system").alloc(4 * KiB);
    try {
      const src = fillPattern(a, 1);
      const da = await dev.attach(a);
      const db = await dev.attach(b, { dynamic: true });
      const dc = await dev.attach(c);
      const fill = dev.submit({ kind: "fill", dst: db, value: 0x5a });
      const copy = dev.submit({ kind: "copy", src: da, dst: { buffer: db, offset: 4 * KiB, length: 8 * KiB } });
      const sum = dev.submit({ kind: "checksum", src: da, dst: dc });
      for (const f of [fill, copy, sum]) {
        expect(f.wait(WAIT_MS), "fence signalled").toBeGreaterThan(0);
        expect(f.status).toBe(1);
        f.put();
      }
      const got = contents(b);
      expect(got.subarray(0, 4 * KiB).every((x) => x === 0x5a)).toBe(true);
      expect(Buffer.compare(got.subarray(4 * KiB, 12 * KiB), src.subarray(0, 8 * KiB))).toBe(0);
      expect(got.subarray(12 * KiB).every((x) => x === 0x5a)).toBe(true);
      const s = contents(c);
      expect(new DataView(s.buffer).getUint32(0, true)).toBe(xxh32(src, 0));
      expect(dev.stats()).toMatchObject({ jobsDone: 3, jobsFailed: 0, state: "running" });
    } finally {
      a.put(); b.put(); c.put();
    }
  });

  test("a job waits for the CPU write fence of its buffer (implicit sync)", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const a = lab.exporter("system").alloc(4 * KiB);
    const b = lab.exporter("system").alloc(4 * KiB);
    try {
      const da = await dev.attach(a);
      const db = await dev.attach(b);
      // A pending writer on a: the copy must not read a before it signals.
      const tl = lab.sync.timeline({ driver: "test", name: "cpu" });
      const writer = tl.createFence();
      a.resv.withLock(() => { a.resv.reserveFences(1); a.resv.addFence(writer, 1); });
      const copy = dev.submit({ kind: "copy", src: da, dst: db });
      expect(copy.wait(50)).toBe(0); // still waiting for the writer
      const bytes = new Uint8Array(4 * KiB).fill(7);
      for (const r of bufferRuns(a, 0, 4 * KiB)) lab.arena.u8.set(bytes.subarray(0, r.len), r.addr);
      writer.signal();
      expect(copy.wait(WAIT_MS)).toBeGreaterThan(0);
      expect(contents(b).every((x) => x === 7)).toBe(true);
      copy.put(); writer.put(); tl.unref();
    } finally {
      a.put(); b.put();
    }
  });

  test("a dependency that failed skips the job, and its fence carries the error", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const b = lab.exporter("system").alloc(4 * KiB);
    try {
      const db = await dev.attach(b);
      const tl = lab.sync.timeline({ driver: "test", name: "in" });
      const inFence = tl.createFence();
      const fill = dev.submit({ kind: "fill", dst: db, value: 9, inFences: [inFence] });
      inFence.signal(-5);
      expectSignalled(fill, -5);
      expect(contents(b).every((x) => x === 0)).toBe(true);
      fill.put(); inFence.put(); tl.unref();
    } finally {
      b.put();
    }
  });

  test("a revoked buffer: the dynamic importer is told, its DMA faults with EFAULT, the device goes on", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const a = lab.exporter("system").alloc(4 * KiB);
    const b = lab.exporter("system").alloc(4 * KiB);
    try {
      const da = await dev.attach(a);
      const db = await dev.attach(b, { dynamic: true });
      // The exporter revokes both: the mappings go, the dynamic importer gets move_notify.
      dmaBufRevoke(a);
      dmaBufRevoke(b);
      const fills = [dev.submit({ kind: "fill", dst: da, value: 1 }), dev.submit({ kind: "fill", dst: db, value: 1 })];
      for (const f of fills) {
        expectSignalled(f, -14);
        f.put();
      }
      expect(contents(a).every((x) => x === 0) && contents(b).every((x) => x === 0)).toBe(true);
      expect(dev.stats()).toMatchObject({ faults: 2, state: "running" });
      await within((async () => { while ((await dev.revoked()).length === 0) await new Promise((r) => setTimeout(r, 5)); })(),
        WAIT_MS, "move_notify in the device");
      expect(await dev.revoked()).toEqual([db]); // only the dynamic importer is told
      // Errors of the control plane cross from the worker with their code.
      const e = await dev.map(db).then(() => null, (err: unknown) => err);
      expect(e).toMatchObject({ name: "DmaBufError", code: "ENODEV", errno: 19 });
      const nop = dev.submit({ kind: "nop" });
      expectSignalled(nop, 1);
      nop.put();
    } finally {
      a.put(); b.put();
    }
  });

  /** The buffer's bytes straight from the arena: no implicit-sync wait for the device's write. */
  const rawBytes = (lab: Lab, buf: DmaBufRecord): Uint8Array =>
    Uint8Array.from(bufferRuns(buf, 0, buf.size).flatMap((r) => [...lab.arena.u8.subarray(r.addr, r.addr + r.len)]));

  test("revoke waits for the DMA in flight: once it returns, no byte of the buffer changes", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const buf = lab.exporter("system").alloc(4 * KiB);
    try {
      const db = await dev.attach(buf);
      const faulty = await dev.loadKernel(FAULTY);
      // A kernel that writes the buffer for 300 ms after its translate.
      const job = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: db, access: "write" }], args: [FAULT_SPIN, 300] });
      await until(() => rawBytes(lab, buf)[0] !== 0, WAIT_MS, "the kernel's first write");
      expect(dmaBufRevoke(buf)).toBe(true);
      const after = rawBytes(lab, buf);
      expectSignalled(job, 1); // the DMA had been translated: it completes
      expect(rawBytes(lab, buf)).toEqual(after);
      job.put();
      expect(dmaBufRevoke(buf)).toBe(false);
    } finally {
      buf.put();
    }
  });

  test("revoke's wait is bounded: ETIMEDOUT past timeoutMs with the buffer revoked; bad timeouts are EINVAL and revoke nothing", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const buf = lab.exporter("system").alloc(4 * KiB);
    try {
      const db = await dev.attach(buf);
      for (const bad of [-1, Number.NaN, Infinity, "5", null, 10n]) {
        expectErrno(() => dmaBufRevoke(buf, { timeoutMs: bad as number }), "EINVAL");
      }
      expectErrno(() => dmaBufRevoke(buf, null as never), "EFAULT");
      expect(buf.revoked).toBe(false);
      const faulty = await dev.loadKernel(FAULTY);
      const job = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: db, access: "write" }], args: [FAULT_SPIN, 60_000] });
      await until(() => rawBytes(lab, buf)[0] !== 0, WAIT_MS, "the kernel's first write");
      const e = expectErrno(() => dmaBufRevoke(buf, { timeoutMs: 30 }), "ETIMEDOUT");
      expect(e.message).toMatch(/still running after 30 ms/);
      expect(buf.revoked).toBe(true);
      // The hung device is killed: its fence fails, and a revoke has nothing left to wait for.
      await dev.kill();
      expectSignalled(job, -5);
      job.put();
      expect(dmaBufRevoke(buf, { timeoutMs: 0 })).toBe(false);
    } finally {
      buf.put();
    }
  });

  test("a full ring is EAGAIN after submitTimeoutMs, with nothing allocated; the queued jobs still run", async () => {
    const lab = await labs.create();
    const dev = await device(lab, { ringEntries: 2, submitTimeoutMs: 0 });
    const tl = lab.sync.timeline({ driver: "test", name: "gate" });
    const gate = tl.createFence();
    const jobs: Fence[] = [];
    let refused: unknown;
    // The device takes one job and waits on the gate; two more fill the ring.
    for (let i = 0; i < 8 && refused === undefined; i++) {
      const before = lab.stats().sync.freeBytes;
      try {
        jobs.push(dev.submit({ kind: "nop", inFences: [gate] }));
      } catch (e) {
        refused = e;
        expect(lab.stats().sync.freeBytes, "sync heap after the refused submit").toBe(before);
      }
    }
    expect(refused).toMatchObject({ name: "DmaBufError", code: "EAGAIN", errno: 11 });
    expect(jobs.length).toBeGreaterThanOrEqual(2);
    gate.signal();
    for (const f of jobs) { expectSignalled(f, 1); f.put(); }
    gate.put(); tl.unref();
  });

  test("bad jobs are EINVAL and change nothing", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const a = lab.exporter("system").alloc(4 * KiB);
    try {
      const da = await dev.attach(a);
      const before = { sync: lab.stats().sync.freeBytes, count: a.resv.count };
      expectErrno(() => dev.submit({ kind: "fill", dst: da, value: 256 }), "EINVAL");
      expectErrno(() => dev.submit({ kind: "fill", dst: { buffer: da, offset: 4 * KiB - 1, length: 2 }, value: 1 }), "EINVAL");
      expectErrno(() => dev.submit({ kind: "bogus" } as never), "EINVAL");
      expectErrno(() => dev.submit({ kind: "copy", src: da, dst: { attachment: 1 } as DeviceBuffer }), "EINVAL");
      expect({ sync: lab.stats().sync.freeBytes, count: a.resv.count }).toEqual(before);
    } finally {
      a.put();
    }
  });
});

describe("poll on a dma-buf a device writes", () => {
  test("poll(timeout) waits for the device's write fence; a short timeout returns 0; pollAsync too", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const buf = lab.heap("system").alloc(4 * KiB);
    try {
      const db = await dev.attach(buf);
      const faulty = await dev.loadKernel(FAULTY);
      const spin = (ms: number) => dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: db, access: "write" }], args: [FAULT_SPIN, ms] });
      const fds: PollFd[] = [{ fd: buf.fd, events: POLLIN }];
      let job = spin(1000); // long enough that the short poll below surely comes first
      expect(lab.process.poll(fds, 20)).toBe(0); // the device still writes: not readable yet
      expect(fds[0].revents).toBe(0);
      expect(lab.process.poll(fds, WAIT_MS)).toBe(1); // woken by the device thread's signal
      expect(fds[0].revents).toBe(POLLIN);
      expect(job.status).toBe(1);
      job.put();
      job = spin(100);
      expect(await lab.process.pollAsync(fds, WAIT_MS)).toBe(1);
      expect(job.status).toBe(1);
      job.put();
      expectErrno(() => lab.process.poll(fds, Number.NaN), "EINVAL");
    } finally {
      buf.close();
    }
  });
});

describe("device coherence", () => {
  test("in a non-coherent lab a coherent device snoops the CPU cache; a non-coherent one sees memory", async () => {
    const lab = await labs.create({ coherent: false });
    const snooping = await device(lab, { name: "snooping", coherent: true });
    const plain = await device(lab, { name: "plain", coherent: false });
    const heap = lab.heap("system");
    const src = heap.alloc(4 * KiB);
    const [toSnooping, toPlain] = [heap.alloc(4 * KiB), heap.alloc(4 * KiB)];
    try {
      const map = src.map(0, 4 * KiB);
      map.views[0].fill(9); // a CPU write through the mapping, without DMA_BUF_IOCTL_SYNC: dirty lines
      // The plain device first: the snooping one writes the dirty lines back.
      for (const [dev, dst] of [[plain, toPlain], [snooping, toSnooping]] as const) {
        const f = dev.submit({ kind: "copy", src: await dev.attach(src), dst: await dev.attach(dst) });
        expectSignalled(f, 1);
        f.put();
      }
      expect(contents(toSnooping.record).every((x) => x === 9)).toBe(true);
      expect(contents(toPlain.record).every((x) => x === 0)).toBe(true); // the write never reached memory
      // The other way: a coherent device's write is in the CPU's view at once.
      const dm = toSnooping.map(0, 4 * KiB);
      expect(dm.views[0][0]).toBe(9); // the CPU cache now holds the line
      const fill = snooping.submit({ kind: "fill", dst: await snooping.attach(toSnooping), value: 3 });
      expect(fill.wait(WAIT_MS)).toBeGreaterThan(0);
      fill.put();
      expect(dm.views[0].every((x) => x === 3)).toBe(true);
      toSnooping.unmap(dm);
      src.unmap(map);
    } finally {
      for (const b of [src, toSnooping, toPlain]) b.close();
    }
  });
});

describe("device faults", () => {
  test("a job overrunning jobTimeoutMs: ETIMEDOUT for it, EIO for the queued, waiters wake", async () => {
    const lab = await labs.create();
    const dev = await device(lab, { jobTimeoutMs: 200 });
    const a = lab.exporter("system").alloc(4 * KiB);
    try {
      const da = await dev.attach(a);
      const faulty = await dev.loadKernel(FAULTY);
      const hung = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: da, access: "write" }], args: [FAULT_SPIN, 60_000] });
      const queued = dev.submit({ kind: "nop" });
      // A blocking wait on this (the main) thread: only the watchdog worker can end it.
      expectSignalled(hung, -110);
      expectSignalled(queued, -5);
      await within(dev.whenDead(), WAIT_MS, "device dead");
      expectErrno(() => dev.submit({ kind: "nop" }), "ENODEV");
      hung.put(); queued.put();
      // The rest of the lab keeps working: another device's job on the same buffer inherits the
      // failed writer's error (kept in a's resv), until the CPU writes a anew; then it runs.
      const other = await device(lab);
      const oa = await other.attach(a);
      const inherits = other.submit({ kind: "fill", dst: oa, value: 3 });
      expectSignalled(inherits, -110);
      inherits.put();
      pwritev(a, [new Uint8Array(4 * KiB)], 0);
      const fill = other.submit({ kind: "fill", dst: oa, value: 3 });
      expectSignalled(fill, 1);
      fill.put();
    } finally {
      a.put();
    }
  });

  test("a kernel that throws fails its job with EIO; later jobs on its buffer inherit it, the device goes on", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const a = lab.exporter("system").alloc(4 * KiB);
    const b = lab.exporter("system").alloc(4 * KiB);
    try {
      const da = await dev.attach(a);
      const db = await dev.attach(b);
      const faulty = await dev.loadKernel(FAULTY);
      const bad = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: da, access: "write" }], args: [FAULT_THROW] });
      const after = dev.submit({ kind: "fill", dst: da, value: 4 }); // waits on bad through a's resv
      const other = dev.submit({ kind: "fill", dst: db, value: 4 });
      for (const [f, status] of [[bad, -5], [after, -5], [other, 1]] as const) {
        expectSignalled(f, status);
        f.put();
      }
      expect(contents(a).subarray(1).every((x) => x === 0)).toBe(true); // the skipped fill wrote nothing
      expect(contents(b).every((x) => x === 4)).toBe(true);
      expect(dev.stats()).toMatchObject({ state: "running", jobsDone: 1, jobsFailed: 2 });
    } finally {
      a.put(); b.put();
    }
  });

  for (const [what, mode, crashStatus] of [["exits", FAULT_EXIT, -5], ["throws at its top level", FAULT_ASYNC_THROW, 1]] as const) {
    test(`a device worker that ${what} fails every pending fence with EIO and is reaped`, async () => {
      const lab = await labs.create();
      const dev = await device(lab);
      const a = lab.exporter("system").alloc(4 * KiB);
      const tl = lab.sync.timeline({ driver: "test", name: "gate" });
      const gate = tl.createFence();
      try {
        const da = await dev.attach(a);
        const faulty = await dev.loadKernel(FAULTY);
        const crash = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: da, access: "write" }], args: [mode] });
        // Behind a gate that stays shut: pending when the worker goes.
        const queued = [dev.submit({ kind: "nop", inFences: [gate] }), dev.submit({ kind: "nop" })];
        for (const f of queued) {
          expect(await f.waitAsync(WAIT_MS)).toBeGreaterThan(0);
          expect(f.status).toBe(-5);
        }
        expect(await crash.waitAsync(WAIT_MS)).toBeGreaterThan(0);
        expect(crash.status).toBe(crashStatus);
        await within(dev.whenDead(), WAIT_MS, "device dead");
        expect(dev.alive).toBe(false);
        expectErrno(() => dev.submit({ kind: "nop" }), "ENODEV");
        await dev.shutdown();
        expect(a.refcount).toBe(1); // the attachment went with the device
        for (const f of [...queued, crash]) f.put();
      } finally {
        gate.signal(); gate.put(); tl.unref();
        a.put();
      }
    });
  }

  test("a device that dies while this thread blocks in a wait: the watchdog wakes it", async () => {
    const lab = await labs.create();
    const dev = await device(lab, { jobTimeoutMs: 300 });
    const a = lab.exporter("system").alloc(4 * KiB);
    try {
      const da = await dev.attach(a);
      const faulty = await dev.loadKernel(FAULTY);
      const crash = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: da, access: "write" }], args: [FAULT_EXIT] });
      const next = dev.submit({ kind: "nop" });
      // Blocked here, this thread cannot see the worker's exit event: only
      // the watchdog worker can end the wait (the dead job overran its limit).
      expectSignalled(next, -5);
      expect([-5, -110]).toContain(crash.status);
      crash.put(); next.put();
    } finally {
      a.put();
    }
  });

  test("a terminated device worker fails its pending fences with EIO", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const tl = lab.sync.timeline({ driver: "test", name: "gate" });
    const gate = tl.createFence();
    const job = dev.submit({ kind: "nop", inFences: [gate] });
    await (dev as unknown as { worker: { terminate(): Promise<void> } }).worker.terminate();
    const left = await job.waitAsync(WAIT_MS);
    expect(left).toBeGreaterThan(0);
    expect(job.status).toBe(-5);
    expect(dev.alive).toBe(false);
    job.put(); gate.signal(); gate.put(); tl.unref();
  });
});

describe("device lifecycle", () => {
  test("a process that forgets to shut its device down still exits", async () => {
    // A real Node process on the built library: it spawns a device, runs a
    // job, and ends without shutdown(). A live worker must not keep it up.
    const lib = new URL("../dist/lib/index.js", import.meta.url).href;
    const script = `
      import { Lab } from ${JSON.stringify(lib)};
      const lab = await Lab.create({ memoryBytes: 64 << 20 });
      const dev = await lab.spawnDevice({ name: "forgotten" });
      const f = dev.submit({ kind: "nop" });
      if (f.wait(10000) === 0 || f.status !== 1) process.exit(3);
      console.log("job done");`;
    const { code, stdout } = await runModule(script);
    expect(stdout).toContain("job done");
    expect(code, "exit code (-1: killed after 30 s, the process hung)").toBe(0);
  });


  test("devices spawned together share one watchdog, and all of it goes with the last", async () => {
    const lab = await labs.create();
    const sync0 = lab.stats().sync.freeBytes;
    const devs = await Promise.all([0, 1, 2].map((i) => spawnDevice(lab, { name: `together-${i}` })));
    const jobs = devs.map((d) => d.submit({ kind: "nop" }));
    for (const f of jobs) { expect(f.wait(WAIT_MS)).toBeGreaterThan(0); f.put(); }
    await Promise.all(devs.map((d, i) => (i === 1 ? d.kill() : d.shutdown())));
    expect(devs.map((d) => d.alive)).toEqual([false, false, false]);
    expect(lab.stats().sync.freeBytes).toBe(sync0);
  });


  test("shutdown drains queued jobs, and releases the attachments and records", async () => {
    const lab = await labs.create();
    const a = lab.exporter("system").alloc(16 * KiB);
    contents(a); // the read/write path's per-thread state (its CPU timeline) exists from here on
    const sync0 = lab.stats().sync.freeBytes;
    const pages0 = lab.stats().pages.freeBytes;
    const dev = await spawnDevice(lab);
    const da = await dev.attach(a);
    const fences = Array.from({ length: 20 }, (_, i) => dev.submit({ kind: "fill", dst: da, value: i }));
    await dev.shutdown();
    for (const f of fences) { expect(f.status).toBe(1); f.put(); }
    expect(contents(a).every((x) => x === 19)).toBe(true);
    expect(lab.stats().sync.freeBytes).toBe(sync0);
    expect(lab.stats().pages.freeBytes).toBe(pages0);
    a.put();
  });
});

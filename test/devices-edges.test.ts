/*
 * Devices at their edges, each test named after what it protects. Every
 * wait on a device is bounded: submitTimeoutMs must be finite; a submit waiting for room in the
 * full ring of a device the watchdog fails gives up with ENODEV as soon as
 * the device is dead (not EAGAIN after the whole timeout); shutdown() behind
 * a job whose in-fence never signals ends after its timeout, as kill() does.
 */
import { describe, expect, test } from "vitest";
import type { Fence } from "../src/index.js";
import { spawnDevice, type Device } from "../src/devices/device.js";
import type { Lab } from "../src/api/lab.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { within } from "./helpers/waits.js";
import { FAULT_SPIN } from "./workers/kernel-faulty.js";

const KiB = 1024;
const FAULTY = new URL("../build/test-workers/kernel-faulty.mjs", import.meta.url);
const WAIT_MS = 10_000;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 16 * 1024 * KiB });
const devices = new DeviceSet("kill");
cleanUpAfterEach({ devices, labs });
const device = (lab: Lab, options: Parameters<typeof spawnDevice>[1] = {}): Promise<Device> => devices.spawn(lab, options);

function expectSignalled(fence: Fence, status: number): void {
  expect(fence.wait(WAIT_MS), "signalled within the wait").toBeGreaterThan(0);
  expect(fence.status).toBe(status);
}

describe("bounded device waits", () => {
  test("submitTimeoutMs must be finite: Infinity, NaN and negative values are EINVAL and start nothing", async () => {
    const lab = await labs.create();
    const before = lab.stats().sync.freeBytes;
    for (const submitTimeoutMs of [Infinity, NaN, -1]) {
      await expectErrnoAsync(() => spawnDevice(lab, { submitTimeoutMs }), "EINVAL");
    }
    expect(lab.stats().sync.freeBytes).toBe(before);
  });

  test("a submit waiting on the full ring of a device the watchdog fails is ENODEV once it is dead, not EAGAIN after submitTimeoutMs", async () => {
    const lab = await labs.create();
    const dev = await device(lab, { ringEntries: 2, jobTimeoutMs: 300, submitTimeoutMs: 60_000 });
    const buf = lab.exporter("system").alloc(4 * KiB);
    try {
      const b = await dev.attach(buf);
      const faulty = await dev.loadKernel(FAULTY);
      const hung = dev.submit({ kind: "kernel", kernel: faulty, buffers: [{ range: b, access: "write" }], args: [FAULT_SPIN, 60_000] });
      // The ring (2 entries) fills behind the hung job: the next submit waits for room on this thread.
      const queued: Fence[] = [];
      let e: ReturnType<typeof expectErrno> | undefined;
      for (let i = 0; i < 4 && e === undefined; i++) {
        try {
          queued.push(dev.submit({ kind: "nop", bypassFences: true }));
        } catch (err) {
          e = expectErrno(() => { throw err; }, "ENODEV");
        }
      }
      // ENODEV, not EAGAIN: it gave up because the device died, not because its 60 s ran out.
      expect(e, "a submit into the full ring failed").toBeDefined();
      expectSignalled(hung, -110);
      for (const f of queued) expectSignalled(f, -5);
      expectErrno(() => dev.submit({ kind: "nop" }), "ENODEV");
      hung.put();
      for (const f of queued) f.put();
    } finally {
      buf.put();
    }
  });

  test("shutdown() behind a job whose in-fence never signals ends after its timeout as kill() does: the job's fence EIO", async () => {
    const lab = await labs.create();
    const dev = await device(lab);
    const timeline = lab.sync.swSync("never");
    const never = timeline.createFence(1);
    try {
      const job = dev.submit({ kind: "nop", inFences: [never] });
      await within(dev.shutdown({ timeoutMs: 200 }), WAIT_MS, "shutdown behind a never-signalled in-fence");
      expect(dev.alive).toBe(false);
      expectSignalled(job, -5);
      job.put();
      await expectErrnoAsync(() => dev.shutdown({ timeoutMs: Infinity }), "EINVAL");
    } finally {
      never.close();
      timeline.close();
    }
  });
});

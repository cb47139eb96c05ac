/*
 * Sharing a device with another thread (device.share() -> lab.import(token)
 * -> DeviceHandle): a real worker submits jobs over the buffers the driver
 * attached, ordered against the main thread by implicit sync; a handle keeps
 * the device's records alive after the device died (ENODEV, never freed
 * memory) and frees them when it closes; forged and spent tokens, foreign
 * and detached DeviceBuffers and closed handles are refused with nothing
 * changed.
 */
import { describe, expect, test } from "vitest";
import { DeviceHandle, type Device, type DeviceBuffer, type Lab } from "../src/index.js";
import { RecordType } from "../src/memory/record.js";
import { expectErrno } from "./helpers/errors.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { testSeed } from "./helpers/prng.js";
import { WorkerSet } from "./helpers/workers.js";
import type { DeviceSubmitterData, DeviceSubmitterReport } from "./workers/device-submitter.js";

const KiB = 1024;
const WAIT_MS = 20_000;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 16 * 1024 * KiB });
const workers = new WorkerSet();
const devices = new DeviceSet();
cleanUpAfterEach({ workers, devices, labs });
const device = (lab: Lab, name: string): Promise<Device> => devices.spawn(lab, { name });

const isDeviceRecord = (lab: Lab, offset: number): boolean => lab.arena.records.typeAt(offset) === RecordType.device;

describe("device.share() and DeviceHandle", () => {
  test("a worker submits jobs to an imported device over the driver's attachments; each read-back holds the round's value", async () => {
    const seed = testSeed();
    console.log(`device-share seed ${seed}`);
    const lab = await labs.create();
    const dev = await device(lab, "shared-gpu");
    const buf = lab.heap("system").alloc(16 * KiB);
    const other = lab.heap("system").alloc(4 * KiB);
    await dev.attach(buf);
    const token = dev.share();
    const data: DeviceSubmitterData = {
      handle: lab.share(), device: token, buffer: buf.share(), unattached: other.share(), rounds: 8, seed, timeoutMs: WAIT_MS,
    };
    const report = await workers.start("device-submitter", "device-submitter", data).next<DeviceSubmitterReport>("done", WAIT_MS);
    expect(report).toMatchObject({ name: "shared-gpu", statuses: Array(8).fill(1), bad: [], unattachedCode: "ENOENT" });
    // The worker's last fill, seen from this thread.
    const last = (seed + 7) & 0xff;
    const back = new Uint8Array(buf.size);
    buf.read(back, 0);
    expect(back.every((x) => x === last)).toBe(true);
    expect(dev.stats().jobsDone).toBe(8);
    // The token was imported once: a copy of it is spent.
    expectErrno(() => lab.import(token), "EBADF");
    buf.close();
    other.close();
  });

  test("a handle outlives its device: ENODEV after the death, the records freed at its close", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "mortal");
    const buf = lab.heap("system").alloc(4 * KiB);
    await dev.attach(buf);
    const handle = lab.import(dev.share());
    expect(handle).toBeInstanceOf(DeviceHandle);
    const offset = dev.record.offset;
    const target = handle.attached(buf);
    const fence = handle.submit({ kind: "fill", dst: target, value: 3 });
    expect(fence.wait(WAIT_MS)).toBeGreaterThan(0);
    fence.put();
    expect(handle.alive).toBe(true);
    // A token never imported: dropped, its reference goes.
    lab.dropToken(dev.share());
    await dev.kill();
    expect(handle.alive).toBe(false);
    expect(isDeviceRecord(lab, offset)).toBe(true); // the handle's reference keeps it
    expectErrno(() => handle.submit({ kind: "nop" }), "ENODEV");
    expectErrno(() => handle.attached(buf), "ENODEV");
    expectErrno(() => handle.share(), "ENODEV");
    expectErrno(() => dev.share(), "ENODEV");
    expect(handle.stats()).toMatchObject({ name: "mortal", state: "dead", jobsDone: 1 });
    handle.close();
    expect(isDeviceRecord(lab, offset)).toBe(false);
    handle.close(); // idempotent
    for (const call of [() => handle.submit({ kind: "nop" }), () => handle.stats(), () => handle.attached(buf), () => handle.release(target)]) {
      expectErrno(call, "EBADF");
    }
    buf.close();
  });

  test("a worker submitting in a loop while the device is killed: every fence signals, the loop ends ENODEV, the records go with the handle", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "doomed");
    const buf = lab.heap("system").alloc(4 * KiB);
    const other = lab.heap("system").alloc(4 * KiB);
    await dev.attach(buf);
    const offset = dev.record.offset;
    const count = new Int32Array(new SharedArrayBuffer(4));
    const data: DeviceSubmitterData = {
      handle: lab.share(), device: dev.share(), buffer: buf.share(), unattached: other.share(), rounds: 0, seed: 0, timeoutMs: WAIT_MS, hammer: count,
    };
    const inbox = workers.start("device-submitter", "device-hammer", data);
    // Some submits first, then the device dies under the loop.
    const deadline = Date.now() + WAIT_MS;
    while (Atomics.load(count, 0) < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    expect(Atomics.load(count, 0)).toBeGreaterThanOrEqual(20);
    await dev.kill();
    const report = await inbox.next<DeviceSubmitterReport>("done", WAIT_MS);
    expect(report.endedBy).toBe("ENODEV");
    // Done, or failed with the device (EIO, or ECANCELED when stopped between jobs): nothing else, nothing pending.
    for (const status of Object.keys(report.outcomes!)) expect(["1", "-5", "-125"], `status ${status}`).toContain(status);
    expect(report.outcomes!["1"]).toBeGreaterThanOrEqual(20);
    // The worker closed its handle and its lab: the device's records are gone.
    expect(isDeviceRecord(lab, offset)).toBe(false);
    buf.close();
    other.close();
  });

  test("forged and spent tokens, foreign and detached buffers are refused with nothing written", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "guarded");
    const buf = lab.heap("system").alloc(4 * KiB);
    const plain = await dev.attach(buf);
    // Forged: a dma-buf token relabelled as a device, a device token naming the dma-buf's record.
    const bufToken = buf.share();
    expectErrno(() => lab.import({ ...bufToken, kind: "device" } as never), "EBADF");
    const token = dev.share();
    expectErrno(() => DeviceHandle.import(lab, { ...token, offset: buf.record.offset }), "EBADF");
    expectErrno(() => DeviceHandle.import(lab, null as never), "EINVAL");
    lab.dropToken(bufToken);
    using handle = DeviceHandle.import(lab, token);
    expectErrno(() => DeviceHandle.import(lab, token), "EBADF");
    expectErrno(() => handle.attached({} as never), "EINVAL");
    // The driver's own DeviceBuffer is not the handle's, and the reverse.
    expectErrno(() => handle.submit({ kind: "fill", dst: plain, value: 1 }), "EINVAL");
    const mine: DeviceBuffer = handle.attached(buf);
    expect(handle.attached(buf)).toBe(mine);
    expectErrno(() => dev.submit({ kind: "fill", dst: mine, value: 1 }), "EINVAL");
    // A forged copy of the handle's DeviceBuffer (another address) is refused.
    expectErrno(() => handle.submit({ kind: "fill", dst: { ...mine, iova: mine.iova + 4096 }, value: 1 }), "EINVAL");
    // The driver detaches: the handle's DeviceBuffer names a dead mapping and is refused.
    await dev.detach(plain);
    expectErrno(() => handle.submit({ kind: "fill", dst: mine, value: 0xee }), "EINVAL");
    expectErrno(() => handle.attached(buf), "ENOENT");
    const back = new Uint8Array(buf.size);
    buf.read(back, 0);
    expect(back.every((x) => x === 0)).toBe(true);
    expect(dev.stats().jobsDone).toBe(0);
    handle.release(mine);
    expectErrno(() => handle.release(mine), "EINVAL");
    buf.close();
  });
});

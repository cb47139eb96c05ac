/*
 * The race detector (src/sanitize): accesses to a dma-buf's bytes ordered
 * only by fences. Each test names the kernel rule whose edge it exercises:
 * a test with every fence in place expects no report, one with a fence left
 * out expects exactly the race it planted, both sides named.
 */
import { afterEach, describe, expect, test } from "vitest";
import type { Lab } from "../src/lab.js";
import { spawnDevice, type Device } from "../src/devices/device.js";
import { pwritev, preadv } from "../src/dmabuf/rw.js";
import { DmaBufFile } from "../src/uapi/dma_buf_file.js";
import { DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE, O_RDWR, PROT_READ, PROT_WRITE } from "../src/uapi/uapi.js";
import { LabSet } from "./helpers/lab.js";
import { expectErrno } from "./helpers/errors.js";

const KiB = 1024;
const WAIT_MS = 10_000;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 16 * 1024 * KiB, sanitize: true });
const devices: Device[] = [];

afterEach(async () => {
  try {
    await Promise.all(devices.splice(0).map((d) => d.shutdown({ drain: false })));
  } finally {
    labs.closeAll();
  }
});

async function device(lab: Lab, name: string): Promise<Device> {
  const d = await spawnDevice(lab, { name });
  devices.push(d);
  return d;
}

describe("the sanitizer's switch", () => {
  test("a lab without { sanitize } records nothing and report() is EINVAL", async () => {
    const lab = await labs.create({ sanitize: false });
    expect(lab.sanitizer.enabled).toBe(false);
    const buf = lab.exporter("system").alloc(4 * KiB);
    try {
      pwritev(buf, [new Uint8Array(16)], 0);
      expectErrno(() => lab.sanitizer.report(), "EINVAL");
    } finally {
      buf.put();
    }
  });

  test("a bad sanitize option is EINVAL and makes no lab", async () => {
    await expect(labs.create({ sanitize: 3 as unknown as boolean })).rejects.toMatchObject({ code: "EINVAL" });
    await expect(labs.create({ sanitize: { logBytes: 100 } })).rejects.toMatchObject({ code: "EINVAL" });
  });
});

describe("implicit sync orders device DMA and CPU copies (dma_resv usage rules)", () => {
  test("rw write, device fill, device copy, rw read: every access recorded, no race", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "gpu");
    const a = lab.exporter("system").alloc(16 * KiB);
    const b = lab.exporter("system").alloc(16 * KiB);
    try {
      const da = await dev.attach(a);
      const db = await dev.attach(b);
      pwritev(a, [new Uint8Array(16 * KiB).fill(7)], 0);
      const fill = dev.submit({ kind: "fill", dst: { buffer: da, offset: 4 * KiB, length: 4 * KiB }, value: 1 });
      const copy = dev.submit({ kind: "copy", src: da, dst: db });
      const out = new Uint8Array(16 * KiB);
      preadv(b, [out], 0);
      expect(out[4 * KiB]).toBe(1);
      expect(copy.wait(WAIT_MS)).toBeGreaterThan(0);
      fill.put();
      copy.put();
      const report = lab.sanitizer.report();
      expect(report.races).toEqual([]);
      expect(report.accesses).toBe(5);
      expect(report.incomplete).toBe(false);
    } finally {
      a.put();
      b.put();
    }
  });

  test("a job submitted with bypassFences publishes no fence: the CPU write after it races it, both sides named", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "gpu");
    const a = lab.exporter("system").alloc(16 * KiB);
    a.setName("frame");
    try {
      const da = await dev.attach(a);
      // Before the submission, in the submitting thread: ordered before the job (the ring push).
      pwritev(a, [new Uint8Array(8 * KiB).fill(7)], 0);
      const fill = dev.submit({ kind: "fill", dst: { buffer: da, offset: 4 * KiB, length: 8 * KiB }, value: 1, bypassFences: true });
      // The job's fence is not in the buffer's resv: this write waits for nothing.
      pwritev(a, [new Uint8Array(8 * KiB).fill(9)], 0);
      expect(fill.wait(WAIT_MS)).toBeGreaterThan(0);
      // The fence was waited for: the next access is ordered after the job.
      pwritev(a, [new Uint8Array(16)], 8 * KiB);
      const report = lab.sanitizer.report();
      expect(report.raceCount).toBe(1);
      const [race] = report.races;
      const sides = [race.a, race.b].sort((x, y) => x.agent.localeCompare(y.agent));
      expect(sides[1]).toMatchObject({ agent: "main", call: "pwritev", write: true, range: { offset: 0, length: 8 * KiB } });
      expect(sides[1].buffer.name).toMatch(/^frame 0x/);
      expect(sides[1].fence).not.toBeNull();
      expect(sides[0]).toMatchObject({ agent: "device gpu", call: "job fill", write: true, range: { offset: 4 * KiB, length: 8 * KiB } });
      expect(sides[0].fence).toEqual({ context: Number(fill.context & 0xffffffffn), seqno: Number(fill.seqno) });
      fill.put();
    } finally {
      a.put();
    }
  });
});

describe("CPU access (DMA_BUF_IOCTL_SYNC START/END and mmap)", () => {
  test("a bracket after waiting for the job is ordered; an mmap access outside any bracket is reported", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "gpu");
    const a = lab.exporter("system").alloc(8 * KiB);
    const file = new DmaBufFile(a, O_RDWR);
    const map = file.mmap(0, 8 * KiB, PROT_READ | PROT_WRITE);
    try {
      const da = await dev.attach(a);
      const fill = dev.submit({ kind: "fill", dst: da, value: 3 });
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ });
      expect(map.view[100]).toBe(3);
      map.access(false, 0, 4 * KiB); // covered by the bracket
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ });
      let report = lab.sanitizer.report();
      expect(report.races).toEqual([]);
      expect(report.unbracketed).toEqual([]);
      // Outside a bracket: a finding, ordered after the job by the bracket's wait (no race).
      map.access(true, 4 * KiB, 16);
      report = lab.sanitizer.report();
      expect(report.races).toEqual([]);
      expect(report.unbracketed).toHaveLength(1);
      expect(report.unbracketed[0]).toMatchObject({ agent: "main", call: "mmap", write: true, range: { offset: 4 * KiB, length: 16 } });
      // A write bracket does not wait for... nothing pending: then a job that bypasses fences races it.
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE });
      const late = dev.submit({ kind: "fill", dst: da, value: 4, bypassFences: true });
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE });
      expect(late.wait(WAIT_MS)).toBeGreaterThan(0);
      report = lab.sanitizer.report();
      expect(report.races.map((r) => [r.a.call, r.b.call].sort())).toContainEqual(["cpu access", "job fill"]);
      fill.put();
      late.put();
      expectErrno(() => map.access(true, 8 * KiB - 4, 16), "EINVAL");
    } finally {
      map.unmap();
      file.put();
      a.put();
    }
  });
});

/*
 * The read/write path (src/dmabuf/rw.ts): pread/pwrite of iovecs against
 * scattered, contiguous and write-combined buffers, compared with a plain
 * model, canaries around every user destination; the edges; and implicit
 * sync: EAGAIN with nothing published, ETIMEDOUT, the own fence visible
 * while the call waits, and a real worker that never sees a half-done write.
 */
import { describe, expect, test } from "vitest";
import { DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, type DmaBufRecord, type Lab } from "../src/index.js";
import { preadv, preadvAsync, pwritev, pwritevAsync } from "../src/dmabuf/rw.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { brokenCanary, guard } from "./helpers/canary.js";
import { expectErrno, expectErrnoAsync } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { withSeed, type Prng } from "./helpers/prng.js";
import { WorkerSet } from "./helpers/workers.js";
import { sleep, until } from "./helpers/waits.js";
import type { RwReaderData, RwReaderReport } from "./workers/dmabuf-rw-reader.js";

const MiB = 1024 * 1024;
const labs = new LabSet({ memoryBytes: 128 * MiB, poolBytes: 32 * MiB });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

/** The buffer's bytes in buffer order (read through its segments, not the path under test). */
function contents(lab: Lab, buf: DmaBufRecord): Uint8Array {
  const out = new Uint8Array(buf.size);
  let at = 0;
  for (const s of buf.segments()) {
    out.set(lab.arena.u8.subarray(s.addr, s.addr + s.len), at);
    at += s.len;
  }
  return out;
}

/** A buffer scattered over non-adjacent pages, so copies cross segment boundaries. */
function scattered(lab: Lab, pages: number): DmaBufRecord {
  const spacers = Array.from({ length: pages }, () => [lab.allocPages(0), lab.allocPages(0)]);
  spacers.forEach(([a]) => lab.freePages(a, 0));
  const buf = lab.exporter("system").alloc(pages * PAGE_SIZE);
  spacers.forEach(([, b]) => lab.freePages(b, 0));
  return buf;
}

/** Splits `len` bytes into 1..4 iovec lengths. */
function split(rng: Prng, len: number): number[] {
  const cuts = Array.from({ length: rng.int(0, 3) }, () => rng.int(0, len)).sort((a, b) => a - b);
  return [...cuts, len].map((c, i, all) => c - (i === 0 ? 0 : all[i - 1]));
}

describe("pread and pwrite", () => {
  test("random iovecs at random positions, in arena and foreign memory, agree with a plain model; canaries survive", async () => {
    const lab = await labs.create();
    await withSeed((rng) => {
      for (const make of [() => scattered(lab, 24), () => lab.exporter("cma").alloc(24 * PAGE_SIZE), () => lab.exporter("system-uncached").alloc(24 * PAGE_SIZE)]) {
        const buf = make();
        const model = new Uint8Array(buf.size);
        const area = lab.alloc(buf.size + 4096, { zero: false });
        try {
          expect(buf.segments().length).toBeGreaterThan(0);
          for (let round = 0; round < 60; round++) {
            const pos = rng.int(0, buf.size + 100);
            const len = rng.int(0, 3 * PAGE_SIZE);
            const foreign = rng.next() < 0.3;
            if (rng.next() < 0.5) {
              const data = rng.bytes(new Uint8Array(len));
              let at = 0;
              const iov = split(rng, len).map((n) => {
                const v = foreign ? new Uint8Array(n) : lab.alloc(Math.max(n, 1), { zero: false }).subarray(0, n);
                v.set(data.subarray(at, at + n));
                at += n;
                return v;
              });
              const expected = pos >= buf.size && len > 0 ? "ENOSPC" : Math.min(len, buf.size - pos);
              if (expected === "ENOSPC") {
                const before = contents(lab, buf);
                expectErrno(() => pwritev(buf, iov, pos), "ENOSPC");
                expect(Buffer.compare(contents(lab, buf), before)).toBe(0);
              } else {
                expect(pwritev(buf, iov, pos)).toBe(expected);
                model.set(data.subarray(0, expected), pos);
              }
              if (!foreign) iov.forEach((v) => v.byteLength > 0 && lab.free(new Uint8Array(v.buffer, v.byteOffset, 1)));
            } else {
              // One destination with canaries; iovecs are consecutive pieces of it.
              const g = guard(area, 64, Math.min(len, buf.size + 4096 - 128));
              const n = g.len;
              let at = g.at;
              const iov = split(rng, n).map((k) => { const v = area.subarray(at, at + k); at += k; return v; });
              const got = preadv(buf, foreign ? iov.map((v) => new Uint8Array(v.byteLength)) : iov, pos);
              const want = Math.max(0, Math.min(n, buf.size - pos));
              expect(got).toBe(want);
              if (!foreign) {
                expect(Buffer.compare(area.subarray(g.at, g.at + want), model.subarray(pos, pos + want))).toBe(0);
                // Bytes of the destination past a short read keep the canary, like the margins.
                expect(brokenCanary({ ...g, len: want }), `read at ${pos}`).toBeUndefined();
              }
            }
          }
          expect(Buffer.compare(contents(lab, buf), model)).toBe(0);
        } finally {
          lab.free(area);
          buf.put();
        }
      }
    });
  });

  test("edges: 0 at the end, short across it; bad positions EINVAL, bad iovecs EFAULT, nothing changed", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(2 * PAGE_SIZE);
    const user = lab.alloc(PAGE_SIZE);
    try {
      expect(preadv(buf, [user], buf.size)).toBe(0);
      expect(preadv(buf, [user], buf.size + 10)).toBe(0);
      expect(preadv(buf, [user], buf.size - 100)).toBe(100);
      user.fill(7);
      expect(pwritev(buf, [user], buf.size - 100)).toBe(100);
      expect(pwritev(buf, [user.subarray(0, 0)], buf.size)).toBe(0);
      const before = contents(lab, buf);
      const resvCount = buf.resv.count;
      expectErrno(() => preadv(buf, [user], -1), "EINVAL");
      expectErrno(() => pwritev(buf, [user], 1.5), "EINVAL");
      expectErrno(() => pwritev(buf, [user, "x" as unknown as Uint8Array], 0), "EFAULT");
      expectErrno(() => pwritev(buf, [user], buf.size), "ENOSPC");
      expect(Buffer.compare(contents(lab, buf), before)).toBe(0);
      expect(buf.resv.count).toBe(resvCount);
    } finally {
      lab.free(user);
      buf.put();
    }
  });
});

describe("implicit sync", () => {
  test("O_NONBLOCK: EAGAIN while a writer's fence is pending, with nothing published; a read waits at WRITE, a write at READ", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const user = lab.alloc(PAGE_SIZE);
    const tl = lab.sync.timeline({ driver: "gpu", name: "ring" });
    const { resv } = buf;
    const add = (usage: 1 | 2) => {
      const f = tl.createFence();
      resv.withLock(() => { resv.reserveFences(1); resv.addFence(f, usage); });
      return f;
    };
    try {
      const reader = add(DMA_RESV_USAGE_READ);
      // A pending reader does not block a read, but blocks a write.
      expect(preadv(buf, [user], 0, { nonblock: true })).toBe(PAGE_SIZE);
      const count = resv.count;
      expectErrno(() => pwritev(buf, [user], 0, { nonblock: true }), "EAGAIN");
      expect(resv.count).toBe(count);
      reader.signal();
      reader.put();
      const writer = add(DMA_RESV_USAGE_WRITE);
      expectErrno(() => preadv(buf, [user], 0, { nonblock: true }), "EAGAIN");
      expectErrno(() => preadv(buf, [user], 0, { timeoutMs: 5 }), "ETIMEDOUT");
      await expectErrnoAsync(() => preadvAsync(buf, [user], 0, { timeoutMs: 5 }), "ETIMEDOUT");
      writer.signal();
      writer.put();
      expect(preadv(buf, [user], 0, { nonblock: true })).toBe(PAGE_SIZE);
    } finally {
      lab.free(user);
      buf.put();
      tl.unref();
    }
  });

  test("a waiting write is itself visible as a pending WRITE fence until it has copied", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(PAGE_SIZE);
    const user = lab.alloc(PAGE_SIZE);
    user.fill(0x42);
    const tl = lab.sync.timeline({ driver: "display", name: "scanout" });
    const { resv } = buf;
    const reader = tl.createFence();
    resv.withLock(() => { resv.reserveFences(1); resv.addFence(reader, DMA_RESV_USAGE_READ); });
    try {
      const writing = pwritevAsync(buf, [user], 0);
      // The write is waiting for the reader; a new reader must now wait for the write.
      expect(resv.testSignaled(DMA_RESV_USAGE_WRITE)).toBe(false);
      const own = resv.getFences(DMA_RESV_USAGE_WRITE);
      expect(own.map((f) => f.names)).toEqual([{ driver: "dma-buf-rw", timeline: "cpu" }]);
      own.forEach((f) => f.put());
      expect(contents(lab, buf)[0]).toBe(0);
      reader.signal();
      expect(await writing).toBe(PAGE_SIZE);
      expect(resv.testSignaled(DMA_RESV_USAGE_WRITE)).toBe(true);
      expect(contents(lab, buf).every((b) => b === 0x42)).toBe(true);
    } finally {
      reader.put();
      lab.free(user);
      buf.put();
      tl.unref();
    }
  });

  test("a reader in another thread never sees a half-done write while fences are respected", async () => {
    const lab = await labs.create();
    const buf = scattered(lab, 64);
    const tl = lab.sync.timeline({ driver: "camera", name: "capture" });
    const { resv } = buf;
    try {
      for (let generation = 1; generation <= 3; generation++) {
        const write = tl.createFence();
        resv.withLock(() => { resv.reserveFences(1); resv.addFence(write, DMA_RESV_USAGE_WRITE); });
        const data: RwReaderData = { handle: lab.share(), buffer: buf.offset, timeoutMs: 20_000 };
        const reader = workers.start("dmabuf-rw-reader", `reader-${generation}`, data);
        // Once the reader's own fence is published it is inside its wait: a
        // reader that did not wait would now read the old generation.
        const pendingReaders = () => {
          const fences = resv.getFences(DMA_RESV_USAGE_READ);
          fences.forEach((f) => f.put());
          return fences.length;
        };
        await until(() => pendingReaders() === 2, 20_000, "the reader's fence published");
        // The "device" writes the new generation in two halves with a pause
        // between (a reader woken early would see both), then signals.
        const segments = buf.segments();
        const half = segments.length >> 1;
        for (const s of segments.slice(0, half)) lab.engine.fill(s.addr, generation, s.len);
        await sleep(20);
        for (const s of segments.slice(half)) lab.engine.fill(s.addr, generation, s.len);
        write.signal();
        write.put();
        const report = await reader.next<RwReaderReport>("done", 20_000);
        expect(report).toEqual({ type: "done", bytes: buf.size, distinct: [generation] });
        await workers.terminateAll();
      }
    } finally {
      buf.put();
      tl.unref();
    }
  });
});

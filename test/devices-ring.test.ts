/*
 * The job ring (src/devices/ring.ts): many producers in real workers, one
 * consumer here; a small ring, so that producers find it full and wait.
 */
import { describe, expect, test } from "vitest";
import { JobRing } from "../src/devices/ring.js";
import { cleanUpAfterEach, LabSet } from "./helpers/lab.js";
import { expectErrno } from "./helpers/errors.js";
import { releaseAll, reports, WorkerSet } from "./helpers/workers.js";
import type { RingProducerData, RingProducerReport } from "./workers/ring-producer.js";

const WAIT_MS = 20_000;
const labs = new LabSet({ memoryBytes: 16 * 1024 * 1024 });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });

describe("job ring", () => {
  test("values from three producer threads arrive once each, in each producer's order", async () => {
    const lab = await labs.create();
    const ring = JobRing.create(lab.sync, 4);
    const start = new Int32Array(new SharedArrayBuffer(4));
    const count = 2000;
    const boxes = [1, 2, 3].map((producer) => {
      const data: RingProducerData = { handle: lab.share(), ring: ring.offset, producer, count, start, timeoutMs: WAIT_MS };
      return workers.start("ring-producer", `producer-${producer}`, data);
    });
    await releaseAll(boxes, start, WAIT_MS);
    const next = new Map([[1, 1], [2, 1], [3, 1]]);
    let received = 0;
    const deadline = performance.now() + WAIT_MS;
    while (received < 3 * count) {
      expect(performance.now() < deadline, `only ${received} values within ${WAIT_MS} ms`).toBe(true);
      const v = ring.peek();
      if (v === 0) {
        // Yield to the event loop now and then: the workers' messages must get through.
        if (!ring.waitForWork(5)) await new Promise((r) => setTimeout(r, 0));
        continue;
      }
      ring.advance();
      const p = v >>> 20;
      expect(v & 0xfffff, `producer ${p}'s next value`).toBe(next.get(p));
      next.set(p, next.get(p)! + 1);
      received++;
    }
    const done = await reports<RingProducerReport>(boxes, WAIT_MS);
    expect(done.map((r) => r.pushed)).toEqual([count, count, count]);
    expect(ring.stats()).toMatchObject({ capacity: 4, pending: 0, pushed: 3 * count });
    ring.destroy();
  });

  test("a full ring is EAGAIN after the push timeout, with nothing pushed", async () => {
    const lab = await labs.create();
    const ring = JobRing.create(lab.sync, 2);
    ring.push(1, 0);
    ring.push(2, 0);
    expectErrno(() => ring.push(3, 0), "EAGAIN");
    expectErrno(() => ring.push(3, 5), "EAGAIN");
    expect(ring.stats()).toMatchObject({ pending: 2, pushed: 2 });
    expect(ring.peek()).toBe(1);
    ring.advance();
    ring.push(3, 0);
    expect([ring.peek(), (ring.advance(), ring.peek())]).toEqual([2, 3]);
    ring.destroy();
  });

  test("bad sizes are EINVAL", async () => {
    const lab = await labs.create();
    const before = lab.stats().sync.freeBytes;
    for (const n of [0, 1, 3, 100, 131072, 2.5]) expectErrno(() => JobRing.create(lab.sync, n), "EINVAL");
    expect(lab.stats().sync.freeBytes).toBe(before);
  });
});

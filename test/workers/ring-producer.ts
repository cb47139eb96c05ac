/*
 * A test worker (bundled to build/test-workers/ring-producer.mjs) that
 * pushes `count` values into a job ring from its own thread, for
 * test/devices-ring.test.ts. Value k of producer p is (p << 20) | (k + 1),
 * so the consumer can check that every value arrives exactly once and in
 * each producer's order. A full ring is waited on (push's timeout).
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { JobRing } from "../../src/devices/ring.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface RingProducerData {
  handle: LabHandle;
  ring: number;
  producer: number;
  count: number;
  start: Int32Array;
  timeoutMs: number;
}

export interface RingProducerReport {
  type: "done";
  pushed: number;
}

runWorker(async (d: RingProducerData): Promise<RingProducerReport> => {
  const lab = await Lab.attach(d.handle);
  const ring = new JobRing(lab.sync, d.ring);
  readyThenAwaitStart(d.start, d.timeoutMs, `producer ${d.producer}`);
  for (let k = 0; k < d.count; k++) ring.push((d.producer << 20) | (k + 1), d.timeoutMs);
  return { type: "done", pushed: d.count };
});

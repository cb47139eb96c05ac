/*
 * A test worker (bundled to build/test-workers/sw-sync-turns.mjs) for the
 * kernel selftest stress_two_threads_shared_timeline
 * (tools/testing/selftests/sync/sync_stress_parallelism.c), in
 * test/sync-selftests.test.ts.
 *
 * Two of these take alternating turns on one sw_sync timeline. Worker `id`
 * (0 or 1), turn i: create a fence at 2i + id, wait for it, check that the
 * shared counter (a plain Int32 word in the arena, read and written without
 * Atomics, as the kernel test uses a plain int) is 2i + id, increment it,
 * then advance the timeline by 1, which signals the other worker's fence.
 * The fence signal is what publishes the counter write to the other thread.
 *
 * Every wait has a timeout; the first failure ends the loop with an "error"
 * message naming the turn, the timeline value and the counter.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { SwSyncTimeline } from "../../src/sync/sw_sync.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface TurnsData {
  handle: LabHandle;
  /** 0 or 1. */
  id: number;
  /** The sw_sync timeline's offset (SwSyncTimeline.offset). */
  timeline: number;
  /** Byte offset of the shared counter (an Int32 word from lab.alloc()). */
  counter: number;
  iterations: number;
  /** Word 0 becomes non-zero when both workers may start. */
  start: Int32Array;
  /** Bound of every wait, ms. */
  waitMs: number;
}

export interface TurnsReport {
  type: "done";
  id: number;
  turns: number;
  /** Fences already signalled when created (the other worker was ahead). */
  signaledAtCreate: number;
  ms: number;
}

async function main(data: TurnsData): Promise<TurnsReport> {
  const lab = await Lab.attach(data.handle);
  const tl = SwSyncTimeline.dup(lab.sync, data.timeline);
  const counter = new Int32Array(lab.memory.buffer, data.counter, 1);
  const report: TurnsReport = { type: "done", id: data.id, turns: 0, signaledAtCreate: 0, ms: 0 };
  try {
    readyThenAwaitStart(data.start, data.waitMs, `worker ${data.id}`);
    const t0 = performance.now();
    for (let i = 0; i < data.iterations; i++) {
      const value = 2 * i + data.id;
      const f = tl.createFence(value, "fence");
      try {
        if (f.poll() !== 0) report.signaledAtCreate++;
        // Wait on the prior thread to complete (sync_wait(fence, -1) > 0).
        if (!f.wait(data.waitMs)) {
          throw new Error(`worker ${data.id}, turn ${i}: the fence at ${value} was not signalled within ${data.waitMs} ms ` +
            `(timeline at ${tl.value}, counter ${counter[0]})`);
        }
        // Confirm the previous thread's writes are visible, then increment.
        const seen = counter[0];
        if (seen !== value) throw new Error(`worker ${data.id}, turn ${i}: counter got damaged: ${seen}, expected ${value}`);
        counter[0] = seen + 1;
        // Kick off the other thread.
        tl.inc(1);
      } finally {
        f.close();
      }
      report.turns++;
    }
    report.ms = performance.now() - t0;
    return report;
  } finally {
    tl.close();
    lab.close();
  }
}

runWorker(main);

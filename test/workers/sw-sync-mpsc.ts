/*
 * A test worker (bundled to build/test-workers/sw-sync-mpsc.mjs) for the
 * kernel selftest consumer_stress_multi_producer_single_consumer
 * (tools/testing/selftests/sync/sync_stress_consumer.c), in
 * test/sync-selftests.test.ts. One worker per role:
 *
 *   producer id, i = 0..iterations-1: create a fence at i on the consumer
 *     timeline; wait for it (sync_wait when (iterations + id) % 8 != 0,
 *     else busy-wait); counter++ under the shared mutex; advance its own
 *     producer timeline by 1.
 *   consumer, it = 1..iterations: create a fence at `it` on every producer
 *     timeline and merge them one by one into one sync_file; wait for it
 *     (sync_wait when iterations % 8 != 0, else busy-wait); check that the
 *     counter is producers * it; advance the consumer timeline by 1.
 *
 * busy_wait_on_fence: repeat { no entry of the file has status ERROR (-1);
 * count the ACTIVE (0) entries } while any is active, through the two-call
 * SYNC_IOC_FILE_INFO protocol; here bounded by busyMs.
 *
 * Every wait has a timeout; a failure ends the worker with an "error"
 * message naming the iteration.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { Mutex } from "../../src/memory/mutex.js";
import { SwSyncTimeline } from "../../src/sync/sw_sync.js";
import { SyncFile } from "../../src/sync/sync_file.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface MpscData {
  handle: LabHandle;
  role: "producer" | "consumer";
  /** Producer number, 0..producers-1 (unused by the consumer). */
  id: number;
  /** Timeline offsets. */
  consumerTimeline: number;
  producerTimelines: number[];
  /** Byte offsets of the shared mutex (MUTEX_BYTES) and the Int32 counter. */
  mutex: number;
  counter: number;
  iterations: number;
  start: Int32Array;
  /** Bound of every blocking wait and of every busy-wait, ms. */
  waitMs: number;
}

export interface MpscReport {
  type: "done";
  role: MpscData["role"];
  id: number;
  iterations: number;
  /** Waits done by busy-waiting, and the status polls they made. */
  busyWaits: number;
  busyPolls: number;
  /** Consumer: merged files that were already signalled when made. */
  signaledAtMerge: number;
  ms: number;
}

const FENCE_STATUS_ERROR = -1;
const FENCE_STATUS_ACTIVE = 0;

/** sync_fence_count_with_status: the two-call FILE_INFO protocol, exact status match. */
function countWithStatus(file: SyncFile, status: number): number {
  const { numFences } = file.info({ numFences: 0 });
  if (numFences === 0) return 0;
  const { fences } = file.info({ numFences });
  return fences!.filter((f) => f.status === status).length;
}

function busyWait(file: SyncFile, ms: number, what: string, report: MpscReport): void {
  const deadline = performance.now() + ms;
  report.busyWaits++;
  for (;;) {
    report.busyPolls++;
    const errors = countWithStatus(file, FENCE_STATUS_ERROR);
    if (errors !== 0) throw new Error(`${what}: ${errors} fence(s) with status ERROR`);
    if (countWithStatus(file, FENCE_STATUS_ACTIVE) === 0) return;
    if (performance.now() > deadline) throw new Error(`${what}: still active after busy-waiting ${ms} ms`);
  }
}

async function main(data: MpscData): Promise<MpscReport> {
  const lab = await Lab.attach(data.handle);
  const consumerTl = SwSyncTimeline.dup(lab.sync, data.consumerTimeline);
  const producerTls: SwSyncTimeline[] = [];
  const n = data.producerTimelines.length;
  const { iterations } = data;
  const mutex = new Mutex(lab.memory.buffer, data.mutex);
  const counter = new Int32Array(lab.memory.buffer, data.counter, 1);
  const report: MpscReport = {
    type: "done", role: data.role, id: data.id, iterations: 0, busyWaits: 0, busyPolls: 0, signaledAtMerge: 0, ms: 0,
  };
  const name = data.role === "consumer" ? "consumer" : `producer ${data.id}`;
  try {
    for (const offset of data.producerTimelines) producerTls.push(SwSyncTimeline.dup(lab.sync, offset));
    readyThenAwaitStart(data.start, data.waitMs, `${name}`);
    const t0 = performance.now();
    if (data.role === "producer") {
      const id = data.id;
      for (let i = 0; i < iterations; i++) {
        const what = `${name}, iteration ${i}`;
        const fence = consumerTl.createFence(i, "fence");
        try {
          // Wait for the consumer to finish, alternating the means of waiting.
          if ((iterations + id) % 8 !== 0) {
            if (!fence.wait(data.waitMs)) throw new Error(`${what}: not signalled within ${data.waitMs} ms`);
          } else {
            busyWait(fence, data.waitMs, what, report);
          }
          // Every producer increments the counter, the consumer checks it.
          mutex.with(() => { counter[0]++; }, data.waitMs);
          producerTls[id].inc(1);
        } finally {
          fence.close();
        }
        report.iterations++;
      }
    } else {
      for (let it = 1; it <= iterations; it++) {
        const what = `${name}, iteration ${it}`;
        let fence = producerTls[0].createFence(it, "name");
        try {
          for (let i = 1; i < n; i++) {
            const tmp = producerTls[i].createFence(it, "name");
            try {
              const merged = SyncFile.merge(tmp, fence, { name: "name" });
              fence.close();
              fence = merged;
            } finally {
              tmp.close();
            }
          }
          if (fence.poll() !== 0) report.signaledAtMerge++;
          // Make sure we see an increment from every producer thread.
          if (iterations % 8 !== 0) {
            if (!fence.wait(data.waitMs)) throw new Error(`${what}: producers did not increment within ${data.waitMs} ms`);
          } else {
            busyWait(fence, data.waitMs, what, report);
          }
          const seen = counter[0];
          if (seen !== n * it) throw new Error(`${what}: counter value mismatch: ${seen}, expected ${n * it}`);
          // Release the producer threads.
          consumerTl.inc(1);
        } finally {
          fence.close();
        }
        report.iterations++;
      }
    }
    report.ms = performance.now() - t0;
    return report;
  } finally {
    for (const tl of producerTls) tl.close();
    consumerTl.close();
    lab.close();
  }
}

runWorker(main);

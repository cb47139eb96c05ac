/*
 * A test worker (bundled to build/test-workers/fence-race.mjs): one of the
 * two threads of the kernel's race_signal_callback (st-dma-fence.c), for
 * test/sync-fence.test.ts.
 *
 * Shared words (an Int32Array in lab memory, FenceRaceData.words):
 *   SLOT0, SLOT1  the fence each thread publishes (an arena offset, 0: none)
 *   STOP          non-zero: stop (set by the main thread, or by the first
 *                 thread to reach maxIterations)
 * A published slot holds a reference of its own. The other thread takes it
 * with Atomics.exchange (so the record cannot be freed between reading the
 * offset and holding it: the kernel's dma_fence_get_rcu_safe); the owner
 * clears its slot the same way at the end of its iteration and drops the
 * reference if nobody took it.
 *
 * Loop (until STOP, after at least one pass; maxIterations; or an error), as in the kernel:
 *   1. f1 = a new fence, published in slot[id].
 *   2. Wait for slot[!id] (Atomics.wait in short slices, checking STOP).
 *   3. If before: signal f1.
 *   4. seen = false; no f2, or addCallback(f2) gives ENOENT: miss++, seen = true.
 *   5. If !before: signal f1.
 *   6. If !seen: f2.wait(timeoutMs); the callback runs inside that wait.
 *   7. Still !seen: the error.
 *   8. Put f2, clear the slot, put f1.
 * Every 64 iterations it yields to the event loop, so that the callback
 * watches release their references. It then posts a FenceRaceReport and
 * stays alive (listening on its port) until it is terminated, so that the
 * last watches can still release theirs while the main thread checks that
 * every fence record was freed.
 */
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import type { Fence } from "../../src/sync/fence.js";
import { errorText, runWorker } from "./protocol.js";

export const SLOT0 = 0;
export const STOP = 2;
export const RACE_WORDS = 4;

export interface FenceRaceData {
  handle: LabHandle;
  id: 0 | 1;
  before: boolean;
  /** Arena offset of RACE_WORDS Int32 words. */
  words: number;
  maxIterations: number;
  /** Bound of each wait on the other thread's fence or slot. */
  timeoutMs: number;
}

export interface FenceRaceReport {
  type: "done";
  id: number;
  passes: number;
  misses: number;
  /** Iterations that reached step 6 (waited on f2). */
  waits: number;
  error?: string;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

async function main(data: FenceRaceData): Promise<FenceRaceReport> {
  const lab = await Lab.attach(data.handle);
  const { sync } = lab;
  const words = new Int32Array(lab.memory.buffer, data.words, RACE_WORDS);
  const mine = SLOT0 + data.id;
  const other = SLOT0 + 1 - data.id;
  const timeline = sync.timeline({ driver: "mock", name: "mock" });
  const report: FenceRaceReport = { type: "done", id: data.id, passes: 0, misses: 0, waits: 0 };
  const stopped = () => Atomics.load(words, STOP) !== 0;

  /** Step 2: takes the other thread's published fence (and its reference), or null at STOP. */
  const takeOther = (): Fence | null => {
    const deadline = performance.now() + data.timeoutMs;
    for (;;) {
      const offset = Atomics.exchange(words, other, 0);
      if (offset !== 0) return sync.view(offset, true); // adopts the slot's reference
      if (stopped()) return null;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`thread ${data.id}: the other thread published nothing for ${data.timeoutMs} ms`);
      Atomics.wait(words, other, 0, Math.min(left, 5));
    }
  };

  try {
    // At least one pass, even when STOP came before this thread started (a
    // loaded machine may start a worker after the host's 300 ms are up).
    while ((report.passes === 0 || !stopped()) && report.passes < data.maxIterations) {
      const f1 = timeline.createFence();
      sync.ref(f1.offset); // the slot's reference
      Atomics.store(words, mine, f1.offset);
      Atomics.notify(words, mine);

      const f2 = takeOther();
      if (data.before) f1.signal();

      let seen = false;
      if (f2 === null) {
        report.misses++;
        seen = true;
      } else {
        try {
          f2.addCallback(() => { seen = true; });
        } catch (e) {
          if (!(e instanceof DmaBufError && e.code === "ENOENT")) throw e;
          report.misses++;
          seen = true;
        }
      }

      if (!data.before) f1.signal();

      if (!seen) {
        report.waits++;
        if (f2!.wait(data.timeoutMs) === 0) {
          throw new Error(`thread ${data.id}: the other thread's fence was not signalled within ${data.timeoutMs} ms`);
        }
      }
      if (!seen) {
        throw new Error(`thread ${data.id}: callback not seen after wait() (pass ${report.passes}, miss ${report.misses})`);
      }

      f2?.put();
      const unclaimed = Atomics.exchange(words, mine, 0);
      if (unclaimed !== 0) sync.unref(unclaimed);
      f1.put();
      report.passes++;
      if (report.passes % 64 === 0) await yieldToEventLoop();
    }
  } catch (e) {
    report.error = errorText(e);
  }
  // The first thread to finish stops the other (which may be waiting for a slot).
  Atomics.store(words, STOP, 1);
  Atomics.notify(words, other);
  Atomics.notify(words, mine);
  timeline.unref();
  return report;
}

// Runs only as a worker (runWorker does nothing elsewhere): the test imports this module for its constants and types.
runWorker(main, { keepAlive: true });

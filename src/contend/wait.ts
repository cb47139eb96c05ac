/*
 * How a thread of the contention experiment waits for a fence, timed: a
 * WaitStep (the read/write path's hook, src/dmabuf/rw.ts) that hands the
 * duration of every wait (ns, the time the thread spent waiting, timeouts
 * included) to `sample`.
 *
 *   atomics      Fence.wait: the thread sleeps in Atomics.wait on the
 *                fence's status word and the signaller's notify wakes it
 *   spin         polls Fence.isSignaled() until signalled or the timeout:
 *                the thread never sleeps (bounded by the timeout only), so
 *                on 2 cores it competes with the thread it waits for
 *   postMessage  the thread returns to its event loop and is told there:
 *                Fence.waitAsync (Atomics.waitAsync), whose wake-up the
 *                signaller's notify queues as a task on the waiter's event
 *                loop, the same delivery a postMessage has. No relay thread
 *                posts real messages: it would add a third thread and its own
 *                wake-up to every wait, and measure the relay, not the wait.
 *
 * Contract: the atomics and spin steps answer synchronously (blocking: true,
 * a SyncWaitStep for the blocking preadv/pwritev and the host's device
 * loop); the postMessage step
 * answers with a Promise (for the async twins). Each returns the time left
 * (> 0), or 0 on timeout, as Fence.wait does.
 */
import type { SyncWaitStep, WaitStep } from "../dmabuf/rw.js";
import { nowMs } from "../memory/futex.js";
import { timeLeft, type Fence } from "../sync/fence.js";
import type { WaitStrategy } from "./options.js";

/** Polls between clock reads. */
const SPINS_PER_CLOCK = 256;

function spin(f: Fence, timeoutMs: number): number {
  const start = nowMs();
  for (let i = 1; !f.isSignaled(); i++) {
    if (i % SPINS_PER_CLOCK === 0 && nowMs() - start >= timeoutMs) return 0;
  }
  return timeLeft(start, timeoutMs);
}

/** A timed wait: synchronous (atomics, spin) for the blocking calls, or one that may answer with a Promise. */
export type TimedWait = { blocking: true; step: SyncWaitStep } | { blocking: false; step: WaitStep };

export function waitStep(strategy: WaitStrategy, sample: (ns: number) => void): TimedWait {
  switch (strategy) {
    case "atomics":
    case "spin": {
      const wait = strategy === "spin" ? spin : (f: Fence, ms: number) => f.wait(ms);
      return {
        blocking: true,
        step: (f, ms) => {
          const t0 = nowMs();
          const left = wait(f, ms);
          sample((nowMs() - t0) * 1e6);
          return left;
        },
      };
    }
    case "postMessage":
      return {
        blocking: false,
        step: async (f, ms) => {
          const t0 = nowMs();
          const left = await f.waitAsync(ms);
          sample((nowMs() - t0) * 1e6);
          return left;
        },
      };
  }
}

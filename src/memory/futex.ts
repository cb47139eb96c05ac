/*
 * Futex-style waiting on a shared Int32 word, for every thread.
 *
 * Atomics.wait blocks workers and Node's main thread, and throws on a
 * browser's main thread. canBlock() probes that once per thread. Blocking
 * helpers here always take a timeout: no wait in this project is unbounded.
 */

let blocking: boolean | undefined;

/** Whether this thread may block in Atomics.wait. */
export function canBlock(): boolean {
  if (blocking === undefined) {
    try {
      // AgentCanSuspend() is checked before the value, so a mismatching
      // value answers at once where blocking is allowed and throws where not.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
      blocking = true;
    } catch {
      blocking = false;
    }
  }
  return blocking;
}

let token = 0;

/** A non-zero number naming this thread, for lock ownership (random, per thread). */
export function threadToken(): number {
  while (token === 0) token = crypto.getRandomValues(new Int32Array(1))[0];
  return token;
}

/** Monotonic milliseconds (performance.now works in Node and browsers). */
export const nowMs = (): number => performance.now();

/**
 * Waits while word `index` equals `expected`, at most `timeoutMs`; where
 * this thread cannot block it spins on Atomics.load for the same time.
 * Returns false on timeout. A spurious wake returns true: callers re-check.
 */
export function futexWait(i32: Int32Array, index: number, expected: number, timeoutMs: number): boolean {
  if (canBlock()) return Atomics.wait(i32, index, expected, timeoutMs) !== "timed-out";
  const deadline = nowMs() + timeoutMs;
  while (Atomics.load(i32, index) === expected) {
    if (nowMs() >= deadline) return false;
  }
  return true;
}

export function futexWake(i32: Int32Array, index: number, count = Infinity): number {
  return Atomics.notify(i32, index, count);
}

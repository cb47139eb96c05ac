/*
 * Futex-style waiting on a shared Int32 word, for every thread.
 *
 * Atomics.wait blocks workers and Node's main thread, and throws on a
 * browser's main thread. canBlock() probes that once per thread. Blocking
 * helpers here always take a timeout: no wait in this project is unbounded.
 */

import { DmaBufError } from "../errno.js";

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

/** EPERM where this thread may not block, naming the Promise form (`twin`). */
export function requireBlocking(syscall: string, twin = "waitAsync()"): void {
  if (!canBlock()) {
    throw new DmaBufError("EPERM", syscall,
      `this thread may not block (a browser's main thread); use the Promise form, ${twin}`);
  }
}

/*
 * Waiting until a condition holds, on a word that changes whenever it may
 * have become true (a fence's status, the any-epoch). The waiter counts
 * itself in `waiters` for the duration, so that the waker knows to notify,
 * then loops: read the word, check the condition, sleep while the word still
 * holds what was read. The waker changes the word and then reads `waiters`;
 * with sequentially consistent atomics on both sides, either the waiter sees
 * the change or the waker sees the waiter, so no wake-up is lost.
 * waitSteps is that loop (it stops when done() holds or the deadline passes;
 * the caller's last done() is the answer); waitUntil and waitUntilAsync only
 * choose how to sleep.
 */
function* waitSteps(i32: Int32Array, word: number, done: () => boolean, deadline: number):
  Generator<[seen: number, left: number]> {
  for (;;) {
    const seen = Atomics.load(i32, word);
    if (done()) return;
    const left = deadline - nowMs();
    if (!(left > 0)) return;
    yield [seen, left];
  }
}

/** Runs body counted in `waiters` until it returns, or until its Promise settles. */
function withWaiter<T>(i32: Int32Array, waiters: number, body: () => T): T {
  Atomics.add(i32, waiters, 1);
  let settlesLater = false;
  try {
    const result = body();
    if (result instanceof Promise) {
      settlesLater = true;
      return result.finally(() => Atomics.sub(i32, waiters, 1)) as T;
    }
    return result;
  } finally {
    if (!settlesLater) Atomics.sub(i32, waiters, 1);
  }
}

/**
 * Blocks (Atomics.wait) until done() or the deadline; false on timeout.
 * waitSteps' loop written out, so that a wait allocates nothing (it is on
 * the hot path of fences and the buffer queue).
 */
export function waitUntil(
  i32: Int32Array, word: number, waiters: number, done: () => boolean, deadline: number, syscall: string,
): boolean {
  if (done()) return true;
  Atomics.add(i32, waiters, 1);
  try {
    for (;;) {
      const seen = Atomics.load(i32, word);
      if (done()) return true;
      const left = deadline - nowMs();
      if (!(left > 0)) return done(); // the last look, at the deadline
      requireBlocking(syscall);
      Atomics.wait(i32, word, seen, left);
    }
  } finally {
    Atomics.sub(i32, waiters, 1);
  }
}

/**
 * Resolves as `work` does, keeping a Node process alive meanwhile (a ref'd
 * timer). A pending Atomics.waitAsync does not, and the threads that would
 * wake it (device workers) may be unref'd: a program awaiting a fence must
 * not end with its await unsettled. Also for the steps between calls to
 * unref'd workers. Harmless in browsers.
 */
export async function keepingAlive<T>(work: Promise<T>): Promise<T> {
  const timer = setInterval(() => {}, 2 ** 30);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** waitUntil as a Promise (Atomics.waitAsync): any thread, never blocks. */
export function waitUntilAsync(
  i32: Int32Array, word: number, waiters: number, done: () => boolean, deadline: number,
): Promise<boolean> {
  if (done()) return Promise.resolve(true);
  return withWaiter(i32, waiters, async () => {
    for (const [seen, left] of waitSteps(i32, word, done, deadline)) {
      const r = Atomics.waitAsync(i32, word, seen, left === Infinity ? undefined : left);
      if (r.async) await r.value;
    }
    return done();
  });
}

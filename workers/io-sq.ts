/*
 * The SQ thread of an IORING_SETUP_SQPOLL ring (the kernel's io_uring-sq):
 * polls the SQ, submits, reaps device completions and posts CQEs, so that
 * the application submits without a system call. After sq_thread_idle ms
 * without work it sets IORING_SQ_NEED_WAKEUP and sleeps on CTX_SQ_WAKE until
 * io_uring_enter(IORING_ENTER_SQ_WAKEUP). It ends when the ring's file is
 * released (CTX_DYING), after its requests in flight.
 *
 * The lost-wakeup argument: the application stores SQ_TAIL, then loads
 * SQ_FLAGS; this thread sets NEED_WAKEUP, then loads SQ_TAIL. Both are
 * seq-cst, so either this thread sees the new tail or the application sees
 * the flag and wakes it.
 */
import { Lab } from "../src/api/lab.js";
import type { LabHandle } from "../src/lab.js";
import { workerContext, exitWorker } from "../src/thread/spawn.js";
import { CTX_DYING, CTX_SQ_IDLE_MS, CTX_SQ_WAKE, CTX_STATE, IORING_SQ_NEED_WAKEUP } from "../src/io_uring/io_uring.js";
import { IoRing } from "../src/io_uring/ring.js";
import { IoRingKernel } from "../src/io_uring/kernel.js";

const { data } = await workerContext<{ handle: LabHandle; ring: number }>();
const lab = await Lab.attach(data.handle);
const ring = new IoRing(lab.arena, data.ring);
const kernel = new IoRingKernel(lab, ring);
const idleMs = ring.word(CTX_SQ_IDLE_MS);
/** How long an idle SQ thread sleeps before it looks at CTX_STATE again. */
const SLEEP_SLICE_MS = 100;

let lastWork = performance.now();
while (ring.load(CTX_STATE) !== CTX_DYING) {
  const work = ring.lock.with(() => {
    const n = kernel.submit(ring.sqPending());
    const done = kernel.reap();
    kernel.flushOverflow();
    return n + done;
  });
  const now = performance.now();
  if (work > 0) {
    lastWork = now;
    continue;
  }
  if (kernel.inflight > 0) {
    // Requests on a device: poll their fences, with short sleeps.
    kernel.waitSome(0.05);
    continue;
  }
  if (now - lastWork < idleMs) {
    Atomics.wait(ring.i32, ring.index(CTX_SQ_WAKE), ring.load(CTX_SQ_WAKE), 0.05);
    continue;
  }
  const wake = ring.load(CTX_SQ_WAKE);
  ring.setSqFlag(IORING_SQ_NEED_WAKEUP, true);
  if (ring.sqPending() === 0) Atomics.wait(ring.i32, ring.index(CTX_SQ_WAKE), wake, SLEEP_SLICE_MS);
  ring.setSqFlag(IORING_SQ_NEED_WAKEUP, false);
}
kernel.cancelAll(5000);
exitWorker(0);

/*
 * Fence signalling and waiting over fence records in the arena: the one
 * implementation of the signal protocol, called by TypeScript (Fence.signal)
 * and by wasm device code alike.
 *
 * Protocol (every access is a sequentially consistent wasm atomic):
 *   signal: win CLAIM (0 -> 1; a loser reports SIGNAL_ALREADY), write ERROR
 *           and TIMESTAMP, then publish STATUS; then wake STATUS if WAITERS is
 *           non-zero, and bump + wake the control block's ANY_EPOCH if any
 *           thread waits for any of several fences.
 *   wait:   add to WAITERS, re-read STATUS, sleep on STATUS == 0, subtract.
 * A waiter increments WAITERS before its last read of STATUS and a signaller
 * reads WAITERS after publishing STATUS, so in the single total order of
 * these operations either the waiter sees the status or the signaller sees
 * the waiter: no wake-up is lost, and a signal with no waiter costs no notify.
 * A thread that reads a non-zero STATUS also sees ERROR and TIMESTAMP.
 */
import {
  FENCE_CONTEXT, FENCE_REFCOUNT, FENCE_SEQNO, FENCE_TIMELINE, TL_CONTEXT, TL_NEXT_SEQNO, TL_REFCOUNT, TL_SIZE,
  CTL_ANY_EPOCH, CTL_ANY_WAITERS, EFAULT, EINVAL, FENCE_CLAIM, FENCE_ERROR, FENCE_KIND, FENCE_KIND_MASK,
  FENCE_KIND_PLAIN, FENCE_KIND_STUB, FENCE_SIZE, FENCE_STATUS, FENCE_TIMESTAMP, FENCE_WAITERS, MAX_ERRNO,
  SIGNAL_ALREADY,
} from "./abi";
import { clearFault, fault } from "./bounds";

let syncLo: usize = 0;
let syncHi: usize = 0;
let control: usize = 0;

export function setSyncBounds(lo: usize, hi: usize, controlBlock: usize): void {
  syncLo = lo;
  syncHi = hi;
  control = controlBlock;
}

/** [p, p + bytes) lies inside the sync heap (no wrap-around). */
export function inSyncHeap(p: usize, bytes: usize): bool {
  const end = p + bytes;
  return end >= p && p >= syncLo && end <= syncHi;
}

/** A fence record must be a whole, 64-byte aligned record of the sync heap. */
export function checkFence(f: usize): bool {
  return inSyncHeap(f, FENCE_SIZE) && (f & (FENCE_SIZE - 1)) == 0;
}

/**
 * A new pending plain fence of a timeline in the fence record f (a block
 * the caller took for it): zeroed, the timeline's context and its next
 * seqno (one atomic add hands out each seqno exactly once, in order),
 * refcount 1, and a reference on the timeline. The caller stamps the record
 * live afterwards (src/memory/record.ts). 0, or -EFAULT for records outside
 * the sync heap.
 */
export function fenceInit(f: usize, timeline: usize): i32 {
  if (!checkFence(f) || !inSyncHeap(timeline, TL_SIZE)) return -EFAULT;
  memory.fill(f, 0, FENCE_SIZE);
  store<u32>(f + FENCE_KIND, FENCE_KIND_PLAIN);
  store<u32>(f + FENCE_TIMELINE, <u32>timeline);
  store<u64>(f + FENCE_CONTEXT, load<u64>(timeline + TL_CONTEXT));
  store<u64>(f + FENCE_SEQNO, atomic.add<u64>(timeline + TL_NEXT_SEQNO, 1));
  atomic.add<i32>(timeline + TL_REFCOUNT, 1);
  atomic.store<i32>(f + FENCE_REFCOUNT, 1);
  return 0;
}

/**
 * Signals a leaf fence (plain or stub kinds; containers signal through their
 * children). error: 0, or a negative errno in [-MAX_ERRNO, -1] that
 * overrides an error set before. Returns 0, SIGNAL_ALREADY, or -errno.
 */
export function fenceSignal(f: usize, error: i32, timestampNs: f64): i32 {
  clearFault();
  if (!checkFence(f)) return fault(-1, EFAULT);
  if (error > 0 || error < -MAX_ERRNO) return fault(-1, EINVAL);
  const kind = atomic.load<u32>(f + FENCE_KIND) & FENCE_KIND_MASK;
  if (kind != FENCE_KIND_PLAIN && kind != FENCE_KIND_STUB) return fault(-1, EINVAL);
  if (atomic.cmpxchg<i32>(f + FENCE_CLAIM, 0, 1) != 0) return SIGNAL_ALREADY;
  const err = error != 0 ? error : atomic.load<i32>(f + FENCE_ERROR);
  store<f64>(f + FENCE_TIMESTAMP, timestampNs);
  atomic.store<i32>(f + FENCE_ERROR, err);
  // Publish: the seq-cst store orders ERROR and TIMESTAMP before it.
  atomic.store<i32>(f + FENCE_STATUS, err != 0 ? err : 1);
  if (atomic.load<i32>(f + FENCE_WAITERS) != 0) atomic.notify(f + FENCE_STATUS, -1);
  if (atomic.load<i32>(control + CTL_ANY_WAITERS) != 0) {
    atomic.add<i32>(control + CTL_ANY_EPOCH, 1);
    atomic.notify(control + CTL_ANY_EPOCH, -1);
  }
  return 0;
}

/**
 * Blocks until the fence is signalled or timeoutNs passes (-1: no limit).
 * Returns the status (1 or -errno), 0 on timeout, or -EFAULT. Traps where
 * the thread may not block (a browser's main thread).
 */
export function fenceWait(f: usize, timeoutNs: i64): i32 {
  clearFault();
  if (!checkFence(f)) return fault(-1, EFAULT);
  let status = atomic.load<i32>(f + FENCE_STATUS);
  if (status != 0 || timeoutNs == 0) return status;
  atomic.add<i32>(f, 1, FENCE_WAITERS);
  // Only a signal notifies STATUS, and it publishes STATUS first, so one
  // wait suffices: it ends signalled ("ok", "not-equal") or timed out.
  atomic.wait<i32>(f + FENCE_STATUS, 0, timeoutNs);
  // After the wait, addresses come from the parameter and immediate offsets
  // only, never from a local: V8's baseline compiler (Liftoff, as in Node
  // 20) loses non-parameter locals across memory.atomic.wait32 (they read
  // 0 in a reduced module). With f + FENCE_WAITERS kept in a local, as
  // binaryen had it, WAITERS never went down and the subtraction hit
  // another word.
  atomic.sub<i32>(f, 1, FENCE_WAITERS);
  return atomic.load<i32>(f, FENCE_STATUS);
}

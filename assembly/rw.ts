/*
 * The read/write path's common case in one call (src/dmabuf/rw_fast.ts
 * decides when it applies and prepares the call's fence): a CPU read or
 * write of one arena range against one contiguous range of a coherent,
 * cached buffer, with nothing pending that it must wait for.
 *
 * rw_fast(resv, fence, write, dst, src, n, token, timestampNs), in order:
 *   1. the copy's ranges are checked (inside the DMA range);
 *   2. the buffer's resv lock is taken if it is free (compareExchange
 *      0 -> 1, the Mutex of src/memory/mutex.ts: owner and acquisitions
 *      written by the holder as Mutex.lock does);
 *   3. the slot scan: any pending fence a reader (usage <= WRITE) or a
 *      writer (usage <= READ) must wait for ends the fast path;
 *   4. the reservation: a free slot must exist already (else the full
 *      path's reserveFences grows or compacts the array);
 *   5. the fence is published (resv.ts: usage WRITE for a write, READ for a
 *      read), then the lock is released (as Mutex.unlock: a waiter marked
 *      in the state word is woken);
 *   6. the copy (the AUTO strategy), then the fence is signalled with the
 *      timestamp the caller took (fence.ts's protocol).
 * Steps 1 to 4 change nothing when they end the fast path (the lock's
 * acquisition is not counted either): RW_FAST_FALLBACK, the lock released,
 * and the caller takes the full path with the same fence. Otherwise it returns the fence the publish replaced (the caller
 * drops that reference) or 0. -EFAULT: a record outside the sync heap.
 */
import {
  DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, EFAULT, MUTEX_ACQUISITIONS, MUTEX_OWNER, MUTEX_STATE, RESV_CAPACITY,
  RESV_COUNT, RESV_LOCK, RESV_SLOTS, RW_FAST_FALLBACK, SLOT_FENCE, SLOT_SIZE, SLOT_USAGE, STRATEGY_AUTO,
} from "./abi";
import { inBounds } from "./bounds";
import { checkFence, fenceSignal } from "./fence";
import { checkResv, fenceStatus, resvAddFence } from "./resv";
import { copyOne } from "./sg";

/**
 * Ends the fast path after the lock was taken: the acquisition is not
 * counted (nothing happened under it; the full path counts its own), then
 * the lock is released.
 */
// @ts-ignore: decorator
@inline function fallBack(lock: usize): i32 {
  store<u32>(lock + MUTEX_ACQUISITIONS, load<u32>(lock + MUTEX_ACQUISITIONS) - 1);
  unlock(lock);
  return RW_FAST_FALLBACK;
}

/** Mutex.unlock: the owner cleared, then the release; a contended lock wakes one waiter. */
// @ts-ignore: decorator
@inline function unlock(lock: usize): void {
  store<i32>(lock + MUTEX_OWNER, 0);
  if (atomic.sub<i32>(lock + MUTEX_STATE, 1) != 1) {
    atomic.store<i32>(lock + MUTEX_STATE, 0);
    atomic.notify(lock + MUTEX_STATE, 1);
  }
}

export function rwFast(resv: usize, fence: usize, write: i32, dst: usize, src: usize, n: usize, token: i32, timestampNs: f64): i32 {
  if (!checkResv(resv) || !checkFence(fence)) return -EFAULT;
  if (n == 0 || !inBounds(dst, n) || !inBounds(src, n)) return RW_FAST_FALLBACK;
  const lock = resv + RESV_LOCK;
  // Acquire: a sequentially consistent compareExchange, as Mutex.tryLock.
  if (atomic.cmpxchg<i32>(lock + MUTEX_STATE, 0, 1) != 0) return RW_FAST_FALLBACK;
  store<i32>(lock + MUTEX_OWNER, token);
  store<u32>(lock + MUTEX_ACQUISITIONS, load<u32>(lock + MUTEX_ACQUISITIONS) + 1);
  const waitsFor = write != 0 ? DMA_RESV_USAGE_READ : DMA_RESV_USAGE_WRITE;
  const slots = <usize>load<u32>(resv + RESV_SLOTS);
  const count = load<u32>(resv + RESV_COUNT);
  for (let i: u32 = 0; i < count; i++) {
    const s = slots + <usize>i * SLOT_SIZE;
    if (load<u32>(s + SLOT_USAGE) <= waitsFor && fenceStatus(<usize>load<u32>(s + SLOT_FENCE)) == 0) return fallBack(lock);
  }
  if (slots == 0 || count + 1 > load<u32>(resv + RESV_CAPACITY)) return fallBack(lock);
  const old = resvAddFence(resv, fence, write != 0 ? DMA_RESV_USAGE_WRITE : DMA_RESV_USAGE_READ);
  unlock(lock);
  copyOne(STRATEGY_AUTO, dst, src, n);
  fenceSignal(fence, 0, timestampNs);
  return old;
}

/*
 * dma_resv with the kernel's names, arguments and return conventions
 * (include/linux/dma-resv.h), over the lab's reservation objects.
 *
 * Contract, where the lab's shape shows through:
 *   `struct dma_resv resv; dma_resv_init(&resv);` is
 *       `const resv = new dma_resv(); dma_resv_init(resv);`: init makes the
 *       record, dma_resv_fini drops it. A dma-buf's `resv` is the same kind
 *       of value, one per object (core.ts).
 *   dma_resv_lock(obj, ctx): ctx (a ww_acquire_ctx) must be null: the lab's
 *       lock is a plain mutex, so wound/wait ordering is not modelled.
 *       0, or -EDEADLK when the lock is not had within the mutex's timeout.
 *   Iterators: a cursor (`new dma_resv_iter()`) and generators for the
 *       macros: dma_resv_for_each_fence(cursor, obj, usage) under the lock
 *       (signalled fences included, no references), and, between
 *       dma_resv_iter_begin and dma_resv_iter_end,
 *       dma_resv_for_each_fence_unlocked(cursor) (pending fences only, the
 *       cursor holding a reference on the current one). The unlocked walk
 *       restarts (dma_resv_iter_is_restarted) when cursor.seq is not the
 *       object's generation, which changes when its fence slots are
 *       replaced; a walk changes cursor.seq to force one, as KUnit does.
 *   dma_resv_get_fences(obj, usage, num, fences) and
 *       dma_resv_get_singleton(obj, usage, fence) write through Ptr
 *       arguments ({ value }), as the kernel writes through pointers.
 */
import { DmaBufError, Resv, type Fence, type ResvUsage } from "../index.js";
import { adoptFence, currentLab, EINVAL, intern, intCall, jiffiesLeft, kfence, type Ptr } from "./core.js";
import { dma_fence_get, dma_fence_put } from "./dma_fence.js";

export {
  DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_WRITE, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_BOOKKEEP,
} from "../index.js";
export type { ResvUsage as dma_resv_usage } from "../index.js";

/** struct dma_resv. */
export class dma_resv {
  /** The lab object (a borrowed view); null before init and after fini. */
  obj: Resv | null = null;
}

/** The one dma_resv value for a lab reservation object (a dma-buf's, say). */
export function kresv(resv: Resv): dma_resv {
  return intern(resv.sync, resv.offset, dma_resv, () => {
    const k = new dma_resv();
    k.obj = new Resv(resv.sync, resv.offset, false);
    return k;
  });
}

function objOf(r: dma_resv, fn: string): Resv {
  if (r.obj === null) throw new DmaBufError("EINVAL", fn, "the dma_resv is not initialised (dma_resv_init)");
  return r.obj;
}

export function dma_resv_init(obj: dma_resv): void {
  const resv = Resv.create(currentLab("dma_resv_init").sync);
  obj.obj = new Resv(resv.sync, resv.offset, false); // the reference stays, for fini
  intern(resv.sync, resv.offset, dma_resv, () => obj);
}

export function dma_resv_fini(obj: dma_resv): void {
  const r = objOf(obj, "dma_resv_fini");
  new Resv(r.sync, r.offset, true).put();
  obj.obj = null;
}

// ---- locking ---------------------------------------------------------------------

export function dma_resv_lock(obj: dma_resv, ctx: null): number {
  if (ctx !== null && ctx !== undefined) return -EINVAL;
  return intCall(() => objOf(obj, "dma_resv_lock").lock());
}

export const dma_resv_lock_interruptible = dma_resv_lock;

export function dma_resv_unlock(obj: dma_resv): void {
  objOf(obj, "dma_resv_unlock").unlock();
}

// ---- fences (under the lock) ------------------------------------------------------------

/** Room for num more fences: 0, -EINVAL or -ENOMEM. */
export function dma_resv_reserve_fences(obj: dma_resv, num: number): number {
  return intCall(() => objOf(obj, "dma_resv_reserve_fences").reserveFences(num));
}

/** Cannot fail after a reservation (the lab throws ENOSPC where the kernel BUG()s). */
export function dma_resv_add_fence(obj: dma_resv, fence: Fence, usage: ResvUsage): void {
  objOf(obj, "dma_resv_add_fence").addFence(fence, usage);
}

// ---- iteration -----------------------------------------------------------------------

/** struct dma_resv_iter. */
export class dma_resv_iter {
  obj: dma_resv | null = null;
  usage: ResvUsage = 0;
  /** The current fence (the unlocked walk holds a reference on it). */
  fence: Fence | null = null;
  fence_usage: ResvUsage = 0;
  index = 0;
  /** The object's generation the walk started at. */
  seq = -1;
  is_restarted = false;
  holds = false;
}

export function dma_resv_iter_begin(cursor: dma_resv_iter, obj: dma_resv, usage: ResvUsage): void {
  Object.assign(cursor, { obj, usage, fence: null, index: 0, seq: -1, is_restarted: false, holds: false });
}

/** Drops the reference the unlocked walk holds. */
export function dma_resv_iter_end(cursor: dma_resv_iter): void {
  if (cursor.holds) dma_fence_put(cursor.fence);
  cursor.holds = false;
  cursor.fence = null;
}

export function dma_resv_iter_usage(cursor: dma_resv_iter): ResvUsage {
  return cursor.fence_usage;
}

export function dma_resv_iter_is_restarted(cursor: dma_resv_iter): boolean {
  return cursor.is_restarted;
}

/** The entries with usage <= the cursor's, signalled ones included; borrowed. */
function entries(cursor: dma_resv_iter): { fence: Fence; usage: ResvUsage }[] {
  return [...objOf(cursor.obj!, "dma_resv_iter").iter(cursor.usage)].map(({ fence, usage }) => ({ fence, usage }));
}

function step(cursor: dma_resv_iter, found: { fence: Fence; usage: ResvUsage } | undefined): Fence | null {
  cursor.fence = found === undefined ? null : kfence(found.fence);
  cursor.fence_usage = found?.usage ?? 0;
  return cursor.fence;
}

/** Under the lock: the first entry. */
export function dma_resv_iter_first(cursor: dma_resv_iter): Fence | null {
  cursor.index = 0;
  cursor.is_restarted = true;
  return dma_resv_iter_next(cursor);
}

export function dma_resv_iter_next(cursor: dma_resv_iter): Fence | null {
  const found = entries(cursor)[cursor.index++];
  if (cursor.index > 1) cursor.is_restarted = false;
  return step(cursor, found);
}

/** dma_resv_for_each_fence(cursor, obj, usage, fence), under the lock. */
export function* dma_resv_for_each_fence(cursor: dma_resv_iter, obj: dma_resv, usage: ResvUsage): Generator<Fence> {
  dma_resv_iter_begin(cursor, obj, usage);
  for (let f = dma_resv_iter_first(cursor); f !== null; f = dma_resv_iter_next(cursor)) yield f;
}

/** Without the lock (it is taken for each step): the first pending fence, with a reference held by the cursor. */
export function dma_resv_iter_first_unlocked(cursor: dma_resv_iter): Fence | null {
  cursor.seq = -1;
  return dma_resv_iter_next_unlocked(cursor);
}

export function dma_resv_iter_next_unlocked(cursor: dma_resv_iter): Fence | null {
  const resv = objOf(cursor.obj!, "dma_resv_iter_next_unlocked");
  dma_resv_iter_end(cursor);
  const found = resv.underLock(() => {
    const generation = resv.generation;
    cursor.is_restarted = generation !== cursor.seq;
    if (cursor.is_restarted) {
      cursor.seq = generation;
      cursor.index = 0;
    }
    const all = entries(cursor);
    while (cursor.index < all.length) {
      const e = all[cursor.index++];
      if (!e.fence.isSignaled()) return { ...e, fence: dma_fence_get(kfence(e.fence)) };
    }
    return undefined;
  });
  cursor.holds = found !== undefined;
  return step(cursor, found);
}

/** dma_resv_for_each_fence_unlocked(cursor, fence), between dma_resv_iter_begin and _end. */
export function* dma_resv_for_each_fence_unlocked(cursor: dma_resv_iter): Generator<Fence> {
  for (let f = dma_resv_iter_first_unlocked(cursor); f !== null; f = dma_resv_iter_next_unlocked(cursor)) yield f;
}

// ---- without the lock ------------------------------------------------------------------

/** The pending fences with usage <= usage, each with a reference: *num and *fences; 0 or -errno. */
export function dma_resv_get_fences(obj: dma_resv, usage: ResvUsage, num: Ptr<number>, fences: Ptr<Fence[] | null>): number {
  return intCall(() => {
    const got = objOf(obj, "dma_resv_get_fences").getFences(usage).map(adoptFence);
    num.value = got.length;
    fences.value = got;
  });
}

/** *fence: null, the one pending fence, or a new array of them; with a reference. 0 or -errno. */
export function dma_resv_get_singleton(obj: dma_resv, usage: ResvUsage, fence: Ptr<Fence | null>): number {
  return intCall(() => {
    const got = objOf(obj, "dma_resv_get_singleton").getSingleton(usage);
    fence.value = got === null ? null : adoptFence(got);
  });
}

/** true when no fence with usage <= usage is pending. */
export function dma_resv_test_signaled(obj: dma_resv, usage: ResvUsage): boolean {
  return objOf(obj, "dma_resv_test_signaled").testSignaled(usage);
}

/** Jiffies left (> 0), 0 on timeout, or -errno. */
export function dma_resv_wait_timeout(obj: dma_resv, usage: ResvUsage, _intr: boolean, timeout: number): number {
  if (!(timeout >= 0)) return -EINVAL;
  return intCall(() => jiffiesLeft(objOf(obj, "dma_resv_wait_timeout").wait(usage, timeout)));
}

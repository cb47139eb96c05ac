/*
 * The kernel API's ground: which lab this thread's kernel is, one JavaScript
 * value per kernel object, and the kernel's error conventions.
 *
 * Contract:
 *   use_lab(lab)   the lab whose functions that take no object act on
 *                  (dma_fence_context_alloc, dma_fence_init, dma_resv_init,
 *                  dma_buf_get, ...) in this thread, as the one kernel a
 *                  driver runs in; null forgets it. Functions given an object
 *                  act on that object's lab.
 *   Identity: one kernel object (a fence, reservation object or dma-buf
 *                  record in the arena) is one JavaScript value (===) in this
 *                  thread for as long as anything holds that value: a
 *                  per-thread map from record offset to a WeakRef of the
 *                  value. As in C, where a freed address can come back from
 *                  kmalloc, a record freed and reused (for an object of the
 *                  same kind) is the same value again.
 *   References: kernel values hold no reference of their own; the kernel's
 *                  calls count them (dma_fence_get/put, dma_buf_get/put, a
 *                  function documented to return a reference). A value that
 *                  the lab API returned owned becomes a kernel reference when
 *                  it enters the kernel API (adoptFence).
 *   Errors:        int-returning functions return 0 or -errno; functions that
 *                  return a pointer give null where the kernel gives NULL,
 *                  and ERR_PTR(-errno) where it gives one (IS_ERR, PTR_ERR).
 *                  Misuse that the kernel answers with BUG() or WARN() throws
 *                  the DmaBufError.
 */
import { DmaBufError, errnoNumbers, Fence, type Lab } from "../index.js";

let current: Lab | null = null;

/** Sets the lab this thread's kernel functions act on (null: none). */
export function use_lab(lab: Lab | null): void {
  current = lab;
}

/** The lab set with use_lab(); EINVAL (thrown: a setup mistake, not a kernel error) when none is. */
export function currentLab(fn: string): Lab {
  if (current === null) throw new DmaBufError("EINVAL", fn, "no lab: call use_lab(lab) in this thread first");
  return current;
}

// ---- identity ------------------------------------------------------------------

type Interned = object;

const tables = new WeakMap<object, Map<number, WeakRef<Interned>>>();
let sweepAt = 1024;

/**
 * The one value for the record at `offset` of `owner` (a Sync), made by
 * make() when there is none yet, or when the one there is not of `kind`
 * (the record was freed and reused for another kind of object).
 */
export function intern<T extends Interned>(owner: object, offset: number, kind: abstract new (...a: never[]) => T, make: () => T): T {
  let table = tables.get(owner);
  if (table === undefined) tables.set(owner, (table = new Map()));
  const found = table.get(offset)?.deref();
  if (found !== undefined && found.constructor === kind) return found as T;
  const made = make();
  table.set(offset, new WeakRef(made));
  if (table.size > sweepAt) {
    for (const [k, ref] of table) if (ref.deref() === undefined) table.delete(k);
    sweepAt = Math.max(1024, 2 * table.size);
  }
  return made;
}

/** The kernel value of a fence view (borrowed: no reference moves). */
export function kfence(view: Fence): Fence {
  return intern(view.sync, view.offset, view.constructor as typeof Fence, () => (view.owned ? Fence.view(view.sync, view.offset, false) : view));
}

/**
 * The kernel value of an owned view that the lab API returned: its
 * reference becomes a kernel reference (dma_fence_put drops it) and the view
 * is retired (no finalizer will drop it).
 */
export function adoptFence(view: Fence): Fence {
  if (view.owned) {
    view.owned = false;
    view.sync.untrack(view);
  }
  return kfence(view);
}

// ---- errors ----------------------------------------------------------------------

/** The errno numbers, for `-EINVAL` and the like. */
export const {
  EPERM, ENOENT, EIO, EBADF, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, ENODEV, EINVAL, EMFILE, ENOTTY,
  ENOSPC, ESPIPE, EDEADLK, ENOSYS, EBADFD, EOPNOTSUPP, ETIMEDOUT, ECANCELED,
} = errnoNumbers;

/** ERR_PTR(-errno): an error in a pointer's place. */
export class ErrPtr {
  constructor(readonly errno: number) {}
}

export const ERR_PTR = (err: number): ErrPtr => new ErrPtr(err);
export const IS_ERR = (p: unknown): p is ErrPtr => p instanceof ErrPtr;
export const IS_ERR_OR_NULL = (p: unknown): p is ErrPtr | null | undefined => p === null || p === undefined || p instanceof ErrPtr;
export const PTR_ERR = (p: ErrPtr): number => p.errno;

/** -errno of a DmaBufError (other errors are bugs, and propagate). */
export function negErrno(e: unknown): number {
  if (e instanceof DmaBufError) return -e.errno;
  throw e;
}

/** Runs fn; a DmaBufError becomes its -errno (the int convention). */
export function intCall(fn: () => number | void): number {
  try {
    return fn() ?? 0;
  } catch (e) {
    return negErrno(e);
  }
}

/** Runs fn; a DmaBufError becomes null (the kernel's NULL on failure). */
export function ptrCall<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (e) {
    negErrno(e);
    return null;
  }
}

/** jiffies are milliseconds here: HZ is 1000. MAX_SCHEDULE_TIMEOUT waits without limit. */
export const HZ = 1000;
export const MAX_SCHEDULE_TIMEOUT = Infinity;

/** A wait's answer in the kernel's terms: 0 timed out, else the jiffies left (at least 1). */
export function jiffiesLeft(leftMs: number): number {
  if (leftMs === 0) return 0;
  return leftMs === Infinity ? MAX_SCHEDULE_TIMEOUT : Math.max(1, Math.ceil(leftMs));
}

/** A kernel "pointer to pointer" argument (struct dma_fence **): the callee reads and writes `value`. */
export interface Ptr<T> {
  /** The pointed-to value: read by the callee as input, written as output. */
  value: T;
}

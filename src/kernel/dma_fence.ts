/*
 * dma_fence, dma_fence_array, dma_fence_chain and dma_fence_unwrap with the
 * kernel's names, arguments and return conventions (include/linux/dma-fence*.h),
 * over the lab's fences: a kernel fence is the lab's Fence view of the record
 * (see core.ts for identity and references), so a ported test or driver can
 * hand it to the rest of the lab too.
 *
 * Contract, where the lab's shape shows through:
 *   dma_fence_init(ops, context, seqno) or (ops, lock, context, seqno): a new
 *       fence with one reference; `lock` is ignored (the lab's fences need
 *       none). ops may name the driver and timeline (get_driver_name,
 *       get_timeline_name, asked once with the new fence) and may have a
 *       `release`, which is not called: records go with their last
 *       reference. Behaviour ops (signaled, enable_signaling, wait, ...)
 *       cannot run in other threads, and are refused (EINVAL, thrown).
 *   dma_fence_enable_signaling: nothing to do, every fence signals by itself.
 *   Callbacks: `cb` is any object of the caller's (its dma_fence_cb, often
 *       inside a bigger object); func(fence, cb) runs in this thread, exactly
 *       once, as Fence.addCallback's do: inside dma_fence_signal() of this
 *       thread, or from the event loop when another thread signals.
 *   Timeouts are in jiffies, and a jiffy is a millisecond (HZ 1000).
 *   dma_fence_array_create and dma_fence_chain_init take over the
 *       references of the fences given, as the kernel's do, on success only.
 */
import { DmaBufError, FenceArray, FenceChain, merge, unwrap, type Fence, type FenceNames } from "../index.js";
import { adoptFence, currentLab, EINVAL, ENOENT, intCall, jiffiesLeft, kfence, MAX_SCHEDULE_TIMEOUT, ptrCall, type Ptr } from "./core.js";

export type { Fence as dma_fence } from "../index.js";

/** struct dma_fence_ops as the lab takes it (see the module comment). */
export interface dma_fence_ops {
  /** The driver's name for fences of this ops (default: the timeline's driver name). */
  get_driver_name?: (fence: Fence) => string;
  /** The timeline's name (default: the timeline's own). */
  get_timeline_name?: (fence: Fence) => string;
  /** Called once when the last reference of a fence of this ops is dropped in this thread. */
  release?: (fence: Fence) => void;
}

/** dma_fence_func_t. */
export type dma_fence_func_t = (fence: Fence, cb: object) => void;

const OPS_TAKEN = new Set(["get_driver_name", "get_timeline_name", "release"]);

// ---- life ------------------------------------------------------------------------

/** The first of `num` new fence contexts. */
export function dma_fence_context_alloc(num: number): bigint {
  return currentLab("dma_fence_context_alloc").sync.allocContext(num);
}

export function dma_fence_init(ops: dma_fence_ops | null, ...args: [context: number | bigint, seqno: number | bigint] | [lock: unknown, context: number | bigint, seqno: number | bigint]): Fence {
  const [context, seqno] = args.length === 3 ? [args[1], args[2]] : args;
  const extra = Object.keys(ops ?? {}).filter((k) => !OPS_TAKEN.has(k));
  if (extra.length > 0) {
    throw new DmaBufError("EINVAL", "dma_fence_init", `ops ${extra.join(", ")} cannot run in every thread of the lab; only the names (and release) are taken`);
  }
  const sync = currentLab("dma_fence_init").sync;
  const named = ops?.get_driver_name !== undefined || ops?.get_timeline_name !== undefined;
  const names = (f: Fence): FenceNames => {
    const k = kfence(f);
    return { driver: ops?.get_driver_name?.(k) ?? "dmabuf-lab", timeline: ops?.get_timeline_name?.(k) ?? "unbound" };
  };
  return adoptFence(sync.initFence(BigInt(context), BigInt(seqno), named ? names : undefined));
}

/** One more reference; null stays null. */
export function dma_fence_get<T extends Fence | null | undefined>(fence: T): T {
  if (fence) fence.sync.ref(fence.offset);
  return fence;
}

/** Drops a reference; null is fine. */
export function dma_fence_put(fence: Fence | null | undefined): void {
  if (fence) fence.sync.unref(fence.offset);
}

export function dma_fence_enable_signaling(_fence: Fence): void {}

// ---- signalling and state ------------------------------------------------------------

/** 0, or -EINVAL when it was signalled already. */
export function dma_fence_signal(fence: Fence): number {
  return intCall(() => fence.signal());
}

/** true when it was signalled already, else signals it. */
export function dma_fence_check_and_signal(fence: Fence): boolean {
  return fence.checkAndSignal();
}

export function dma_fence_is_signaled(fence: Fence): boolean {
  return fence.isSignaled();
}

export const dma_fence_test_signaled_flag = dma_fence_is_signaled;

/** 0 pending, 1 signalled, -errno signalled with an error. */
export function dma_fence_get_status(fence: Fence): number {
  return fence.status;
}

export function dma_fence_set_error(fence: Fence, error: number): void {
  fence.setError(error);
}

export function dma_fence_set_deadline(fence: Fence, deadlineNs: number): void {
  fence.setDeadline(deadlineNs);
}

export function dma_fence_driver_name(fence: Fence): string {
  return fence.names.driver;
}

export function dma_fence_timeline_name(fence: Fence): string {
  return fence.names.timeline;
}

// ---- callbacks ----------------------------------------------------------------------

const callbacks = new WeakMap<object, { fence: Fence; run: () => void }>();

/** 0, or -ENOENT (func never runs) when the fence is signalled already. */
export function dma_fence_add_callback(fence: Fence, cb: object, func: dma_fence_func_t): number {
  const run = (): void => {
    callbacks.delete(cb);
    func(fence, cb);
  };
  try {
    fence.addCallback(run);
  } catch (e) {
    if (e instanceof DmaBufError && e.code === "ENOENT") return -ENOENT;
    throw e;
  }
  callbacks.set(cb, { fence, run });
  return 0;
}

/** true when cb was still queued (and will not run), false when it ran or was never added. */
export function dma_fence_remove_callback(fence: Fence, cb: object): boolean {
  const entry = callbacks.get(cb);
  if (entry === undefined || entry.fence !== fence || !fence.removeCallback(entry.run)) return false;
  callbacks.delete(cb);
  return true;
}

// ---- waiting -------------------------------------------------------------------------

/** Jiffies left (> 0; 1 for a 0 timeout on a signalled fence), 0 on timeout, or -errno. */
export function dma_fence_wait_timeout(fence: Fence, _intr: boolean, timeout: number): number {
  if (!(timeout >= 0)) return -EINVAL;
  return intCall(() => jiffiesLeft(fence.wait(timeout)));
}

/** 0 once signalled, or -errno. */
export function dma_fence_wait(fence: Fence, intr: boolean): number {
  const r = dma_fence_wait_timeout(fence, intr, MAX_SCHEDULE_TIMEOUT);
  return r < 0 ? r : 0;
}

// ---- stubs ---------------------------------------------------------------------------

/** The always-signalled stub, with a reference. */
export function dma_fence_get_stub(): Fence {
  return adoptFence(currentLab("dma_fence_get_stub").sync.stub());
}

/** A new signalled stub with the given timestamp (ns on the lab clock), or null. */
export function dma_fence_allocate_private_stub(timestampNs: number): Fence | null {
  return ptrCall(() => adoptFence(currentLab("dma_fence_allocate_private_stub").sync.privateStub(timestampNs)));
}

// ---- arrays --------------------------------------------------------------------------

/** A new array over the fences (their references taken over), or null. */
export function dma_fence_array_create(
  num_fences: number, fences: Fence[], context: number | bigint, seqno: number | bigint, signal_on_any: boolean,
): FenceArray | null {
  if (num_fences !== fences.length || num_fences === 0) return null;
  return ptrCall(() => {
    const array = FenceArray.create(fences[0].sync, fences, BigInt(context), BigInt(seqno), signal_on_any);
    for (const f of fences) dma_fence_put(f);
    return adoptFence(array) as FenceArray;
  });
}

export function dma_fence_is_array(fence: Fence): boolean {
  return fence instanceof FenceArray;
}

export function to_dma_fence_array(fence: Fence | null): FenceArray | null {
  return fence instanceof FenceArray ? fence : null;
}

// ---- chains --------------------------------------------------------------------------

/** A node to init, or null. */
export function dma_fence_chain_alloc(): FenceChain | null {
  return ptrCall(() => adoptFence(FenceChain.alloc(currentLab("dma_fence_chain_alloc").sync)) as FenceChain);
}

/** Frees a node that was never initialised (any node: drops the reference). */
export function dma_fence_chain_free(chain: FenceChain): void {
  dma_fence_put(chain);
}

/** Links `chain` after `prev` (may be null) holding `fence`; takes over both references. */
export function dma_fence_chain_init(chain: FenceChain, prev: Fence | null, fence: Fence, seqno: number | bigint): void {
  chain.init(prev, fence, BigInt(seqno));
  dma_fence_put(prev);
  dma_fence_put(fence);
}

export function dma_fence_is_chain(fence: Fence): boolean {
  return fence instanceof FenceChain;
}

export function to_dma_fence_chain(fence: Fence | null): FenceChain | null {
  return fence instanceof FenceChain ? fence : null;
}

/** The fence a chain node holds, or the fence itself when it is no chain (borrowed). */
export function dma_fence_chain_contained(fence: Fence): Fence {
  return fence instanceof FenceChain ? kfence(fence.fence) : fence;
}

/** The previous pending node, with a reference, or null; drops the reference on `fence`. */
export function dma_fence_chain_walk(fence: Fence): Fence | null {
  const prev = fence instanceof FenceChain ? fence.walk() : null;
  const next = prev === null ? null : dma_fence_get(kfence(prev));
  dma_fence_put(fence);
  return next;
}

/**
 * dma_fence_chain_for_each(iter, head): head, then each pending earlier
 * node; each value yielded holds a reference that the next step drops (one
 * that a `break` leaves is the caller's to put).
 */
export function* dma_fence_chain_for_each(head: Fence): Generator<Fence> {
  for (let iter = dma_fence_get(head) as Fence | null; iter !== null; iter = dma_fence_chain_walk(iter)) yield iter;
}

/**
 * *pfence becomes the node to wait on for point `seqno` (with a reference,
 * the old one dropped), or null when everything up to it is signalled.
 * 0, or -EINVAL for a point after the chain's head or a fence that is no chain.
 */
export function dma_fence_chain_find_seqno(pfence: Ptr<Fence | null>, seqno: number | bigint): number {
  if (BigInt(seqno) === 0n) return 0;
  const from = pfence.value;
  if (!(from instanceof FenceChain)) return -EINVAL;
  return intCall(() => {
    const found = FenceChain.findSeqno(from, BigInt(seqno));
    pfence.value = found === null ? null : dma_fence_get(kfence(found));
    dma_fence_put(from);
  });
}

// ---- unwrap --------------------------------------------------------------------------

/** struct dma_fence_unwrap: the cursor of dma_fence_unwrap_for_each. */
export class dma_fence_unwrap {
  leaves: Fence[] = [];
  index = 0;
}

/** The first leaf of head (borrowed), or null. */
export function dma_fence_unwrap_first(head: Fence, cursor: dma_fence_unwrap): Fence | null {
  cursor.leaves = unwrap(head).map(kfence);
  cursor.index = 0;
  return dma_fence_unwrap_next(cursor);
}

export function dma_fence_unwrap_next(cursor: dma_fence_unwrap): Fence | null {
  return cursor.leaves[cursor.index++] ?? null;
}

/** dma_fence_unwrap_for_each(fence, cursor, head): every leaf head stands for, borrowed. */
export function* dma_fence_unwrap_for_each(head: Fence, cursor = new dma_fence_unwrap()): Generator<Fence> {
  for (let f = dma_fence_unwrap_first(head, cursor); f !== null; f = dma_fence_unwrap_next(cursor)) yield f;
}

/** The merge of the fences (flattened, deduplicated, signalled ones dropped), with a reference, or null. */
export function dma_fence_unwrap_merge(...fences: Fence[]): Fence | null {
  return ptrCall(() => adoptFence(merge(fences[0]?.sync ?? currentLab("dma_fence_unwrap_merge").sync, fences)));
}

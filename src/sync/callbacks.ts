/*
 * Fence callbacks of one thread. A callback added in a thread runs in that
 * thread, exactly once, at the first of: this thread's signal() of the fence,
 * this thread's wait()/waitAsync() seeing it signalled, or the event loop
 * noticing the signal (one Atomics.waitAsync watch per fence with callbacks).
 * Each watch holds a reference on its fence until its waitAsync resolves
 * (the fence signals), so the record cannot be recycled under a waiter. Callbacks run in the order they were added; one
 * that throws does not stop the others (its error is rethrown from a
 * microtask). batch() defers every dispatch until its function returns, so
 * that code signalling under a lock runs no callback while holding it.
 *
 * Containers (arrays, chains) are evaluated, never signalled (fence_array.ts),
 * yet their callbacks run when they become signalled, as the kernel's do from
 * dma_fence_array_cb_func / dma_fence_chain_cb: a container's watch sleeps on
 * its leaves (Fence.untilSignaled: each child's status word, or the any-epoch
 * for signal-on-any), and every dispatch in this thread (a signal of a leaf
 * here, a wait that saw one) re-evaluates this thread's container watches, so
 * a thread that signals the last child runs the container's callbacks inside
 * that signal(), as the kernel does.
 */
import { FENCE_KIND_ARRAY, FENCE_KIND_CHAIN } from "../engine/abi.js";

/**
 * What the registry needs of a fence view. A Fence (fence.ts) is one; the
 * registry names this shape rather than the class so that it sits below
 * fence.ts (records.ts holds one registry per thread).
 */
export interface WatchedFence {
  readonly offset: number;
  readonly kind: number;
  /** An owned view of the same fence, of the same class. */
  get(): WatchedFence;
  put(): void;
  isSignaled(): boolean;
  untilSignaled(deadline: number): Promise<boolean>;
}

/** A callback as the registry keeps it: run with the owned view add() took (fence.get(), so a Fence when a Fence was added). */
export type WatchCallback = (fence: WatchedFence) => void;

interface Watch {
  fence: WatchedFence;
  callbacks: WatchCallback[];
}

/** How often a watch whose callbacks were all removed notices and lets go. */
const REARM_MS = 1000;

export class CallbackRegistry {
  private readonly watches = new Map<number, Watch>();
  /** The watches of containers, re-evaluated at every dispatch. */
  private readonly containers = new Set<Watch>();
  private depth = 0;
  private deferred: WatchedFence[] = [];

  add(fence: WatchedFence, cb: WatchCallback): void {
    let watch = this.watches.get(fence.offset);
    if (watch === undefined) {
      const held = fence.get();
      watch = { fence: held, callbacks: [] };
      this.watches.set(fence.offset, watch);
      if (held.kind === FENCE_KIND_ARRAY || held.kind === FENCE_KIND_CHAIN) this.containers.add(watch);
      this.arm(watch);
    }
    watch.callbacks.push(cb);
  }

  remove(fence: WatchedFence, cb: WatchCallback): boolean {
    const watch = this.watches.get(fence.offset);
    if (watch === undefined || fence.isSignaled()) return false;
    const i = watch.callbacks.indexOf(cb);
    if (i < 0) return false;
    watch.callbacks.splice(i, 1);
    if (watch.callbacks.length === 0) this.drop(fence.offset, watch);
    return true;
  }

  /**
   * Waits for the fence in slices of REARM_MS: on the signal it dispatches
   * and lets the reference go; after a slice it goes on only while the
   * watch still has callbacks, so a watch whose callbacks were all removed
   * releases its fence within REARM_MS even if the fence never signals.
   */
  private arm(watch: Watch): void {
    const held = watch.fence;
    void held.untilSignaled(performance.now() + REARM_MS).then((signaled) => {
      if (signaled) this.dispatch(held);
      if (!signaled && this.watches.get(held.offset) === watch) this.arm(watch);
      else held.put();
    });
  }

  /** Runs fn; dispatches requested meanwhile run after it returns. */
  batch<T>(fn: () => T): T {
    this.depth++;
    try {
      return fn();
    } finally {
      if (--this.depth === 0) {
        const fences = this.deferred;
        this.deferred = [];
        for (const f of fences) this.dispatch(f);
      }
    }
  }

  /** Runs this thread's callbacks of a signalled fence (no-op otherwise). */
  dispatch(fence: WatchedFence): void {
    if (this.depth > 0) {
      this.deferred.push(fence);
      return;
    }
    const watch = this.watches.get(fence.offset);
    if (watch !== undefined && fence.isSignaled()) this.run(watch);
    // A leaf signalled here may complete containers this thread watches.
    for (const c of this.containers) if (c.fence.isSignaled()) this.run(c);
  }

  private run(watch: Watch): void {
    this.drop(watch.fence.offset, watch);
    for (const cb of watch.callbacks) {
      try {
        cb(watch.fence);
      } catch (e) {
        queueMicrotask(() => { throw e; });
      }
    }
  }

  get size(): number {
    return this.watches.size;
  }

  private drop(offset: number, watch: Watch): void {
    if (this.watches.get(offset) === watch) this.watches.delete(offset);
    this.containers.delete(watch);
  }
}

/*
 * Fence callbacks of one thread. A callback added in a thread runs in that
 * thread, exactly once, at the first of: this thread's signal() of the fence,
 * this thread's wait()/waitAsync() seeing it signalled, or the event loop
 * noticing the signal (one Atomics.waitAsync watch per fence with callbacks).
 * Each watch holds a reference on its fence until its waitAsync resolves
 * (the fence signals), so the record cannot be recycled under a waiter. Callbacks run in the order they were added; one
 * that throws does not stop the others (its error is rethrown from a
 * microtask).
 */
import type { Fence, FenceCallback } from "./fence.js";

interface Watch {
  fence: Fence;
  callbacks: FenceCallback[];
}

export class CallbackRegistry {
  private readonly watches = new Map<number, Watch>();

  add(fence: Fence, cb: FenceCallback): void {
    let watch = this.watches.get(fence.offset);
    if (watch === undefined) {
      const held = fence.get();
      watch = { fence: held, callbacks: [] };
      this.watches.set(fence.offset, watch);
      void held.waitAsync().then(() => {
        this.dispatch(held);
        held.put();
      });
    }
    watch.callbacks.push(cb);
  }

  remove(fence: Fence, cb: FenceCallback): boolean {
    const watch = this.watches.get(fence.offset);
    if (watch === undefined || fence.isSignaled()) return false;
    const i = watch.callbacks.indexOf(cb);
    if (i < 0) return false;
    watch.callbacks.splice(i, 1);
    if (watch.callbacks.length === 0) this.drop(fence.offset, watch);
    return true;
  }

  /** Runs this thread's callbacks of a signalled fence (no-op otherwise). */
  dispatch(fence: Fence): void {
    const watch = this.watches.get(fence.offset);
    if (watch === undefined || !fence.isSignaled()) return;
    this.drop(fence.offset, watch);
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
  }
}

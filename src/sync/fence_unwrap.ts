/*
 * dma_fence_unwrap and dma_fence_unwrap_merge.
 *
 * unwrap(f): the leaf fences f stands for, borrowed: a plain fence itself; an
 * array all its children (signalled ones included); a chain its own fence
 * (unwrapped) and then each earlier node's that is still pending.
 *
 * merge(fences) (__dma_fence_unwrap_merge, the sort-and-dedup version):
 * unwrap every input; drop signalled leaves, remembering the latest of their
 * timestamps; none left gives a new private stub signalled at that time; one
 * gives that leaf itself; otherwise sort by context, newest seqno first,
 * keep one leaf per context (the latest: seqnos compare as 32-bit with
 * wrap-around), and make a new array (new context, seqno 1, signal on all).
 * The inputs are not consumed; the result is owned.
 */
import { Fence, isLater } from "./fence.js";
import { FenceArray } from "./fence_array.js";
import type { SyncRecords } from "./records.js";

export function unwrap(fence: Fence): Fence[] {
  return fence.leaves();
}

export function merge(sync: SyncRecords, fences: Fence[]): Fence {
  let timestamp = 0;
  const pending: Fence[] = [];
  for (const leaf of fences.flatMap(unwrap)) {
    if (leaf.isSignaled()) timestamp = Math.max(timestamp, leaf.timestampNs);
    else pending.push(leaf);
  }
  if (pending.length === 0) return Fence.privateStub(sync, timestamp);
  if (pending.length === 1) return pending[0].get();
  pending.sort((a, b) => (a.context !== b.context ? (a.context < b.context ? -1 : 1) : isLater(a, b) ? -1 : isLater(b, a) ? 1 : 0));
  const kept = pending.filter((f, i) => i === 0 || f.context !== pending[i - 1].context);
  if (kept.length === 1) return kept[0].get();
  return FenceArray.create(sync, kept, sync.allocContext(), 1n, false);
}

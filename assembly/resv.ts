/*
 * The reservation object's fence list, under its lock: dma_resv_add_fence
 * and the context index. The one implementation: src/sync/resv.ts calls it
 * for every add, and the read/write fast path (rw.ts) publishes through it.
 *
 * Contract: the caller holds the object's lock (RESV_LOCK) and has reserved
 * a slot (reserveFences, in TypeScript); the record words are RESV_* of
 * abi.ts. Plain loads and stores are enough for the list: the lock's
 * acquiring compareExchange and releasing subtraction are sequentially
 * consistent, so the next holder sees every write made under the lock.
 *
 * The context index: after the capacity slots, capacity x BUCKETS_PER_SLOT
 * u32 buckets, each 0 (empty) or a slot index + 1, open addressing with
 * linear probing from the hash of the slot's fence context. Deletion shifts
 * the rest of a probe run back (no tombstones). Every entry of the list is
 * in the index, so the entries of one context are found without a scan.
 */
import {
  BUCKET_SIZE, BUCKETS_PER_SLOT, DMA_RESV_USAGE_WRITE, EFAULT, ENOSPC, FENCE_CONTEXT, FENCE_REFCOUNT, FENCE_SEQNO,
  FENCE_STATUS, RESV_CAPACITY, RESV_COUNT, RESV_CURSOR, RESV_SIZE, RESV_SLOTS, SLOT_FENCE, SLOT_SIZE, SLOT_USAGE,
} from "./abi";
import { checkFence, inSyncHeap } from "./fence";

/** A 32-bit hash of a fence record's u64 context. */
// @ts-ignore: decorator
@inline function contextHash(f: usize): u32 {
  return (load<u32>(f + FENCE_CONTEXT) ^ (load<u32>(f + FENCE_CONTEXT + 4) * 0x85ebca6b)) * 0x9e3779b1;
}

// @ts-ignore: decorator
@inline function bucketAt(slots: usize, capacity: u32, j: u32): usize {
  return slots + <usize>capacity * SLOT_SIZE + <usize>j * BUCKET_SIZE;
}

// @ts-ignore: decorator
@inline function slotAt(slots: usize, i: u32): usize {
  return slots + <usize>i * SLOT_SIZE;
}

// @ts-ignore: decorator
@inline export function fenceStatus(f: usize): i32 {
  return atomic.load<i32>(f + FENCE_STATUS);
}

/** Both fences of one context. */
// @ts-ignore: decorator
@inline function sameContext(a: usize, b: usize): bool {
  return load<u64>(a + FENCE_CONTEXT) == load<u64>(b + FENCE_CONTEXT);
}

/** dma_fence_is_later for one context: 32-bit seqnos with wrap-around. */
// @ts-ignore: decorator
@inline function isLater(a: usize, b: usize): bool {
  return <i32>(load<u32>(a + FENCE_SEQNO) - load<u32>(b + FENCE_SEQNO)) > 0;
}

/**
 * A failed writer stays (src/sync/resv.ts, retained()): signalled with an
 * error at usage KERNEL or WRITE.
 */
// @ts-ignore: decorator
@inline function retained(f: usize, usage: u32): bool {
  return usage <= DMA_RESV_USAGE_WRITE && fenceStatus(f) < 0;
}

/** A reservation record, and its slot array with the index, inside the sync heap. */
export function checkResv(resv: usize): bool {
  if (!inSyncHeap(resv, RESV_SIZE) || (resv & (RESV_SIZE - 1)) != 0) return false;
  const slots = load<u32>(resv + RESV_SLOTS);
  const capacity = load<u32>(resv + RESV_CAPACITY);
  if (slots == 0) return capacity == 0 && load<u32>(resv + RESV_COUNT) == 0;
  return (capacity & (capacity - 1)) == 0 && load<u32>(resv + RESV_COUNT) <= capacity &&
    inSyncHeap(slots, <usize>capacity * (SLOT_SIZE + BUCKETS_PER_SLOT * BUCKET_SIZE));
}

/** Enters slot i (holding fence f) into the index. */
function index(slots: usize, capacity: u32, i: u32, f: usize): void {
  const mask = capacity * <u32>BUCKETS_PER_SLOT - 1;
  let j = contextHash(f) & mask;
  while (load<u32>(bucketAt(slots, capacity, j)) != 0) j = (j + 1) & mask;
  store<u32>(bucketAt(slots, capacity, j), i + 1);
}

/** Takes slot i (holding fence f) out of the index: its bucket, then the probe run shifted back over the hole. */
function unindex(slots: usize, capacity: u32, i: u32, f: usize): void {
  const mask = capacity * <u32>BUCKETS_PER_SLOT - 1;
  let hole = contextHash(f) & mask;
  while (load<u32>(bucketAt(slots, capacity, hole)) != i + 1) hole = (hole + 1) & mask;
  for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
    const b = load<u32>(bucketAt(slots, capacity, j));
    if (b == 0) break;
    const k = contextHash(load<u32>(slotAt(slots, b - 1) + SLOT_FENCE)) & mask;
    // The entry at j stays when its home lies cyclically in (hole, j].
    if (hole <= j ? hole < k && k <= j : hole < k || k <= j) continue;
    store<u32>(bucketAt(slots, capacity, hole), b);
    hole = j;
  }
  store<u32>(bucketAt(slots, capacity, hole), 0);
}

/** Rebuilds the index of the object's slot array (after reserveFences replaced or compacted it). */
export function resvReindex(resv: usize): i32 {
  if (!checkResv(resv)) return -EFAULT;
  const slots = <usize>load<u32>(resv + RESV_SLOTS);
  if (slots == 0) return 0;
  const capacity = load<u32>(resv + RESV_CAPACITY);
  const count = load<u32>(resv + RESV_COUNT);
  memory.fill(bucketAt(slots, capacity, 0), 0, <usize>capacity * BUCKETS_PER_SLOT * BUCKET_SIZE);
  for (let i: u32 = 0; i < count; i++) {
    const f = <usize>load<u32>(slotAt(slots, i) + SLOT_FENCE);
    if (!checkFence(f)) return -EFAULT;
    index(slots, capacity, i, f);
  }
  return 0;
}

/**
 * dma_resv_add_fence of the fence record f at usage (the caller checked
 * both): takes a reference on f. The first entry of f's context whose usage
 * is not stronger and whose seqno is not later is replaced in place; else
 * the entry at the cursor when it is signalled (a retained failed writer
 * only by a writer); else f is appended into a reserved slot. Returns the
 * replaced fence, whose reference the caller drops, or 0; -ENOSPC (nothing
 * changed) when no slot is left; -EFAULT for records outside the sync heap.
 */
export function resvAddFence(resv: usize, f: usize, usage: u32): i32 {
  if (!checkResv(resv) || !checkFence(f)) return -EFAULT;
  const slots = <usize>load<u32>(resv + RESV_SLOTS);
  const capacity = load<u32>(resv + RESV_CAPACITY);
  const count = load<u32>(resv + RESV_COUNT);
  if (slots == 0) return -ENOSPC;
  // Probe the index: the first eligible entry of f's context, and the empty
  // bucket that ends the probe (where an append is entered).
  const mask = capacity * <u32>BUCKETS_PER_SLOT - 1;
  let first: u32 = u32.MAX_VALUE;
  let j = contextHash(f) & mask;
  for (let b = load<u32>(bucketAt(slots, capacity, j)); b != 0; j = (j + 1) & mask, b = load<u32>(bucketAt(slots, capacity, j))) {
    const i = b - 1;
    const s = slotAt(slots, i);
    const old = <usize>load<u32>(s + SLOT_FENCE);
    if (i < first && sameContext(old, f) && load<u32>(s + SLOT_USAGE) >= usage && (old == f || isLater(f, old))) first = i;
  }
  if (first != u32.MAX_VALUE) {
    // Same context: the index entry stays valid.
    const s = slotAt(slots, first);
    const old = load<u32>(s + SLOT_FENCE);
    atomic.add<i32>(f + FENCE_REFCOUNT, 1);
    store<u32>(s + SLOT_FENCE, <u32>f);
    store<u32>(s + SLOT_USAGE, usage);
    return <i32>old;
  }
  // No entry of its context: the entry at the cursor is replaced when it is
  // signalled (the cursor walks the list, one entry per add).
  const cursor = load<u32>(resv + RESV_CURSOR);
  const at = cursor < count ? cursor : 0;
  const next = at + 1 < count ? at + 1 : 0;
  if (count > 0) {
    const s = slotAt(slots, at);
    const old = <usize>load<u32>(s + SLOT_FENCE);
    if (fenceStatus(old) != 0 && (!retained(old, load<u32>(s + SLOT_USAGE)) || usage <= DMA_RESV_USAGE_WRITE)) {
      store<u32>(resv + RESV_CURSOR, next);
      atomic.add<i32>(f + FENCE_REFCOUNT, 1);
      unindex(slots, capacity, at, old);
      store<u32>(s + SLOT_FENCE, <u32>f);
      store<u32>(s + SLOT_USAGE, usage);
      index(slots, capacity, at, f);
      return <i32>old;
    }
  }
  if (count >= capacity) return -ENOSPC;
  store<u32>(resv + RESV_CURSOR, next);
  atomic.add<i32>(f + FENCE_REFCOUNT, 1);
  const s = slotAt(slots, count);
  store<u32>(s + SLOT_FENCE, <u32>f);
  store<u32>(s + SLOT_USAGE, usage);
  store<u32>(bucketAt(slots, capacity, j), count + 1);
  store<u32>(resv + RESV_COUNT, count + 1);
  return 0;
}

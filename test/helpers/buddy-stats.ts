/*
 * Buddy allocator statistics once everything is freed. expectPristine(s,
 * pristine) checks that the region whose stats are `s` has nothing
 * allocated any more, against `pristine`, its stats before anything was:
 * every byte free, in the same free blocks, no fragmentation, and as many
 * frees as allocations since.
 */
import { expect } from "vitest";
import type { BuddyStats } from "../../src/index.js";

export function expectPristine(s: BuddyStats, pristine: BuddyStats): void {
  expect(s.freeBytes).toBe(s.totalBytes);
  expect(s.freeBlocks).toEqual(pristine.freeBlocks);
  expect(s.largestFreeBytes).toBe(pristine.largestFreeBytes);
  expect(s.fragmentation).toBe(0);
  // Not all zero in a region that is not a power of two: its smaller root
  // blocks cannot serve the largest orders.
  expect(s.unusable).toEqual(pristine.unusable);
  expect(s.allocs - pristine.allocs).toBe(s.frees - pristine.frees);
}

/*
 * The control-plane protocol of a lab thread (workers/lab-thread.ts), called
 * over comlink. Only numbers (arena offsets) and plain data cross; the bytes
 * stay in the shared arena.
 */
import type { BuddyStats } from "../memory/buddy.js";
import type { StrategyName } from "../engine/strategy.js";
import type { LabHandle } from "../lab.js";

export interface LabThreadData {
  handle: LabHandle;
  name: string;
}

export interface LabThreadApi {
  /** A number naming the worker's thread (threadToken()) and its name, once its engine is instantiated. */
  hello(): { threadId: number; name: string };
  copy(dst: number, src: number, len: number, strategy?: StrategyName): void;
  fill(dst: number, value: number, len: number): void;
  checksumRange(offset: number, len: number, seed?: number): number;
  /** Copies count descriptors {dst, src, len} given as a flat array, in one engine call. */
  sgCopy(descriptors: number[], strategy?: StrategyName): void;
  alloc(bytes: number): number;
  free(offset: number): void;
  allocPages(order: number): number;
  freePages(offset: number, order: number): void;
  stats(): { pages: BuddyStats; user: BuddyStats };
}

/*
 * A timeline: a fence context with names, in the arena, so that fences on it
 * can be created and named from any thread. Plain fences of a timeline take
 * increasing seqnos (nextSeqno) or explicit ones; sw_sync timelines
 * (sw_sync.ts) add a value and a list of pending points on the same record.
 *
 * Record (TL_*, 128 bytes in the sync heap):
 *   TL_REFCOUNT  i32: the timeline's own references plus one per fence on it
 *   TL_KIND      u32: TIMELINE_GENERIC or TIMELINE_SW_SYNC
 *   TL_VALUE     u32: sw_sync: the timeline's value
 *   TL_PENDING   u32: sw_sync: the first pending point (fences linked through
 *                FENCE_AUX, ascending seqno), 0 when none
 *   TL_OPEN      i32: sw_sync: references held by timeline users (not fences)
 *   TL_LOCK      a Mutex (32 bytes): guards VALUE, PENDING (sw_sync)
 *   TL_CONTEXT   u64
 *   TL_NEXT_SEQNO u64, taken by Atomics.add (no lock)
 *   TL_DRIVER    32 bytes: driver name, UTF-8, NUL-padded
 *   TL_NAME      32 bytes: timeline name
 */
import { RecordType } from "../memory/record.js";
import { DmaBufError } from "../errno.js";
import { Mutex } from "../memory/mutex.js";
import type { Sync } from "./sync.js";
import { TL_CONTEXT, TL_NEXT_SEQNO, TL_REFCOUNT, TL_SIZE } from "../engine/abi.js";

// The words a new fence takes (context, next seqno, refcount) are the
// engine's ABI (fence_init in assembly/fence.ts).
export { TL_CONTEXT, TL_NEXT_SEQNO, TL_REFCOUNT, TL_SIZE };

export const TL_KIND = 4;
export const TL_VALUE = 8;
export const TL_PENDING = 12;
export const TL_OPEN = 16;
export const TL_LOCK = 24;
export const TL_DRIVER = 72;
export const TL_NAME = 104;
export const TL_NAME_BYTES = 32;

export const TIMELINE_GENERIC = 1;
export const TIMELINE_SW_SYNC = 2;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function writeName(u8: Uint8Array, at: number, name: string, what: string): void {
  const bytes = encoder.encode(name);
  if (bytes.length > TL_NAME_BYTES - 1) {
    throw new DmaBufError("EINVAL", "timeline_create", `${what} '${name}' is longer than ${TL_NAME_BYTES - 1} bytes`);
  }
  u8.fill(0, at, at + TL_NAME_BYTES);
  u8.set(bytes, at);
}

export function readName(u8: Uint8Array, at: number): string {
  const raw = u8.slice(at, at + TL_NAME_BYTES);
  const end = raw.indexOf(0);
  return decoder.decode(end < 0 ? raw : raw.subarray(0, end));
}

export interface TimelineOptions {
  driver?: string;
  name?: string;
}

export class Timeline {
  readonly lock: Mutex;

  /** A view of the timeline record at `offset` (no reference taken). */
  constructor(readonly sync: Sync, readonly offset: number) {
    this.lock = new Mutex(sync.arena.buffer, offset + TL_LOCK);
  }

  /** A new timeline with its own context; the caller holds one reference. */
  static create(sync: Sync, options: TimelineOptions = {}, kind = TIMELINE_GENERIC): Timeline {
    const driver = options.driver ?? "dmabuf-lab";
    const name = options.name ?? "timeline";
    const offset = sync.allocRecord(RecordType.timeline, TL_SIZE, "timeline_create");
    try {
      writeName(sync.u8, offset + TL_DRIVER, driver, "driver name");
      writeName(sync.u8, offset + TL_NAME, name, "timeline name");
    } catch (e) {
      sync.freeRecord(offset, RecordType.timeline);
      throw e;
    }
    const t = new Timeline(sync, offset);
    t.lock.init();
    sync.i32[(offset + TL_REFCOUNT) >>> 2] = 1;
    sync.u32[(offset + TL_KIND) >>> 2] = kind;
    sync.u64[(offset + TL_CONTEXT) >>> 3] = sync.allocContext();
    sync.u64[(offset + TL_NEXT_SEQNO) >>> 3] = 1n;
    return t;
  }

  get context(): bigint {
    return this.sync.u64[(this.offset + TL_CONTEXT) >>> 3];
  }

  get kind(): number {
    return this.sync.u32[(this.offset + TL_KIND) >>> 2];
  }

  get driverName(): string {
    return readName(this.sync.u8, this.offset + TL_DRIVER);
  }

  get name(): string {
    return readName(this.sync.u8, this.offset + TL_NAME);
  }

  /** A new pending fence on this timeline: the next seqno, or the one given. */
  createFence(seqno?: bigint, tracked = true): import("./fence.js").Fence {
    return this.sync.createFence(this, seqno, tracked);
  }

  ref(): void {
    Atomics.add(this.sync.i32, (this.offset + TL_REFCOUNT) >>> 2, 1);
  }

  /** Drops a reference; the record goes with the last one. */
  unref(): void {
    Timeline.unrefAt(this.sync, this.offset);
  }

  /** unref() without a view, for the fence-free path. */
  static unrefAt(sync: Sync, offset: number): void {
    if (Atomics.sub(sync.i32, (offset + TL_REFCOUNT) >>> 2, 1) === 1) sync.freeRecord(offset, RecordType.timeline);
  }
}

/*
 * A timeline: a fence context with names, in the arena, so that fences on it
 * can be created and named from any thread. Plain fences of a timeline take
 * increasing seqnos (nextSeqno) or explicit ones; sw_sync timelines
 * (sw_sync.ts) add a value and a list of pending points on the same record.
 * The record (TL_*) and its references are records.ts's; a Timeline is a
 * view of it that makes fences.
 */
import { readName } from "../memory/record.js";
import { Mutex } from "../memory/mutex.js";
import { Fence } from "./fence.js";
import {
  TIMELINE_GENERIC, TL_CONTEXT, TL_DRIVER, TL_KIND, TL_LOCK, TL_NAME, type SyncRecords,
} from "./records.js";

export interface TimelineOptions {
  /** The driver name its fences report (sync_file info's driver_name; default "dmabuf-lab"; at most 31 bytes). */
  driver?: string;
  /** The timeline's name (sync_file info's obj_name; default "timeline"; at most 31 bytes). */
  name?: string;
}

export class Timeline {
  readonly lock: Mutex;

  /** A view of the timeline record at `offset` (no reference taken). */
  constructor(readonly sync: SyncRecords, readonly offset: number) {
    this.lock = new Mutex(sync.arena.buffer, offset + TL_LOCK);
  }

  /** A new timeline with its own context; the caller holds one reference. */
  static create(sync: SyncRecords, options: TimelineOptions = {}, kind = TIMELINE_GENERIC): Timeline {
    return new Timeline(sync, sync.allocTimeline(options.driver ?? "dmabuf-lab", options.name ?? "timeline", kind));
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

  /**
   * A new pending fence on this timeline (owned; see Fence for `tracked`):
   * the next seqno, or the one given.
   */
  createFence(seqno?: bigint, tracked = true): Fence {
    return new Fence(this.sync, this.sync.allocTimelineFence(this.offset, seqno), true, tracked);
  }

  ref(): void {
    this.sync.refTimeline(this.offset);
  }

  /** Drops a reference; the record goes with the last one. */
  unref(): void {
    this.sync.unrefTimeline(this.offset);
  }
}

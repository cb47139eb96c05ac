/*
 * sw_sync: the kernel's debugging timeline, shared in the arena so that any
 * thread can create points on it and advance it.
 *
 *   createFence(value)  a sync_file whose fence signals when the timeline
 *                       reaches value: already signalled when it has; the
 *                       same fence again for a value that is still pending
 *   inc(n)              advances the value and signals, in ascending order,
 *                       every point it reached (32-bit values, wrap-safe:
 *                       a point is reached when (int)(value - point) >= 0)
 *   close()             drops one user reference (dup() adds one, e.g. for
 *                       another thread); the last signals every pending
 *                       point with ENOENT
 *   getDeadline(f)      SW_SYNC_GET_DEADLINE's answer for point f: the
 *                       earliest deadline set on it (ns on the lab clock),
 *                       ENOENT when none was, EINVAL when f is not an
 *                       sw_sync point (of any sw_sync timeline, as the
 *                       kernel's dma_fence_to_sync_pt checks only the ops)
 * Fences are named driver "sw_sync", timeline = the timeline's name (the
 * kernel uses the opening process's name; the name argument of
 * SW_SYNC_IOC_CREATE_FENCE is ignored there and here).
 *
 * The timeline record (timeline.ts) holds VALUE, the PENDING list (points
 * linked through FENCE_AUX, ascending, each holding one reference) and OPEN,
 * all under its lock; points are signalled under the lock, so concurrent
 * inc() calls still signal in order, and this thread's callbacks run after
 * the lock is released (a callback may use the timeline).
 */
import { DmaBufError, hex } from "../errno.js";
import { describe } from "../args.js";
import { FENCE_AUX, FENCE_KIND_PLAIN, FENCE_SEQNO, FENCE_TIMELINE } from "../engine/abi.js";
import { Fence } from "./fence.js";
import { SyncFile } from "./sync_file.js";
import { receiveFlight, sendFlight, type ShareToken } from "./flight.js";
import { TIMELINE_SW_SYNC, TL_OPEN, TL_PENDING, TL_REFCOUNT, TL_VALUE, type SyncRecords, type HasSync } from "./records.js";
import { Timeline } from "./timeline.js";
import { RecordType, getRecord } from "../memory/record.js";

const ENOENT = -2;
const INT_MAX = 0x7fffffff;

/** (int)(a - b) > 0: a is after b on a 32-bit wrapping timeline. */
const after = (a: number, b: number): boolean => ((a - b) | 0) > 0;

export class SwSyncTimeline {
  private readonly timeline: Timeline;
  private open = true;

  private constructor(readonly sync: SyncRecords, offset: number) {
    this.timeline = new Timeline(sync, offset);
  }

  /** Opens a new timeline (SW_SYNC open of /sys/kernel/debug/sync/sw_sync). */
  static create(sync: SyncRecords, name = "dmabuf-lab"): SwSyncTimeline {
    const t = Timeline.create(sync, { driver: "sw_sync", name }, TIMELINE_SW_SYNC);
    sync.i32[(t.offset + TL_OPEN) >>> 2] = 1;
    return new SwSyncTimeline(sync, t.offset);
  }

  /**
   * Opens another reference to the timeline at `offset` (dup, or another
   * thread's; `generation` when a token carries one). EINVAL when no live
   * sw_sync timeline (of that generation) starts there; EBADF when its last
   * user reference was closed. Nothing is touched when it fails.
   */
  static dup(sync: SyncRecords, offset: number, generation?: number): SwSyncTimeline {
    const t = () => new Timeline(sync, offset);
    getRecord(sync.arena, offset, RecordType.timeline, TL_REFCOUNT, "sw_sync", "EINVAL", generation, () => t().unref());
    const timeline = t();
    try {
      if (timeline.kind !== TIMELINE_SW_SYNC) throw new DmaBufError("EINVAL", "sw_sync", `the timeline at ${hex(offset)} is not an sw_sync timeline`);
      timeline.lock.with(() => {
        if (sync.i32[(offset + TL_OPEN) >>> 2] === 0) throw new DmaBufError("EBADF", "sw_sync", "the timeline is closed");
        sync.i32[(offset + TL_OPEN) >>> 2]++;
      });
    } catch (e) {
      timeline.unref();
      throw e;
    }
    return new SwSyncTimeline(sync, offset);
  }

  /** A token for another thread: SwSyncTimeline.import (or lab.import) there; it holds an open reference until then. */
  share(): ShareToken<"sw_sync"> {
    this.requireOpen("share");
    return sendFlight(this.sync, "sw_sync", this.offset, () => { SwSyncTimeline.dup(this.sync, this.offset); });
  }

  /** This thread's reference to a shared timeline: it adopts the token's (EINVAL/EBADF for a bad or spent token). */
  static import(lab: HasSync, token: ShareToken<"sw_sync">): SwSyncTimeline {
    return receiveFlight(lab.sync, token, "sw_sync", "sw_sync_import", (t) => SwSyncTimeline.adopt(lab.sync, t.offset));
  }

  /** A view standing for an open reference already counted (a share() token's); close() drops it. */
  static adopt(sync: SyncRecords, offset: number): SwSyncTimeline {
    return new SwSyncTimeline(sync, offset);
  }

  /** The generation of the timeline's record (what a token carries). */
  get generation(): number {
    return this.sync.arena.records.check(this.offset, RecordType.timeline, "sw_sync");
  }

  get offset(): number {
    return this.timeline.offset;
  }

  get context(): bigint {
    return this.timeline.context;
  }

  get name(): string {
    return this.timeline.name;
  }

  get value(): number {
    return this.sync.u32[(this.offset + TL_VALUE) >>> 2];
  }

  /** SW_SYNC_IOC_CREATE_FENCE. */
  createFence(value: number, _name = ""): SyncFile {
    this.requireOpen("SW_SYNC_IOC_CREATE_FENCE");
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new DmaBufError("EINVAL", "SW_SYNC_IOC_CREATE_FENCE", `value ${describe(value)} is not a u32`);
    }
    const { sync } = this;
    const fence = this.timeline.lock.with(() => {
      if (!after(value, this.value)) {
        const f = this.timeline.createFence(BigInt(value));
        f.signal();
        return f;
      }
      // Find the pending point with this value, or where a new one goes.
      let prev = 0;
      let p = sync.u32[(this.offset + TL_PENDING) >>> 2];
      while (p !== 0) {
        const seqno = Number(sync.u64[(p + FENCE_SEQNO) >>> 3] & 0xffffffffn);
        if (seqno === value) return Fence.view(sync, p, false).get();
        if (after(seqno, value)) break;
        prev = p;
        p = sync.u32[(p + FENCE_AUX) >>> 2];
      }
      const f = this.timeline.createFence(BigInt(value));
      sync.ref(f.offset); // the pending list's reference
      sync.u32[(f.offset + FENCE_AUX) >>> 2] = p;
      sync.u32[(prev === 0 ? this.offset + TL_PENDING : prev + FENCE_AUX) >>> 2] = f.offset;
      return f;
    });
    try {
      return new SyncFile(sync, fence);
    } finally {
      fence.put();
    }
  }

  /** SW_SYNC_IOC_INC: advances by n and signals every point reached, in order. */
  inc(n: number): void {
    this.requireOpen("SW_SYNC_IOC_INC");
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
      throw new DmaBufError("EINVAL", "SW_SYNC_IOC_INC", `increment ${n} is not a u32`);
    }
    for (let left = n; ; left -= INT_MAX) {
      this.advance(Math.min(left, INT_MAX), 0);
      if (left <= INT_MAX) break;
    }
  }

  /** Drops this reference; the last one signals every pending point with ENOENT. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    const last = this.timeline.lock.with(() => --this.sync.i32[(this.offset + TL_OPEN) >>> 2] === 0);
    if (last) this.advance(0, ENOENT);
    this.timeline.unref();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Under the lock: value += inc; signal reached points (all, with `error`). */
  private advance(inc: number, error: number): void {
    const { sync } = this;
    // Callbacks of the points signalled here run after the lock is released.
    sync.callbacks.batch(() => this.timeline.lock.with(() => {
      const value = (this.value + inc) >>> 0;
      sync.u32[(this.offset + TL_VALUE) >>> 2] = value;
      let p = sync.u32[(this.offset + TL_PENDING) >>> 2];
      while (p !== 0) {
        const seqno = Number(sync.u64[(p + FENCE_SEQNO) >>> 3] & 0xffffffffn);
        if (error === 0 && after(seqno, value)) break;
        const next = sync.u32[(p + FENCE_AUX) >>> 2];
        sync.u32[(this.offset + TL_PENDING) >>> 2] = next;
        const f = Fence.view(sync, p, false);
        f.signal(error);
        sync.unref(p);
        p = next;
      }
    }));
  }

  /** sw_sync_ioctl_get_deadline's rule for one fence (see the module comment). */
  static getDeadline(fence: Fence): number {
    const timeline = fence.sync.u32[(fence.offset + FENCE_TIMELINE) >>> 2];
    if (fence.kind !== FENCE_KIND_PLAIN || timeline === 0 || new Timeline(fence.sync, timeline).kind !== TIMELINE_SW_SYNC) {
      throw new DmaBufError("EINVAL", "SW_SYNC_GET_DEADLINE", `fence ${fence.describe()} is not an sw_sync point`);
    }
    const ns = fence.deadlineNs;
    if (ns === 0) throw new DmaBufError("ENOENT", "SW_SYNC_GET_DEADLINE", `no deadline was set on fence ${fence.describe()}`);
    return ns;
  }

  private requireOpen(syscall: string): void {
    if (!this.open) throw new DmaBufError("EBADF", syscall, "this sw_sync timeline reference is closed");
  }
}

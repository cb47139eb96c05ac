/*
 * sync_file: a file-like object holding one fence (possibly a container),
 * the unit user space passes around. It holds a reference on its fence.
 *
 *   merge    SYNC_IOC_MERGE: flags or pad non-zero EINVAL; the other side
 *            not an open sync_file of the same lab ENOENT; the fence is
 *            unwrap-merge of both; the name is at most 31 bytes (longer is
 *            cut, as the kernel does).
 *   info     SYNC_IOC_FILE_INFO, two calls: numFences 0 answers the count and
 *            the fence's status; then numFences at least the count gives one
 *            entry per unwrapped fence (obj_name = timeline name, driver_name,
 *            status, timestamp_ns, 0 while pending) and an overall status
 *            that is the first entry status <= 0, else 1. Too small: EINVAL.
 *            flags or pad non-zero: EINVAL.
 *   name     the merge name, else "<driver>-<timeline><context>-<seqno>".
 *   poll     POLLIN once signalled, an error included.
 *   setDeadline  SYNC_IOC_SET_DEADLINE: pad non-zero EINVAL.
 *   close    every later use of the file gives EBADF, before any argument
 *            is checked (as an ioctl on a closed fd fails in fdget).
 */
import { DmaBufError } from "../errno.js";
import { Fence } from "./fence.js";
import { merge, unwrap } from "./fence_unwrap.js";
import { receiveFlight, sendFlight, type ShareToken } from "./flight.js";
import type { SyncRecords, HasSync } from "./records.js";

export const POLLIN = 0x1;
const NAME_BYTES = 32;

export interface SyncFenceInfo {
  objName: string;
  driverName: string;
  status: number;
  flags: number;
  timestampNs: number;
}

export interface SyncFileInfo {
  name: string;
  status: number;
  flags: number;
  numFences: number;
  /** Present when the call asked for entries (numFences > 0). */
  fences?: SyncFenceInfo[];
}

function cut(name: string): string {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length < NAME_BYTES) return name;
  return new TextDecoder().decode(bytes.subarray(0, NAME_BYTES - 1)).replace(/\uFFFD$/, "");
}

/** struct sync_merge_data: SyncFile.merge's arguments. */
export interface SyncMergeArgs {
  /** The new sync_file's name (at most 31 bytes). */
  name: string;
  /** Must be 0 (EINVAL otherwise), as the kernel requires. */
  flags?: number;
  /** Must be 0. */
  pad?: number;
}

/** struct sync_file_info: SyncFile.info's arguments. */
export interface SyncFileInfoArgs {
  /** 0: only count the fences (numFences out); otherwise room for that many fence infos (EINVAL when fewer than the file has). */
  numFences?: number;
  /** Must be 0. */
  flags?: number;
  /** Must be 0. */
  pad?: number;
}

/** struct sync_set_deadline: SyncFile.setDeadline's arguments. */
export interface SyncSetDeadlineArgs {
  /** The deadline, ns on the lab's monotonic clock (a hint to the signaller: dma_fence_set_deadline). */
  deadlineNs: number;
  /** Must be 0. */
  pad?: number;
}

export class SyncFile {
  private held: Fence | null;
  private readonly userName: string;

  /** sync_file_create: takes a new reference on the fence. */
  constructor(readonly sync: SyncRecords, fence: Fence, name = "") {
    this.held = fence.get();
    this.userName = cut(name);
  }

  /** The fence, borrowed (valid until close()). */
  get fence(): Fence {
    if (this.held === null) throw new DmaBufError("EBADF", "sync_file", "this sync_file is closed");
    return this.held;
  }

  get name(): string {
    if (this.userName !== "") return this.userName;
    const f = this.fence;
    const { driver, timeline } = f.names;
    return cut(`${driver}-${timeline}${f.context}-${f.seqno}`);
  }

  static merge(a: SyncFile, b: unknown, args: SyncMergeArgs): SyncFile {
    const first = a.fence;
    if ((args.flags ?? 0) !== 0 || (args.pad ?? 0) !== 0) {
      throw new DmaBufError("EINVAL", "SYNC_IOC_MERGE", `flags ${args.flags ?? 0} and pad ${args.pad ?? 0} must be 0`);
    }
    if (!(b instanceof SyncFile) || b.held === null) {
      throw new DmaBufError("ENOENT", "SYNC_IOC_MERGE", "the second file is not an open sync_file");
    }
    if (b.sync.arena.memory !== a.sync.arena.memory) {
      throw new DmaBufError("ENOENT", "SYNC_IOC_MERGE", "the second file belongs to another lab");
    }
    const merged = merge(a.sync, [first, b.fence]);
    try {
      return new SyncFile(a.sync, merged, args.name);
    } finally {
      merged.put();
    }
  }

  info(args: SyncFileInfoArgs = {}): SyncFileInfo {
    const { numFences = 0, flags = 0, pad = 0 } = args;
    const fence = this.fence;
    if (flags !== 0 || pad !== 0) {
      throw new DmaBufError("EINVAL", "SYNC_IOC_FILE_INFO", `flags ${flags} and pad ${pad} must be 0`);
    }
    const leaves = unwrap(fence);
    if (numFences === 0) {
      return { name: this.name, status: fence.status, flags: 0, numFences: leaves.length };
    }
    if (numFences < leaves.length) {
      throw new DmaBufError("EINVAL", "SYNC_IOC_FILE_INFO",
        `num_fences ${numFences} is smaller than the ${leaves.length} fences of this file`);
    }
    let status = 1;
    const fences = leaves.map((f) => {
      const s = f.status;
      if (status > 0) status = s;
      const { driver, timeline } = f.names;
      return { objName: timeline, driverName: driver, status: s, flags: 0, timestampNs: f.timestampNs };
    });
    return { name: this.name, status, flags: 0, numFences: leaves.length, fences };
  }

  setDeadline(args: SyncSetDeadlineArgs): void {
    const fence = this.fence;
    if ((args.pad ?? 0) !== 0) throw new DmaBufError("EINVAL", "SYNC_IOC_SET_DEADLINE", `pad ${args.pad} must be 0`);
    fence.setDeadline(args.deadlineNs);
  }

  poll(): number {
    return this.fence.isSignaled() ? POLLIN : 0;
  }

  /** Blocks like poll(POLLIN) with a timeout: true once signalled. */
  wait(timeoutMs = Infinity): boolean {
    return this.fence.wait(timeoutMs) > 0;
  }

  async waitAsync(timeoutMs = Infinity): Promise<boolean> {
    return (await this.fence.waitAsync(timeoutMs)) > 0;
  }

  /** A token for another thread: SyncFile.import (or lab.import) there; holds a reference on the fence until then. */
  share(): ShareToken<"sync_file"> {
    const { fence } = this;
    return sendFlight(this.sync, "sync_file", fence.offset, () => this.sync.ref(fence.offset), { name: this.userName });
  }

  /** This thread's sync_file for a shared one (EINVAL/EBADF for a bad or spent token). */
  static import(lab: HasSync, token: ShareToken<"sync_file">): SyncFile {
    return receiveFlight(lab.sync, token, "sync_file", "sync_file_import", (t) => {
      using fence = Fence.view(lab.sync, t.offset, true);
      return new SyncFile(lab.sync, fence, typeof t.name === "string" ? t.name : "");
    });
  }

  get closed(): boolean {
    return this.held === null;
  }

  close(): void {
    this.held?.put();
    this.held = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/*
 * Sync: the synchronization objects of one lab, seen from one thread: the
 * records (allocation, references, contexts, waits: records.ts, which it
 * extends) and the factories of the objects on them. The top of the sync
 * floor: it imports the object modules, none of them imports it (each
 * takes the SyncRecords below it), so there is no circle through here.
 * Every factory is the class's own static (Timeline.create, Resv.create,
 * FenceArray.create, ...); these methods are the lab's names for them.
 */
import { Fence, type FenceNames } from "./fence.js";
import { FenceArray } from "./fence_array.js";
import { FenceChain } from "./fence_chain.js";
import { merge } from "./fence_unwrap.js";
import { SyncRecords } from "./records.js";
import { Resv } from "./resv.js";
import { SwSyncTimeline } from "./sw_sync.js";
import { SyncFile } from "./sync_file.js";
import { Timeline, type TimelineOptions } from "./timeline.js";

export class Sync extends SyncRecords {
  // ---- objects -------------------------------------------------------------

  /** A fence context with names; fences come from timeline.createFence(). */
  timeline(options?: TimelineOptions): Timeline {
    return Timeline.create(this, options);
  }

  /** A new sw_sync timeline (SW_SYNC open). */
  swSync(name?: string): SwSyncTimeline {
    return SwSyncTimeline.create(this, name);
  }

  /** A new reservation object. */
  resv(): Resv {
    return Resv.create(this);
  }

  /** dma_fence_array_create with a new context (seqno 1). */
  array(fences: Fence[], signalOnAny = false): FenceArray {
    return FenceArray.create(this, fences, this.allocContext(), 1n, signalOnAny);
  }

  /** dma_fence_chain_init. */
  chain(prev: Fence | null, fence: Fence, seqno: bigint): FenceChain {
    return FenceChain.create(this, prev, fence, seqno);
  }

  /** dma_fence_unwrap_merge. */
  merge(...fences: Fence[]): Fence {
    return merge(this, fences);
  }

  /** sync_file_create. */
  syncFile(fence: Fence, name?: string): SyncFile {
    return new SyncFile(this, fence, name);
  }

  // ---- fences --------------------------------------------------------------

  /** dma_fence_init (Fence.init): a new pending plain fence on a context of the caller's choice. */
  initFence(context: bigint, seqno: bigint, names?: (fence: Fence) => FenceNames): Fence {
    return Fence.init(this, context, seqno, names);
  }

  /** dma_fence_get_stub: the lab's always-signalled stub (context 0, seqno 0). */
  stub(): Fence {
    return Fence.stub(this);
  }

  /** dma_fence_allocate_private_stub: a new stub, signalled at `timestampNs`. */
  privateStub(timestampNs: number): Fence {
    return Fence.privateStub(this, timestampNs);
  }

  /** A view of the fence at `offset`, of the class its kind needs (Fence.view). */
  view(offset: number, owned: boolean): Fence {
    return Fence.view(this, offset, owned);
  }

  /**
   * An owned view from an offset (and, from a token, the generation) that
   * another thread sent; takes a reference (Fence.at). EINVAL, nothing
   * touched, unless a live fence record (of that generation) starts there.
   */
  fenceAt(offset: number, generation?: number): Fence {
    return Fence.at(this, offset, generation);
  }
}

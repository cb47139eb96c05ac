/*
 * Sync: the synchronization objects of one lab, seen from one thread.
 *
 * Records (fences, timelines, reservation objects, container blocks) live in
 * the sync heap, a buddy allocator of 64-byte granules over the arena's sync
 * region; any thread builds views of them from offsets. Sync.init() runs once
 * when the lab is created (context counter, clock epoch, the stub fence);
 * every thread then has its own Sync over the same memory: its own
 * callbacks, its own engine instance for signalling.
 *
 * References: every fence record has a refcount (FENCE_REFCOUNT). unref()
 * releases iteratively, so that dropping the head of a long chain does not
 * recurse: a released container drops its children's references in turn.
 * Owned views that are garbage collected without put() drop their
 * reference then (a FinalizationRegistry in the thread that made them).
 * Freed fence records go to the fence-record cache (fence_cache.ts) when it
 * has room, and new fences take records from it first.
 */
import { DmaBufError, hex } from "../errno.js";
import {
  CTL_ANY_EPOCH, CTL_ANY_WAITERS, FENCE_AUX, FENCE_CONTEXT, FENCE_KIND, FENCE_KIND_ARRAY, FENCE_KIND_CHAIN,
  FENCE_KIND_MASK, FENCE_KIND_PLAIN, FENCE_KIND_STUB, FENCE_REFCOUNT, FENCE_SEQNO, FENCE_SIZE, FENCE_TIMELINE,
} from "../engine/abi.js";
import type { Engine } from "../engine/engine.js";
import type { Arena } from "../memory/arena.js";
import { canBlock, waitUntil, waitUntilAsync } from "../memory/futex.js";
import { CTL_CONTEXT_NEXT, CTL_STUB_FENCE } from "../memory/layout.js";
import { RecordType, getRecord, type RecordTypeId } from "../memory/record.js";
import { CallbackRegistry } from "./callbacks.js";
import { LabClock } from "./clock.js";
import { Fence, traceFence, type FenceNames } from "./fence.js";
import { FenceArray, arrayChildren } from "./fence_array.js";
import { FenceChain, chainLinks } from "./fence_chain.js";
import { merge } from "./fence_unwrap.js";
import { Resv } from "./resv.js";
import { SwSyncTimeline } from "./sw_sync.js";
import { SyncFile } from "./sync_file.js";
import { FenceCache } from "./fence_cache.js";
import { Timeline, readName, TL_DRIVER, TL_NAME, type TimelineOptions } from "./timeline.js";
import { Tracer } from "../trace/recorder.js";
import { Sanitizer } from "../sanitize/agent.js";
import { CAT_FENCE, T_FENCE_CREATE } from "../trace/events.js";

/** The stub's refcount: never reaches zero, put() on it is harmless. */
const IMMORTAL = 0x40000000;

const builtinNames: Record<number, FenceNames> = {
  [FENCE_KIND_STUB]: { driver: "stub", timeline: "stub" },
  [FENCE_KIND_ARRAY]: { driver: "dma_fence_array", timeline: "unbound" },
  [FENCE_KIND_CHAIN]: { driver: "dma_fence_chain", timeline: "unbound" },
  [FENCE_KIND_PLAIN]: { driver: "dmabuf-lab", timeline: "unbound" },
};

export class Sync {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly u64: BigUint64Array;
  readonly f64: Float64Array;
  readonly clock: LabClock;
  readonly callbacks = new CallbackRegistry();
  /** Freed fence records parked for reuse (fence_cache.ts). */
  readonly fenceCache: FenceCache;
  /** This thread's trace recorder (src/trace/recorder.ts). */
  readonly trace: Tracer;
  /** This thread's sanitizer agent (src/sanitize/agent.ts): its hooks do nothing unless the lab sanitizes. */
  readonly san: Sanitizer;
  private readonly finalizer = new FinalizationRegistry<number>((offset) => this.unref(offset));

  constructor(readonly arena: Arena, readonly engine: Engine) {
    this.u8 = arena.u8;
    this.u32 = arena.u32;
    this.i32 = arena.i32;
    this.u64 = arena.u64;
    this.f64 = arena.f64;
    this.clock = new LabClock(arena);
    this.fenceCache = new FenceCache(arena);
    this.san = new Sanitizer(arena, () => this.clock.nowNs());
    this.trace = new Tracer(arena, () => this.clock.nowNs(), (name, context) => this.san.setOwner(name, context));
  }

  /** Once per lab, before it is shared: contexts, the clock, the stub fence. */
  static init(arena: Arena, engine: Engine): void {
    LabClock.init(arena);
    new BigUint64Array(arena.buffer)[arena.control(CTL_CONTEXT_NEXT) >>> 3] = 1n;
    const sync = new Sync(arena, engine);
    const stub = sync.allocFenceRecord(FENCE_KIND_STUB, 0, 0n, 0n, "stub");
    sync.i32[(stub + FENCE_REFCOUNT) >>> 2] = IMMORTAL;
    engine.wasm.fence_signal(stub, 0, sync.clock.nowNs());
    arena.u32[arena.control(CTL_STUB_FENCE) >>> 2] = stub;
  }

  // ---- contexts and records ------------------------------------------------

  /** dma_fence_context_alloc: the first of n new, unique contexts (never 0). */
  allocContext(n = 1): bigint {
    const u64 = this.u64;
    const i = this.arena.control(CTL_CONTEXT_NEXT) >>> 3;
    return Atomics.add(u64, i, BigInt(n));
  }

  /**
   * A zeroed record of `type` of at least `bytes` from the sync heap,
   * stamped live (record.ts). When the heap has no block, the fence-record
   * cache is drained into it and the allocation tried once more before ENOMEM.
   * `zero: false` leaves the block's old bytes, for a record whose owner
   * writes every word before it reads one (a resv slot array: the slots
   * below its count, and its index, which the engine clears).
   */
  allocRecord(type: RecordTypeId, bytes: number, syscall: string, zero = true): number {
    const offset = this.allocBlock(bytes, syscall, zero);
    this.arena.records.stamp(offset, type);
    return offset;
  }

  private allocBlock(bytes: number, syscall: string, zero = true): number {
    const heap = this.arena.syncHeap;
    const order = heap.orderFor(bytes);
    if (order > heap.maxOrder) {
      throw new DmaBufError("ENOMEM", syscall, `a sync record of ${bytes} bytes exceeds the sync heap's largest block`);
    }
    let offset: number;
    try {
      offset = heap.alloc(order, syscall);
    } catch (e) {
      if (!(e instanceof DmaBufError && e.code === "ENOMEM") || this.fenceCache.bytes() === 0) throw e;
      this.fenceCache.drain();
      offset = heap.alloc(order, syscall);
    }
    if (zero) this.u8.fill(0, offset, offset + heap.granuleBytes * 2 ** order);
    return offset;
  }

  /** Ends the record's life (its generation changes: tokens naming it are refused) and frees its block. */
  freeRecord(offset: number, type: RecordTypeId): void {
    this.arena.records.retire(offset, type, "sync_free");
    this.arena.syncHeap.free(offset, undefined, "sync_free");
  }

  /** A fence record with refcount 1; the caller initialises kind-specific words. */
  allocFenceRecord(kind: number, timeline: number, context: bigint, seqno: bigint, syscall: string): number {
    const f = this.fenceBlock(syscall);
    this.i32.fill(0, f >>> 2, (f + FENCE_SIZE) >>> 2);
    this.u32[(f + FENCE_KIND) >>> 2] = kind;
    this.u32[(f + FENCE_TIMELINE) >>> 2] = timeline;
    this.u64[(f + FENCE_CONTEXT) >>> 3] = context;
    this.u64[(f + FENCE_SEQNO) >>> 3] = seqno;
    Atomics.store(this.i32, (f + FENCE_REFCOUNT) >>> 2, 1);
    // Born after its words are written: fenceAt() accepts it from here on.
    this.arena.records.stamp(f, RecordType.fence);
    return f;
  }

  /** A block for a fence record: from the fence-record cache, else the heap (not zeroed). */
  private fenceBlock(syscall: string): number {
    const taken = this.fenceCache.take();
    const f = taken !== 0 ? taken : this.allocBlock(FENCE_SIZE, syscall);
    // A reused block's clock (src/sanitize) must not order the new fence's waiters.
    if (this.san.on) this.san.resetRecord(f);
    return f;
  }

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

  /**
   * A new pending plain fence on a timeline (owned; see Fence for
   * `tracked`): with the seqno given, or the timeline's next one, which the
   * engine takes while it writes the record (fence_init: no BigInt here).
   */
  createFence(timeline: Timeline, seqno: bigint | undefined, tracked = true): Fence {
    let f: number;
    if (seqno === undefined) {
      f = this.fenceBlock("dma_fence_init");
      const rc = this.engine.wasm.fence_init(f, timeline.offset);
      if (rc !== 0) {
        this.fenceCache.give(f);
        throw new DmaBufError(DmaBufError.codeOf(rc), "dma_fence_init", `timeline ${hex(timeline.offset)} or fence ${hex(f)} is not in the sync heap`);
      }
      // Born after its words are written: fenceAt() accepts it from here on.
      this.arena.records.stamp(f, RecordType.fence);
    } else {
      timeline.ref();
      try {
        f = this.allocFenceRecord(FENCE_KIND_PLAIN, timeline.offset, timeline.context, seqno, "dma_fence_init");
      } catch (e) {
        timeline.unref();
        throw e;
      }
    }
    if (this.trace.on(CAT_FENCE)) traceFence(this, T_FENCE_CREATE, f, this.trace.now(), 0, 0, 0);
    return new Fence(this, f, true, tracked);
  }

  /**
   * dma_fence_init: a new pending plain fence on a context of the caller's
   * choice (owned). `names`, when given, is asked once for the fence's driver
   * and timeline names (a borrowed view of the new fence), which go into a
   * timeline record the fence holds; without it the fence has the builtin
   * names. Names too long: EINVAL, nothing kept.
   */
  initFence(context: bigint, seqno: bigint, names?: (fence: Fence) => FenceNames): Fence {
    const f = this.allocFenceRecord(FENCE_KIND_PLAIN, 0, context, seqno, "dma_fence_init");
    if (names !== undefined) {
      try {
        const { driver, timeline } = names(this.view(f, false));
        // The creator's reference on the timeline passes to the fence.
        this.u32[(f + FENCE_TIMELINE) >>> 2] = Timeline.create(this, { driver, name: timeline }).offset;
      } catch (e) {
        this.unref(f);
        throw e;
      }
    }
    return this.view(f, true);
  }

  /** dma_fence_get_stub: the lab's always-signalled stub (context 0, seqno 0). */
  stub(): Fence {
    const offset = this.u32[this.arena.control(CTL_STUB_FENCE) >>> 2];
    this.ref(offset);
    return this.view(offset, true);
  }

  /** dma_fence_allocate_private_stub: a new stub, signalled at `timestampNs`. */
  privateStub(timestampNs: number): Fence {
    const f = this.allocFenceRecord(FENCE_KIND_STUB, 0, 0n, 0n, "dma_fence_allocate_private_stub");
    this.engine.wasm.fence_signal(f, 0, timestampNs);
    return this.view(f, true);
  }

  /** A view of the fence at `offset`, of the class its kind needs. */
  view(offset: number, owned: boolean): Fence {
    switch (this.u32[(offset + FENCE_KIND) >>> 2] & FENCE_KIND_MASK) {
      case FENCE_KIND_ARRAY: return new FenceArray(this, offset, owned);
      case FENCE_KIND_CHAIN: return new FenceChain(this, offset, owned);
      case FENCE_KIND_PLAIN:
      case FENCE_KIND_STUB: return new Fence(this, offset, owned);
      default: throw new DmaBufError("EINVAL", "dma_fence", `no fence at ${hex(offset)}`);
    }
  }

  /**
   * An owned view from an offset (and, from a token, the generation) that
   * another thread sent; takes a reference. EINVAL, nothing touched, unless
   * a live fence record (of that generation) starts there.
   */
  fenceAt(offset: number, generation?: number): Fence {
    const records = this.arena.records;
    records.check(offset, RecordType.fence, "dma_fence", "EINVAL", generation);
    // The kind (and with it the view's class) is checked before a reference is taken.
    this.view(offset, false);
    getRecord(this.arena, offset, RecordType.fence, FENCE_REFCOUNT, "dma_fence", "EINVAL", generation, () => this.unref(offset));
    return this.view(offset, true);
  }

  /** The generation of the live fence at `offset` (what a token carries). */
  generationOf(offset: number): number {
    return this.arena.records.check(offset, RecordType.fence, "dma_fence");
  }

  namesOf(timeline: number, kind: number): FenceNames {
    if (timeline === 0) return builtinNames[kind];
    return { driver: readName(this.u8, timeline + TL_DRIVER), timeline: readName(this.u8, timeline + TL_NAME) };
  }

  // ---- references ----------------------------------------------------------

  ref(offset: number): void {
    Atomics.add(this.i32, (offset + FENCE_REFCOUNT) >>> 2, 1);
  }

  /** Drops a reference; frees what reaches zero, iteratively. */
  unref(offset: number): void {
    // The common case, a reference that is not the last, allocates nothing.
    if (Atomics.sub(this.i32, (offset + FENCE_REFCOUNT) >>> 2, 1) !== 1) return;
    let f: number | undefined = offset;
    const dead: number[] = []; // records whose last reference went, still to free
    for (; f !== undefined; f = dead.pop()) {
      const kind = this.u32[(f + FENCE_KIND) >>> 2] & FENCE_KIND_MASK;
      const aux = this.u32[(f + FENCE_AUX) >>> 2];
      if (kind === FENCE_KIND_ARRAY || kind === FENCE_KIND_CHAIN) {
        for (const child of kind === FENCE_KIND_ARRAY ? arrayChildren(this, aux) : chainLinks(this, aux)) {
          if (Atomics.sub(this.i32, (child + FENCE_REFCOUNT) >>> 2, 1) === 1) dead.push(child);
        }
        this.freeRecord(aux, kind === FENCE_KIND_ARRAY ? RecordType.fenceArrayBlock : RecordType.fenceChainBlock);
      }
      const timeline = this.u32[(f + FENCE_TIMELINE) >>> 2];
      // Parking in the cache is a free: the record's life ends here either way.
      this.arena.records.retire(f, RecordType.fence, "dma_fence_release");
      this.fenceCache.give(f);
      if (timeline !== 0) Timeline.unrefAt(this, timeline);
    }
  }

  track(view: Fence): void {
    this.finalizer.register(view, view.offset, view);
  }

  untrack(view: Fence): void {
    this.finalizer.unregister(view);
  }

  // ---- waiting for any of several fences -----------------------------------

  /**
   * Blocks until done() holds or the deadline passes, re-checking done()
   * whenever any fence of the lab is signalled: the word is CTL_ANY_EPOCH,
   * which every signal bumps while CTL_ANY_WAITERS is non-zero
   * (assembly/fence.ts); the loop is waitUntil's. For conditions over
   * fences: any of several signalled (dma_fence_wait_any), a file ready (poll).
   */
  blockUntilSignal(done: () => boolean, deadline: number, syscall: string): boolean {
    return waitUntil(this.i32, this.arena.control(CTL_ANY_EPOCH) >>> 2, this.arena.control(CTL_ANY_WAITERS) >>> 2,
      done, deadline, syscall);
  }

  untilSignalAsync(done: () => boolean, deadline: number): Promise<boolean> {
    return waitUntilAsync(this.i32, this.arena.control(CTL_ANY_EPOCH) >>> 2, this.arena.control(CTL_ANY_WAITERS) >>> 2,
      done, deadline);
  }

  /** Blocks until any of the fences is signalled or the deadline passes. */
  blockUntilAny(fences: Fence[], deadline: number): boolean {
    return this.blockUntilSignal(() => fences.some((f) => f.isSignaled()), deadline, "dma_fence_wait_any");
  }

  untilAnyAsync(fences: Fence[], deadline: number): Promise<boolean> {
    return this.untilSignalAsync(() => fences.some((f) => f.isSignaled()), deadline);
  }

  /** Whether this thread may block (false on a browser's main thread). */
  get canBlock(): boolean {
    return canBlock();
  }
}

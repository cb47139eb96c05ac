/*
 * Sync records: the bottom of the sync floor. Allocation, references and
 * contexts of the synchronization records of one lab, seen from one thread;
 * it imports no other module of src/sync/ that could import it back (the
 * object classes, fence.ts and up, import it; sync.ts puts the factories on
 * top). Nothing here makes a view: views are fence.ts's (fenceView).
 *
 * Records (fences, timelines, reservation objects, container blocks) live in
 * the sync heap, a buddy allocator of 64-byte granules over the arena's sync
 * region; any thread builds views of them from offsets. SyncRecords.init()
 * runs once when the lab is created (context counter, clock epoch, the stub
 * fence); every thread then has its own instance over the same memory: its
 * own callbacks, its own engine instance for signalling.
 *
 * Contexts: allocContext() gives bare ones (dma_fence_context_alloc); a
 * timeline record is a context with a driver and a timeline name (TL_*
 * below), refcounted: its own references plus one per fence on it.
 *
 * References: every fence record has a refcount (FENCE_REFCOUNT). unref()
 * releases iteratively, so that dropping the head of a long chain does not
 * recurse: a released container drops its children's references in turn.
 * Which offsets a container's block holds is the container's module's
 * knowledge (fence_array.ts, fence_chain.ts): each registers its kind with
 * registerContainer() when it loads (sync.ts loads both, and every lab has
 * a Sync). Owned views that are garbage collected without put() drop their
 * reference then (a FinalizationRegistry in the thread that made them).
 * Freed fence records go to the fence-record cache (fence_cache.ts) when it
 * has room, and new fences take records from it first.
 */
import { DmaBufError, hex } from "../errno.js";
import {
  CTL_ANY_EPOCH, CTL_ANY_WAITERS, FENCE_AUX, FENCE_CONTEXT, FENCE_KIND, FENCE_KIND_MASK, FENCE_KIND_PLAIN, FENCE_KIND_STUB,
  FENCE_REFCOUNT, FENCE_SEQNO, FENCE_SIZE, FENCE_TIMELINE, TL_CONTEXT, TL_NEXT_SEQNO, TL_REFCOUNT, TL_SIZE,
} from "../engine/abi.js";
import type { Engine } from "../engine/engine.js";
import type { Arena } from "../memory/arena.js";
import { canBlock, waitUntil, waitUntilAsync } from "../memory/futex.js";
import { CTL_CONTEXT_NEXT, CTL_STUB_FENCE } from "../memory/layout.js";
import { Mutex } from "../memory/mutex.js";
import { RecordType, writeName, type RecordTypeId } from "../memory/record.js";
import { CallbackRegistry } from "./callbacks.js";
import { LabClock } from "./clock.js";
import { FenceCache } from "./fence_cache.js";
import { Tracer } from "../trace/recorder.js";
import { Sanitizer } from "../sanitize/agent.js";
import { CAT_FENCE, T_FENCE_CREATE, T_FENCE_SIGNAL, T_FENCE_WAIT } from "../trace/events.js";

/*
 * Timeline record (TL_*, TL_SIZE bytes in the sync heap; timeline.ts and
 * sw_sync.ts are its views):
 *   TL_REFCOUNT  i32: the timeline's own references plus one per fence on it
 *   TL_KIND      u32: TIMELINE_GENERIC or TIMELINE_SW_SYNC
 *   TL_VALUE     u32: sw_sync: the timeline's value
 *   TL_PENDING   u32: sw_sync: the first pending point (fences linked through
 *                FENCE_AUX, ascending seqno), 0 when none
 *   TL_OPEN      i32: sw_sync: references held by timeline users (not fences)
 *   TL_LOCK      a Mutex (32 bytes): guards VALUE, PENDING (sw_sync)
 *   TL_CONTEXT   u64
 *   TL_NEXT_SEQNO u64, taken by Atomics.add (no lock)
 *   TL_DRIVER    NAME_BYTES: driver name, UTF-8, NUL-padded
 *   TL_NAME      NAME_BYTES: timeline name
 * The words a new fence takes (context, next seqno, refcount) are the
 * engine's ABI (fence_init in assembly/fence.ts).
 */
export { TL_CONTEXT, TL_NEXT_SEQNO, TL_REFCOUNT, TL_SIZE };
export const TL_KIND = 4;
export const TL_VALUE = 8;
export const TL_PENDING = 12;
export const TL_OPEN = 16;
export const TL_LOCK = 24;
export const TL_DRIVER = 72;
export const TL_NAME = 104;

export const TIMELINE_GENERIC = 1;
export const TIMELINE_SW_SYNC = 2;

/** The stub's refcount: never reaches zero, put() on it is harmless. */
const IMMORTAL = 0x40000000;

/** What release needs of a container kind: its block's record type and the fence offsets the block references. */
export interface ContainerKind {
  readonly block: RecordTypeId;
  children(sync: SyncRecords, block: number): number[];
}

const containers = new Map<number, ContainerKind>();

/** What an import takes as its lab: a Lab, a LabCore, or anything that holds the sync layer. */
export interface HasSync {
  /** The lab's sync layer (lab.sync). */
  readonly sync: SyncRecords;
}

/** A container kind's release (fence_array.ts and fence_chain.ts register theirs when they load). */
export function registerContainer(kind: number, container: ContainerKind): void {
  containers.set(kind, container);
}

export class SyncRecords {
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
    const sync = new SyncRecords(arena, engine);
    const stub = sync.allocFenceRecord(FENCE_KIND_STUB, 0, 0n, 0n, "stub");
    sync.i32[(stub + FENCE_REFCOUNT) >>> 2] = IMMORTAL;
    engine.wasm.fence_signal(stub, 0, sync.clock.nowNs());
    arena.u32[arena.control(CTL_STUB_FENCE) >>> 2] = stub;
  }

  // ---- contexts --------------------------------------------------------------

  /** dma_fence_context_alloc: the first of n new, unique contexts (never 0). */
  allocContext(n = 1): bigint {
    const u64 = this.u64;
    const i = this.arena.control(CTL_CONTEXT_NEXT) >>> 3;
    return Atomics.add(u64, i, BigInt(n));
  }

  /** A timeline record with a new context and its names; the caller holds its one reference. EINVAL for a name too long. */
  allocTimeline(driver: string, name: string, kind: number): number {
    const offset = this.allocRecord(RecordType.timeline, TL_SIZE, "timeline_create");
    try {
      writeName(this.u8, offset + TL_DRIVER, driver, "driver name", "timeline_create");
      writeName(this.u8, offset + TL_NAME, name, "timeline name", "timeline_create");
    } catch (e) {
      this.freeRecord(offset, RecordType.timeline);
      throw e;
    }
    new Mutex(this.arena.buffer, offset + TL_LOCK).init();
    this.i32[(offset + TL_REFCOUNT) >>> 2] = 1;
    this.u32[(offset + TL_KIND) >>> 2] = kind;
    this.u64[(offset + TL_CONTEXT) >>> 3] = this.allocContext();
    this.u64[(offset + TL_NEXT_SEQNO) >>> 3] = 1n;
    return offset;
  }

  refTimeline(offset: number): void {
    Atomics.add(this.i32, (offset + TL_REFCOUNT) >>> 2, 1);
  }

  /** Drops a timeline reference; the record goes with the last one. */
  unrefTimeline(offset: number): void {
    if (Atomics.sub(this.i32, (offset + TL_REFCOUNT) >>> 2, 1) === 1) this.freeRecord(offset, RecordType.timeline);
  }

  // ---- records -------------------------------------------------------------

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

  // ---- fence records ---------------------------------------------------------

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

  /**
   * A new pending plain fence record on the timeline record at `timeline`
   * (refcount 1; the fence holds a timeline reference): with the seqno
   * given, or the timeline's next one, which the engine takes while it
   * writes the record (fence_init: no BigInt here).
   */
  allocTimelineFence(timeline: number, seqno: bigint | undefined): number {
    let f: number;
    if (seqno === undefined) {
      f = this.fenceBlock("dma_fence_init");
      const rc = this.engine.wasm.fence_init(f, timeline);
      if (rc !== 0) {
        this.fenceCache.give(f);
        throw new DmaBufError(DmaBufError.codeOf(rc), "dma_fence_init", `timeline ${hex(timeline)} or fence ${hex(f)} is not in the sync heap`);
      }
      // Born after its words are written: fenceAt() accepts it from here on.
      this.arena.records.stamp(f, RecordType.fence);
    } else {
      this.refTimeline(timeline);
      try {
        f = this.allocFenceRecord(FENCE_KIND_PLAIN, timeline, this.u64[(timeline + TL_CONTEXT) >>> 3], seqno, "dma_fence_init");
      } catch (e) {
        this.unrefTimeline(timeline);
        throw e;
      }
    }
    if (this.trace.on(CAT_FENCE)) this.traceFence(T_FENCE_CREATE, f, this.trace.now(), 0, 0, 0);
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

  /** The lab's always-signalled stub fence record (context 0, seqno 0), with a new reference. */
  refStub(): number {
    const offset = this.u32[this.arena.control(CTL_STUB_FENCE) >>> 2];
    this.ref(offset);
    return offset;
  }

  /** The generation of the live fence at `offset` (what a token carries). */
  generationOf(offset: number): number {
    return this.arena.records.check(offset, RecordType.fence, "dma_fence");
  }

  /*
   * Trace points (src/trace): a fence is named by the low words of its
   * context and seqno. Callers check trace.on(CAT_FENCE) first.
   */
  traceFence(type: number, f: number, t0: number, d: number, e: number, g: number): void {
    const trace = this.trace;
    const u32 = this.u32;
    trace.record(type, 0, t0, type === T_FENCE_SIGNAL || type === T_FENCE_WAIT ? trace.now() : t0,
      u32[(f + FENCE_CONTEXT) >>> 2], u32[(f + FENCE_SEQNO) >>> 2], f, d, e, g);
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
      const container = containers.get(kind);
      if (container !== undefined) {
        const block = this.u32[(f + FENCE_AUX) >>> 2];
        for (const child of container.children(this, block)) {
          if (Atomics.sub(this.i32, (child + FENCE_REFCOUNT) >>> 2, 1) === 1) dead.push(child);
        }
        this.freeRecord(block, container.block);
      }
      const timeline = this.u32[(f + FENCE_TIMELINE) >>> 2];
      // Parking in the cache is a free: the record's life ends here either way.
      this.arena.records.retire(f, RecordType.fence, "dma_fence_release");
      this.fenceCache.give(f);
      if (timeline !== 0) this.unrefTimeline(timeline);
    }
  }

  /** Puts the reference of fence record `offset` when `view` is garbage collected first. */
  track(view: object, offset: number): void {
    this.finalizer.register(view, offset, view);
  }

  untrack(view: object): void {
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

  /** Whether this thread may block (false on a browser's main thread). */
  get canBlock(): boolean {
    return canBlock();
  }
}

/*
 * dma_fence: a one-shot completion in the arena, visible to every thread.
 *
 * A fence record (FENCE_* in src/engine/abi.ts, 64 bytes in the sync heap)
 * has a context and seqno, a status (0 pending, 1 signalled, -errno
 * signalled with an error), an error that may be set before signalling and
 * shows in the status only after, a timestamp taken at signalling (ns on the
 * lab clock) and a deadline hint. Signalling is one-shot: of any number of
 * racing signallers in any threads exactly one wins; signal() in a loser
 * gives EINVAL (the 6.x kernel), checkAndSignal() reports "already" (7.0).
 *
 * Views and references: a Fence object is a view of a record. Views that an
 * API returns own one reference (the kernel's dma_fence_get); put() drops
 * it, and so does `using`/Symbol.dispose, and a view that is garbage
 * collected without put() drops it then. Views handed out by iterators
 * (children, unwrap, resv iteration) are borrowed: valid while their owner
 * is held; get() makes an owned one. The record is freed when the last
 * reference in any thread goes. Library code that puts a view in a finally
 * makes it untracked (no registry), as the read/write path does for its own
 * fence.
 *
 * Callbacks are per thread: addCallback() in a thread runs the callback in
 * that thread, exactly once: synchronously inside signal() when this thread
 * signals, inside wait() when this thread's wait sees the signal, or else
 * from the event loop once the signal is seen (Atomics.waitAsync). Adding to
 * a signalled fence gives ENOENT and never runs the callback; removeCallback()
 * succeeds only while the fence is pending.
 *
 * Views of records: Fence.view(sync, offset, owned) makes the view of the
 * class a record's kind needs; the container classes (fence_array.ts,
 * fence_chain.ts) register theirs with Fence.register when they load, so
 * that this module sits below them. Fence.at() is the view of an offset
 * another thread sent (checked, see record.ts); Fence.init, Fence.stub and
 * Fence.privateStub make fences that no timeline owns.
 *
 * Waiting: wait(timeoutMs) blocks (Atomics.wait) and returns the time left in
 * ms (> 0; 1 when timeoutMs is 0 and the fence is signalled), 0 on timeout;
 * where this thread may not block it throws EPERM naming waitAsync(), which
 * works on every thread including a browser's main thread.
 */
import { DmaBufError, hex } from "../errno.js";
import { describe } from "../args.js";
import {
  FENCE_CONTEXT, FENCE_DEADLINE, FENCE_ERROR, FENCE_KIND, FENCE_KIND_ARRAY, FENCE_KIND_CHAIN, FENCE_KIND_MASK, FENCE_KIND_PLAIN,
  FENCE_KIND_STUB, FENCE_REFCOUNT, FENCE_SEQNO, FENCE_STATUS, FENCE_TIMELINE, FENCE_TIMESTAMP, FENCE_WAITERS, MAX_ERRNO,
  SIGNAL_ALREADY,
} from "../engine/abi.js";
import { keepingAlive, nowMs, waitUntil, waitUntilAsync } from "../memory/futex.js";
import { RecordType, getRecord, readName } from "../memory/record.js";
import { CAT_FENCE, T_FENCE_LEAF, T_FENCE_SIGNAL, T_FENCE_WAIT, WAIT_ASYNC, WAIT_SLEPT } from "../trace/events.js";
import type { WatchCallback } from "./callbacks.js";
import { receiveFlight, sendFlight, type ShareToken } from "./flight.js";
import { TIMELINE_GENERIC, TL_DRIVER, TL_NAME, type SyncRecords, type HasSync } from "./records.js";

export type FenceCallback = (fence: Fence) => void;

/** Names of a fence as sync_file reports them. */
export interface FenceNames {
  driver: string;
  timeline: string;
}

/** The names of fences that have no timeline record. */
const builtinNames: Record<number, FenceNames> = {
  [FENCE_KIND_STUB]: { driver: "stub", timeline: "stub" },
  [FENCE_KIND_ARRAY]: { driver: "dma_fence_array", timeline: "unbound" },
  [FENCE_KIND_CHAIN]: { driver: "dma_fence_chain", timeline: "unbound" },
  [FENCE_KIND_PLAIN]: { driver: "dmabuf-lab", timeline: "unbound" },
};

/** A view class of a fence kind. */
export type FenceClass = new (sync: SyncRecords, offset: number, owned: boolean) => Fence;

const fenceClasses = new Map<number, FenceClass>();

export class Fence {
  /** Whether this view holds a reference (see the module comment). */
  owned: boolean;

  /** Whether a FinalizationRegistry puts this view if it is collected without put(). */
  private readonly tracked: boolean;

  /**
   * tracked: false for an owned view whose put() is certain (a finally in
   * library code): it skips the registry, which costs about as much as the
   * rest of a signal.
   */
  constructor(readonly sync: SyncRecords, readonly offset: number, owned: boolean, tracked = owned) {
    this.owned = owned;
    this.tracked = owned && tracked;
    if (this.tracked) sync.track(this, offset);
  }

  // ---- views and fences without a timeline -------------------------------------

  /** The view class of fences of `kind` (a container module registers its class when it loads). */
  static register(kind: number, view: FenceClass): void {
    fenceClasses.set(kind, view);
  }

  /** A view of the fence at `offset`, of the class its kind needs. */
  static view(sync: SyncRecords, offset: number, owned: boolean): Fence {
    const view = fenceClasses.get(sync.u32[(offset + FENCE_KIND) >>> 2] & FENCE_KIND_MASK);
    if (view === undefined) throw new DmaBufError("EINVAL", "dma_fence", `no fence at ${hex(offset)}`);
    return new view(sync, offset, owned);
  }

  /**
   * An owned view from an offset (and, from a token, the generation) that
   * another thread sent; takes a reference. EINVAL, nothing touched, unless
   * a live fence record (of that generation) starts there.
   */
  static at(sync: SyncRecords, offset: number, generation?: number): Fence {
    sync.arena.records.check(offset, RecordType.fence, "dma_fence", "EINVAL", generation);
    // The kind (and with it the view's class) is checked before a reference is taken.
    Fence.view(sync, offset, false);
    getRecord(sync.arena, offset, RecordType.fence, FENCE_REFCOUNT, "dma_fence", "EINVAL", generation, () => sync.unref(offset));
    return Fence.view(sync, offset, true);
  }

  /**
   * dma_fence_init: a new pending plain fence on a context of the caller's
   * choice (owned). `names`, when given, is asked once for the fence's driver
   * and timeline names (a borrowed view of the new fence), which go into a
   * timeline record the fence holds; without it the fence has the builtin
   * names. Names too long: EINVAL, nothing kept.
   */
  static init(sync: SyncRecords, context: bigint, seqno: bigint, names?: (fence: Fence) => FenceNames): Fence {
    const f = sync.allocFenceRecord(FENCE_KIND_PLAIN, 0, context, seqno, "dma_fence_init");
    if (names !== undefined) {
      try {
        const { driver, timeline } = names(new Fence(sync, f, false));
        // The creator's reference on the timeline passes to the fence.
        sync.u32[(f + FENCE_TIMELINE) >>> 2] = sync.allocTimeline(driver, timeline, TIMELINE_GENERIC);
      } catch (e) {
        sync.unref(f);
        throw e;
      }
    }
    return new Fence(sync, f, true);
  }

  /** dma_fence_get_stub: the lab's always-signalled stub (context 0, seqno 0). */
  static stub(sync: SyncRecords): Fence {
    return new Fence(sync, sync.refStub(), true);
  }

  /** dma_fence_allocate_private_stub: a new stub, signalled at `timestampNs`. */
  static privateStub(sync: SyncRecords, timestampNs: number): Fence {
    const f = sync.allocFenceRecord(FENCE_KIND_STUB, 0, 0n, 0n, "dma_fence_allocate_private_stub");
    sync.engine.wasm.fence_signal(f, 0, timestampNs);
    return new Fence(sync, f, true);
  }

  // ---- identity ----------------------------------------------------------

  get kind(): number {
    return this.sync.u32[(this.offset + FENCE_KIND) >>> 2] & FENCE_KIND_MASK;
  }

  get context(): bigint {
    return this.sync.u64[(this.offset + FENCE_CONTEXT) >>> 3];
  }

  get seqno(): bigint {
    return this.sync.u64[(this.offset + FENCE_SEQNO) >>> 3];
  }

  /** The driver and timeline names (sync_file's driver_name and obj_name). */
  get names(): FenceNames {
    const timeline = this.sync.u32[(this.offset + FENCE_TIMELINE) >>> 2];
    if (timeline === 0) return builtinNames[this.kind];
    return { driver: readName(this.sync.u8, timeline + TL_DRIVER), timeline: readName(this.sync.u8, timeline + TL_NAME) };
  }

  /** Same record. */
  is(other: Fence | null | undefined): boolean {
    return other !== null && other !== undefined && other.offset === this.offset;
  }

  // ---- state -------------------------------------------------------------

  /** get_status: 0 pending, 1 signalled, -errno signalled with an error. */
  get status(): number {
    return Atomics.load(this.sync.i32, (this.offset + FENCE_STATUS) >>> 2);
  }

  /** Whether it is signalled; a sanitizing lab counts seeing it so as an edge (src/sanitize). */
  isSignaled(): boolean {
    const signalled = this.status !== 0;
    if (signalled && this.sync.san.on) acquireFence(this);
    return signalled;
  }

  /** The signal time in ns on the lab clock; 0 while pending. */
  get timestampNs(): number {
    return this.status === 0 ? 0 : this.sync.f64[(this.offset + FENCE_TIMESTAMP) >>> 3];
  }

  /** The deadline hint in ns on the lab clock, 0 when none was set. */
  get deadlineNs(): number {
    return this.sync.f64[(this.offset + FENCE_DEADLINE) >>> 3];
  }

  /** dma_fence_set_deadline: a hint; the earliest deadline is kept. */
  setDeadline(ns: number): void {
    if (typeof ns !== "number" || !(ns > 0)) throw new DmaBufError("EINVAL", "set_deadline", `deadline ${describe(ns)} ns must be a positive number`);
    const i = (this.offset + FENCE_DEADLINE) >>> 3;
    const current = this.sync.f64[i];
    if (current === 0 || ns < current) this.sync.f64[i] = ns;
  }

  /** dma_fence_set_error: before signalling only; err in [-4095, -1]. */
  setError(err: number): void {
    this.requireLeaf("set_error");
    if (!Number.isInteger(err) || err >= 0 || err < -MAX_ERRNO) {
      throw new DmaBufError("EINVAL", "set_error", `error ${err} is not a negative errno`);
    }
    if (this.isSignaled()) {
      throw new DmaBufError("EINVAL", "set_error", `fence ${this.describe()} is already signalled`);
    }
    Atomics.store(this.sync.i32, (this.offset + FENCE_ERROR) >>> 2, err);
  }

  // ---- signalling --------------------------------------------------------

  /** Signals; EINVAL if it was signalled already (nothing changes then). */
  signal(error = 0): void {
    if (this.checkAndSignal(error)) {
      throw new DmaBufError("EINVAL", "dma_fence_signal", `fence ${this.describe()} is already signalled`);
    }
  }

  /** dma_fence_check_and_signal: true if it was signalled already, else signals it. */
  checkAndSignal(error = 0): boolean {
    this.requireLeaf("dma_fence_signal");
    // Checked here too: the engine takes an i32, and ToInt32 would make 0.5 a 0 and 2**32 - 5 an EIO.
    if (!Number.isInteger(error) || error > 0 || error < -MAX_ERRNO) {
      throw new DmaBufError("EINVAL", "dma_fence_signal", `fence ${this.describe()}: error ${error} must be 0 or a negative errno`);
    }
    const trace = this.sync.trace;
    const traced = trace.on(CAT_FENCE);
    const t0 = traced ? trace.now() : 0;
    // The sanitizer's release: this thread's clock is published before the signal.
    if (this.sync.san.on) this.sync.san.release(this.offset);
    const rc = this.sync.engine.wasm.fence_signal(this.offset, error, this.sync.clock.nowNs());
    if (rc === SIGNAL_ALREADY) return true;
    if (rc !== 0) {
      throw new DmaBufError(DmaBufError.codeOf(rc), "dma_fence_signal",
        `fence ${this.describe()}: error ${error} must be 0 or a negative errno`);
    }
    this.sync.callbacks.dispatch(this);
    if (traced) this.sync.traceFence(T_FENCE_SIGNAL, this.offset, t0, error, 0, 0);
    return false;
  }

  // ---- waiting -----------------------------------------------------------

  /** Blocks until signalled or timeoutMs passes; returns the time left (> 0) or 0. */
  wait(timeoutMs = Infinity): number {
    checkTimeout(timeoutMs, "dma_fence_wait");
    const start = nowMs();
    const trace = this.sync.trace;
    const traced = trace.on(CAT_FENCE);
    const t0 = traced ? trace.now() : 0;
    const slept = traced && !this.isSignaled();
    const ok = this.blockUntilSignaled(start + timeoutMs);
    if (ok && this.sync.san.on) acquireFence(this);
    if (ok) this.sync.callbacks.dispatch(this);
    if (traced) traceWait(this, t0, ok, slept ? WAIT_SLEPT : 0);
    return ok ? timeLeft(start, timeoutMs) : 0;
  }

  /**
   * wait() as a Promise (Atomics.waitAsync): any thread, never blocks. In
   * Node the process stays up while it waits (keepingAlive).
   */
  async waitAsync(timeoutMs = Infinity): Promise<number> {
    checkTimeout(timeoutMs, "dma_fence_wait");
    const start = nowMs();
    const trace = this.sync.trace;
    const traced = trace.on(CAT_FENCE);
    const t0 = traced ? trace.now() : 0;
    const slept = traced && !this.isSignaled();
    const ok = await keepingAlive(this.untilSignaled(start + timeoutMs));
    if (ok && this.sync.san.on) acquireFence(this);
    if (ok) this.sync.callbacks.dispatch(this);
    if (traced) traceWait(this, t0, ok, WAIT_ASYNC | (slept ? WAIT_SLEPT : 0));
    return ok ? timeLeft(start, timeoutMs) : 0;
  }

  /** Waits for the fence's leaves (overridden by containers). */
  protected blockUntilSignaled(deadline: number): boolean {
    return this.blockOnStatus(deadline);
  }

  /**
   * Resolves true once the fence is signalled (a container: once its leaves
   * make it so), false at the deadline; no callbacks run, nothing is kept
   * alive. The callback watches (callbacks.ts) sleep here.
   */
  untilSignaled(deadline: number): Promise<boolean> {
    return this.waitStatusAsync(deadline);
  }

  /** Sleeps on STATUS until non-zero or the deadline (the protocol: assembly/fence.ts). */
  blockOnStatus(deadline: number): boolean {
    const status = (this.offset + FENCE_STATUS) >>> 2;
    return waitUntil(this.sync.i32, status, (this.offset + FENCE_WAITERS) >>> 2,
      () => Atomics.load(this.sync.i32, status) !== 0, deadline, "dma_fence_wait");
  }

  waitStatusAsync(deadline: number): Promise<boolean> {
    const status = (this.offset + FENCE_STATUS) >>> 2;
    return waitUntilAsync(this.sync.i32, status, (this.offset + FENCE_WAITERS) >>> 2,
      () => Atomics.load(this.sync.i32, status) !== 0, deadline);
  }

  // ---- callbacks ---------------------------------------------------------

  /** dma_fence_add_callback: ENOENT (callback never run) if already signalled. */
  addCallback(cb: FenceCallback): void {
    if (this.isSignaled()) {
      throw new DmaBufError("ENOENT", "dma_fence_add_callback", `fence ${this.describe()} is already signalled`);
    }
    this.sync.callbacks.add(this, cb as WatchCallback);
  }

  /** dma_fence_remove_callback: true if it was still queued (and the fence pending). */
  removeCallback(cb: FenceCallback): boolean {
    return this.sync.callbacks.remove(this, cb as WatchCallback);
  }

  // ---- references --------------------------------------------------------

  /** dma_fence_get: a new owned view of the same fence. */
  get(): Fence {
    this.sync.ref(this.offset);
    return Fence.view(this.sync, this.offset, true);
  }

  /** A token for another thread: Fence.import (or lab.import) there; holds a reference until then (src/sync/flight.ts). */
  share(): ShareToken<"fence"> {
    return sendFlight(this.sync, "fence", this.offset, () => this.sync.ref(this.offset));
  }

  /** This thread's owned view of a shared fence (EINVAL/EBADF for a bad or spent token). */
  static import(lab: HasSync, token: ShareToken<"fence">): Fence {
    return receiveFlight(lab.sync, token, "fence", "dma_fence_import", (t) => Fence.view(lab.sync, t.offset, true));
  }

  /** dma_fence_put: drops this view's reference. */
  put(): void {
    if (!this.owned) {
      throw new DmaBufError("EINVAL", "dma_fence_put", `fence ${this.describe()}: this view is borrowed and holds no reference`);
    }
    this.owned = false;
    if (this.tracked) this.sync.untrack(this);
    this.sync.unref(this.offset);
  }

  [Symbol.dispose](): void {
    if (this.owned) this.put();
  }

  get refcount(): number {
    return Atomics.load(this.sync.i32, (this.offset + FENCE_REFCOUNT) >>> 2);
  }

  /** Fences this one stands for: itself for a leaf, children for containers. */
  leaves(): Fence[] {
    return [this];
  }

  describe(): string {
    return `${hex(this.offset)} (context ${this.context}, seqno ${this.seqno})`;
  }

  protected requireLeaf(syscall: string): void {
    if (this.leaves().length !== 1 || !this.leaves()[0].is(this)) {
      throw new DmaBufError("EINVAL", syscall, `fence ${this.describe()} is a container; it signals through its fences`);
    }
  }
}

Fence.register(FENCE_KIND_PLAIN, Fence);
Fence.register(FENCE_KIND_STUB, Fence);

/** A wait's event, then one per leaf when it waited for a container. */
function traceWait(fence: Fence, t0: number, ok: boolean, flags: number): void {
  const leaves = fence.leaves();
  const own = leaves.length === 1 && leaves[0].is(fence);
  fence.sync.traceFence(T_FENCE_WAIT, fence.offset, t0, ok ? 1 : 0, flags, own ? 0 : leaves.length);
  if (!own) for (const l of leaves) fence.sync.traceFence(T_FENCE_LEAF, l.offset, t0, 0, 0, 0);
}

/**
 * The sanitizer's acquire (src/sanitize/agent.ts) of a fence seen
 * signalled: the clock of each of its signalled leaves (a container's
 * leaves signal on their own; a signal-on-any array may have pending ones).
 * Callers check sync.san.on first.
 */
export function acquireFence(fence: Fence): void {
  const { sync } = fence;
  const kind = sync.u32[(fence.offset + FENCE_KIND) >>> 2] & FENCE_KIND_MASK;
  if (kind === FENCE_KIND_PLAIN) {
    sync.san.acquire(fence.offset);
    return;
  }
  for (const leaf of fence.leaves()) if (statusAt(sync, leaf.offset) !== 0) sync.san.acquire(leaf.offset);
}

/*
 * Raw record reads for hot loops (a reservation object's slot scan): no view,
 * no BigInt. `f` is a fence record's offset.
 */
export function statusAt(sync: SyncRecords, f: number): number {
  return Atomics.load(sync.i32, (f + FENCE_STATUS) >>> 2);
}

export function sameContextAt(sync: SyncRecords, a: number, b: number): boolean {
  const u32 = sync.u32;
  const ia = (a + FENCE_CONTEXT) >>> 2;
  const ib = (b + FENCE_CONTEXT) >>> 2;
  return u32[ia] === u32[ib] && u32[ia + 1] === u32[ib + 1];
}

/** dma_fence_is_later of two records of one context: 32-bit seqnos with wrap-around. */
export function isLaterAt(sync: SyncRecords, a: number, b: number): boolean {
  const u32 = sync.u32;
  return ((u32[(a + FENCE_SEQNO) >>> 2] - u32[(b + FENCE_SEQNO) >>> 2]) | 0) > 0;
}

/** dma_fence_is_later for fences of one context. */
export function isLater(a: Fence, b: Fence): boolean {
  return isLaterAt(a.sync, a.offset, b.offset);
}

export function checkTimeout(timeoutMs: number, syscall: string): void {
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new DmaBufError("EINVAL", syscall, `timeout ${timeoutMs} ms must be >= 0`);
  }
}

/** The kernel's wait_timeout result: remaining time (>0), 1 for a zero timeout. */
export function timeLeft(start: number, timeoutMs: number): number {
  if (timeoutMs === 0) return 1;
  if (timeoutMs === Infinity) return Infinity;
  return Math.max(Number.EPSILON, timeoutMs - (nowMs() - start));
}

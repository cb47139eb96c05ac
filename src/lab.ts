/*
 * LabCore: the arena plus this thread's engine and sync, below the uapi.
 * Users start from its subclass Lab (src/api/lab.ts), which adds the
 * object API (process, heap(), queue(), import(), spawnDevice()).
 *
 *   const lab = await Lab.create();           // creating thread
 *   const lab = await Lab.attach(handle);     // any other thread
 *
 * Contract: a lab is a per-thread view. lab.share() returns a handle (the
 * shared memory and the compiled module) that crosses to workers in a
 * message; Lab.attach() there rebuilds the same arena and a new engine
 * instance. User memory from lab.alloc() is a Uint8Array inside the arena,
 * so both sides of a hot copy are wasm memory; lab.copy() takes that fast
 * path when it can and falls back to TypedArray.set for foreign views.
 * Below the uapi: the allocators, copies, sharing, the exporters (heaps,
 * memfd, udmabuf); it imports nothing above src/dmabuf/. create() and
 * attach() make an instance of the class they are called on, so
 * Lab.create() gives a Lab.
 */
import { DmaBufError, hex } from "./errno.js";
import { bytesArg, describe, intArg, objectArg } from "./args.js";
import { Arena } from "./memory/arena.js";
import type { BuddyStats } from "./memory/buddy.js";
import { CACHE_LINE, REGION_ALIGN, CTL_AUTO_TABLE, type Layout, type LayoutOptions } from "./memory/layout.js";
import { currentDefaultCalibration, defaultCalibration, encodeCalibration, type Calibration } from "./engine/calibration.js";
import { SCRATCH_BYTES, measureAutoTable } from "./engine/autotune.js";
import { Engine } from "./engine/engine.js";
import { loadEngineModule, type EngineSource } from "./engine/module.js";
import { strategyId, type StrategyName } from "./engine/strategy.js";
import { SegmentList, SgTable } from "./engine/tables.js";
import { Sync } from "./sync/sync.js";
import { setFenceCacheMode, type FenceCacheMode } from "./sync/fence_cache.js";
import { Heap, heapNames, type HeapName } from "./dmabuf/heap.js";
import { Memfd } from "./dmabuf/memfd.js";
import { isCoherent, setCoherent } from "./dmabuf/coherence.js";
import { udmabufCreate, type UdmabufItem } from "./dmabuf/udmabuf.js";
import { releaseCpuState } from "./dmabuf/rw.js";
import type { Tracer } from "./trace/recorder.js";
import { Sanitizer, type SanitizeOptions } from "./sanitize/agent.js";
import { checkRaces, type SanitizeReport } from "./sanitize/check.js";
import { DmaBufRecord } from "./dmabuf/dma_buf.js";

export interface LabOptions extends LayoutOptions {
  /** The engine: a compiled module, or the URL of engine.wasm. */
  engine?: EngineSource;
  /**
   * The AUTO calibration table: "measure" (the default) times bulk against
   * simd where they trade places, once per JavaScript realm, at the first
   * Lab.create (under 50 ms; src/engine/autotune.ts), and later labs reuse
   * it, unless a program installed a table with setDefaultCalibration()
   * (the CLI installs the one `bench calibrate --write` saved); "static" is
   * that installed table or src/engine/calibration.json, unmeasured; or a
   * table of your own.
   */
  calibration?: Calibration | "measure" | "static";
  /**
   * false models a non-coherent (ARM-like) machine: cached buffers are seen
   * by the CPU through a simulated write-back cache (src/dmabuf/coherence.ts).
   * Default true (x86-like).
   */
  coherent?: boolean;
  /**
   * The fence-record cache (src/sync/fence_cache.ts): "per-thread" (the
   * default) puts a magazine of each thread in front of the shared depot;
   * "shared" is the depot alone, every take and give a compareExchange on
   * the control block (for benchmarks that show the difference).
   */
  fenceCache?: FenceCacheMode;
  /**
   * The race detector (src/sanitize): every access to a dma-buf's bytes is
   * recorded with its vector clock over fence edges, and
   * lab.sanitizer.report() lists the pairs that no fence orders. true, or
   * { logBytes } to bound each thread's log (default 8 MiB). Default off,
   * which costs one load and branch per hook.
   */
  sanitize?: boolean | SanitizeOptions;
}

/** A dma-buf for the race report: its name, else its exporter, and its record; "freed" once it is gone. */
function bufferName(sync: Sync, offset: number, generation: number): string {
  let buf: DmaBufRecord;
  try {
    buf = DmaBufRecord.attach(sync, offset, generation);
  } catch (e) {
    if (!(e instanceof DmaBufError)) throw e;
    return `dma-buf ${hex(offset)} (freed)`;
  }
  try {
    return `${buf.name || buf.exporter} ${hex(offset)}`;
  } finally {
    buf.put();
  }
}

/** The AUTO table measured by this realm's first Lab.create({ calibration: "measure" }). */
let measuredCalibration: Calibration | undefined;
/** Every option Lab.create knows; any other is EINVAL (a misspelt option must not be ignored). */
const LAB_OPTIONS: readonly (keyof LabOptions)[] = ["memoryBytes", "poolBytes", "syncBytes", "engine", "calibration", "coherent", "fenceCache", "sanitize"];

/** What crosses to another thread: structured-clonable, shared not copied. */
export interface LabHandle {
  /** The lab's shared WebAssembly memory (the arena). */
  memory: WebAssembly.Memory;
  /** The compiled engine, instantiated again over the same memory in the other thread. */
  module: WebAssembly.Module;
}

export interface AllocOptions {
  /** A power of two up to 2 MiB; default 64 (a cache line). */
  align?: number;
  /** Zero the memory (default true, like new Uint8Array). */
  zero?: boolean;
}

/**
 * A browser shares memory between threads only in a cross-origin isolated
 * page; elsewhere the arena could not reach a worker (a DataCloneError at
 * the first spawn). EPERM up front, naming the two headers. Node has no
 * crossOriginIsolated and always shares.
 */
function requireCrossOriginIsolation(): void {
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) {
    throw new DmaBufError("EPERM", "lab_create",
      "this page is not cross-origin isolated (crossOriginIsolated is false), so it cannot share memory with workers: " +
      "serve it with the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp " +
      "(`dmabuf-lab serve` does)");
  }
}

/** create() and attach() construct the class they are called on (its constructor is protected). */
type LabClass<T extends LabCore> = new (arena: Arena, engine: Engine) => T;

export class LabCore {
  /** Fences, timelines, sync_files, reservation objects: see src/sync/. */
  readonly sync: Sync;

  protected constructor(readonly arena: Arena, readonly engine: Engine) {
    this.sync = new Sync(arena, engine);
  }

  /** A new lab (its arena, engine and sync) of the class this is called on. */
  static async create<T extends LabCore>(this: { prototype: T }, options: LabOptions = {}): Promise<T> {
    requireCrossOriginIsolation();
    const unknown = Object.keys(options ?? {}).filter((k) => !LAB_OPTIONS.includes(k as keyof LabOptions));
    if (unknown.length) {
      throw new DmaBufError("EINVAL", "lab_create", `unknown option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} ` +
        `(Lab.create takes ${LAB_OPTIONS.join(", ")})`);
    }
    const sanitize = options.sanitize ?? false;
    if (typeof sanitize !== "boolean" && (typeof sanitize !== "object" || sanitize === null)) {
      throw new DmaBufError("EINVAL", "lab_create", `sanitize ${describe(sanitize)} is not a boolean or { logBytes }`);
    }
    const installed = currentDefaultCalibration() !== defaultCalibration;
    const choice = options.calibration ?? (installed ? "static" : "measure");
    if (choice !== "measure" && choice !== "static" && (typeof choice !== "object" || choice === null)) {
      throw new DmaBufError("EINVAL", "lab_create", `calibration '${String(choice)}' is not "measure", "static" or a table`);
    }
    const table = choice === "static" ? currentDefaultCalibration() : choice === "measure" ? measuredCalibration : choice;
    const calibration = encodeCalibration(table ?? currentDefaultCalibration());
    const module = await loadEngineModule(options.engine);
    const arena = Arena.create(options);
    setFenceCacheMode(arena, options.fenceCache ?? "per-thread");
    arena.u8.set(calibration, arena.control(CTL_AUTO_TABLE));
    const engine = new Engine(arena, module);
    Sync.init(arena, engine);
    setCoherent(arena, options.coherent ?? true);
    if (sanitize !== false) Sanitizer.init(arena, sanitize === true ? {} : sanitize);
    const lab = new (this as unknown as LabClass<T>)(arena, engine);
    lab.trace.setThread("main");
    if (choice === "measure" && measuredCalibration === undefined) lab.measureCalibration();
    return lab;
  }

  /**
   * The lab of a handle from lab.share(), in this thread. Anything that is
   * not such a handle (null, another shape, memory that is not a lab's) is
   * EINVAL.
   */
  static async attach<T extends LabCore>(this: { prototype: T }, handle: LabHandle): Promise<T> {
    if (typeof handle !== "object" || handle === null) {
      throw new DmaBufError("EINVAL", "lab_attach", `the handle is ${handle === null ? "null" : typeof handle}, not lab.share()'s { memory, module }`);
    }
    const { memory, module } = handle as Partial<LabHandle>;
    if (!(module instanceof WebAssembly.Module)) {
      throw new DmaBufError("EINVAL", "lab_attach", "the handle's module is not the lab's compiled WebAssembly.Module");
    }
    const arena = Arena.attach(memory as WebAssembly.Memory);
    let engine: Engine;
    try {
      engine = new Engine(arena, await loadEngineModule(module));
    } catch (cause) {
      if (cause instanceof DmaBufError) throw cause;
      throw new DmaBufError("EINVAL", "lab_attach", "the handle's module is not the lab's engine", { cause });
    }
    return new (this as unknown as LabClass<T>)(arena, engine);
  }

  share(): LabHandle {
    return { memory: this.arena.memory, module: this.engine.module };
  }

  get memory(): WebAssembly.Memory {
    return this.arena.memory;
  }

  /**
   * This thread's trace recorder: start({ categories }) and stop() record
   * every thread and device of the lab (src/trace/recorder.ts);
   * chromeTrace(data) makes the Perfetto JSON.
   */
  get trace(): Tracer {
    return this.sync.trace;
  }

  /**
   * The race detector of a lab created with { sanitize: true }
   * (src/sanitize): `enabled`, and report(), from any thread at any time:
   * every pair of overlapping accesses to a dma-buf, one a write, that no
   * fence orders, with both sides named.
   */
  get sanitizer(): { enabled: boolean; report(): SanitizeReport } {
    const { sync } = this;
    return {
      enabled: sync.san.on,
      report: () => {
        if (!sync.san.on) throw new DmaBufError("EINVAL", "sanitize_report", "this lab was not created with { sanitize: true }");
        return checkRaces(this.arena, (offset, generation) => bufferName(sync, offset, generation));
      },
    };
  }

  get layout(): Layout {
    return this.arena.layout;
  }

  /** False when the lab models a non-coherent machine (Lab.create({ coherent: false })). */
  get coherent(): boolean {
    return isCoherent(this.arena);
  }

  /**
   * Times AUTO's contested buckets in this lab's user memory (two blocks of
   * SCRATCH_BYTES, freed after) and installs the table, which later labs
   * of this realm reuse. Where user memory is too small, the static table stays.
   */
  private measureCalibration(): void {
    let dst: Uint8Array | undefined;
    let src: Uint8Array | undefined;
    try {
      dst = this.alloc(SCRATCH_BYTES, { align: 4096, zero: false });
      src = this.alloc(SCRATCH_BYTES, { align: 4096 });
    } catch (e) {
      if (!(e instanceof DmaBufError && e.code === "ENOMEM")) throw e;
    }
    try {
      if (dst === undefined || src === undefined) return;
      measuredCalibration = measureAutoTable(this.engine, dst, src).table;
      this.setCalibration(measuredCalibration);
    } finally {
      if (dst !== undefined) this.free(dst);
      if (src !== undefined) this.free(src);
    }
  }

  /** Replaces the AUTO table for every thread of this lab. */
  setCalibration(table: Calibration): void {
    this.arena.u8.set(encodeCalibration(table), this.arena.control(CTL_AUTO_TABLE));
  }

  /** A view of `bytes` bytes of user memory (rounded up to a power of two). */
  alloc(bytes: number, options: AllocOptions = {}): Uint8Array {
    const { align = CACHE_LINE, zero = true } = objectArg<AllocOptions>(options, "alloc", "the options");
    intArg(bytes, "alloc", "size", { min: 1 });
    if (typeof align !== "number" || !Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0 || align > REGION_ALIGN) {
      throw new DmaBufError("EINVAL", "alloc", `align ${describe(align)} must be a power of two up to ${REGION_ALIGN}`);
    }
    const user = this.arena.user;
    const order = user.orderFor(bytes, align);
    if (order > user.maxOrder) {
      throw new DmaBufError("ENOMEM", "alloc",
        `size ${bytes} exceeds the largest block of user memory (${user.granuleBytes * 2 ** user.maxOrder} bytes)`);
    }
    const offset = user.alloc(order, "alloc");
    if (zero) this.engine.fill(offset, 0, user.granuleBytes * 2 ** order);
    return new Uint8Array(this.arena.memory.buffer, offset, bytes);
  }

  /** Returns a view from alloc(); EINVAL for a foreign view or a double free. */
  free(view: Uint8Array): void {
    bytesArg(view, "free", "the view", "EINVAL");
    if (!this.arena.owns(view) || !this.arena.user.contains(view.byteOffset)) {
      throw new DmaBufError("EINVAL", "free", `a view at ${this.arena.owns(view) ? hex(view.byteOffset) : "foreign memory"} was not allocated by lab.alloc()`);
    }
    this.arena.user.free(view.byteOffset, undefined, "free");
  }

  /** The arena offset of a view of this lab's memory (EFAULT otherwise). */
  offsetOf(view: ArrayBufferView): number {
    return this.arena.offsetOf(view, "offset_of");
  }

  /**
   * Copies src into the start of dst. Both in the arena: one engine call
   * with the strategy; otherwise TypedArray.set (the slower path).
   */
  copy(dst: Uint8Array, src: Uint8Array, strategy: StrategyName = "auto"): void {
    bytesArg(dst, "copy", "dst");
    bytesArg(src, "copy", "src");
    strategyId(strategy, "copy");
    if (src.byteLength > dst.byteLength) {
      throw new DmaBufError("EINVAL", "copy", `source of ${src.byteLength} bytes does not fit a destination of ${dst.byteLength}`);
    }
    if (this.arena.owns(dst) && this.arena.owns(src)) {
      this.engine.copy(dst.byteOffset, src.byteOffset, src.byteLength, strategy);
    } else {
      dst.set(src);
    }
  }

  /**
   * A dma-heap exporter, below the uapi: exporter("system").alloc(size)
   * gives a DmaBufRecord. Users want lab.heap(name) (the object API).
   */
  exporter(name: HeapName): Heap {
    if (!heapNames.includes(name)) {
      throw new DmaBufError("ENOENT", "open", `no heap ${describe(name)} (heaps: ${heapNames.join(", ")})`);
    }
    return new Heap(this.sync, this.engine, name);
  }

  /** memfd_create: an empty file whose pages come from the page pool. */
  memfd(name: string, flags?: number): Memfd {
    return Memfd.create(this.sync, this.engine, name, flags);
  }

  /** UDMABUF_CREATE(_LIST): a dma-buf over memfd pages (see src/dmabuf/udmabuf.ts). */
  udmabuf(items: UdmabufItem[]): DmaBufRecord {
    return udmabufCreate(this.sync, items);
  }

  /** Allocates 2^order pages from the page pool; returns the byte offset. */
  allocPages(order: number): number {
    return this.arena.pages.alloc(order, "alloc_pages");
  }

  /** Frees pages from allocPages(); the order must match. */
  freePages(offset: number, order: number): void {
    this.arena.pages.free(offset, order, "free_pages");
  }

  sgTable(capacity?: number): SgTable {
    return new SgTable(this.arena, capacity);
  }

  segmentList(capacity?: number): SegmentList {
    return new SegmentList(this.arena, capacity);
  }

  /**
   * The three allocators' statistics. The sync heap's freeBytes counts the
   * fence records parked in the record cache (cachedBytes of them), which
   * any allocation takes back: a balanced program returns to the same
   * figure whatever the cache holds.
   */
  stats(): { pages: BuddyStats; user: BuddyStats; sync: BuddyStats & { cachedBytes: number } } {
    const sync = this.arena.syncHeap.stats();
    const cachedBytes = this.sync.fenceCache.bytes();
    return {
      pages: this.arena.pages.stats(),
      user: this.arena.user.stats(),
      sync: { ...sync, freeBytes: sync.freeBytes + cachedBytes, cachedBytes },
    };
  }

  /** Frees this thread's engine scratch and read/write state. The memory lives while any thread holds it. */
  close(): void {
    releaseCpuState(this.sync);
    this.sync.trace.release();
    this.sync.fenceCache.flush();
    this.engine.dispose();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

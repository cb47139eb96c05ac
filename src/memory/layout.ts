/*
 * The arena layout: one shared WebAssembly.Memory cut into named regions.
 *
 *   [0, 64 KiB)            engine static data (the wasm module's data
 *                          segments start at ENGINE_MEMORY_BASE; the build
 *                          refuses a module whose data would pass 64 KiB)
 *   [64 KiB, +4 KiB)       the control block: magic, version, the region
 *                          table below, the AUTO calibration table
 *   metadata               allocator state blocks (locks, free lists, maps),
 *                          then the sync heap's record tags (record.ts: one
 *                          u32 type | generation per sync granule)
 *   sync                   the sync heap: fence records, reservation objects,
 *                          timelines, rings (buddy allocator, 64-byte granules)
 *   page pool              4 KiB pages for heaps (buddy allocator, orders
 *                          0..MAX); base aligned to 2 MiB
 *   user memory            lab.alloc() views, 64-byte granules (buddy
 *                          allocator); base aligned to 2 MiB
 *
 * DMA (engine copies) may touch only [pool base, end of memory). The layout
 * is computed once by the creating thread and written to the control block;
 * any other thread rebuilds it from there (readLayout), never from options.
 */
import { DmaBufError, hex } from "../errno.js";

export const WASM_PAGE = 65536;
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
export const CACHE_LINE = 64;
export const USER_GRANULE_SHIFT = 6;
export const SYNC_GRANULE_SHIFT = 6;
export const REGION_ALIGN = 2 * 1024 * 1024;
/** The largest arena: 65535 wasm pages, so that every offset fits in a u32. */
export const MAX_MEMORY_BYTES = 65535 * WASM_PAGE;
export const DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SYNC_BYTES = 4 * 1024 * 1024;

/** Where asc places static data (--memoryBase); below is a null guard. */
export const ENGINE_MEMORY_BASE = 1024;
export const ENGINE_STATIC_END = 64 * 1024;
export const CONTROL_BASE = ENGINE_STATIC_END;
export const CONTROL_BYTES = 4096;

export const LAB_MAGIC = 0x42414d44; // the bytes "DMAB"
export const LAB_LAYOUT_VERSION = 3;

/** Control block words: byte offsets from CONTROL_BASE, each a u32. */
export const CTL_MAGIC = 0;
export const CTL_VERSION = 4;
export const CTL_MEMORY_BYTES = 8;
export const CTL_META_BASE = 12;
export const CTL_META_BYTES = 16;
export const CTL_SYNC_BASE = 20;
export const CTL_SYNC_BYTES = 24;
export const CTL_POOL_BASE = 28;
export const CTL_POOL_BYTES = 32;
export const CTL_USER_BASE = 36;
export const CTL_USER_BYTES = 40;
export const CTL_POOL_ALLOCATOR = 44;
export const CTL_USER_ALLOCATOR = 48;
export const CTL_SYNC_ALLOCATOR = 52;
/** The sync heap's record-tag table (src/memory/record.ts): u32 per sync granule. */
export const CTL_SYNC_TAGS = 56;
/** AUTO calibration table (engine ABI: 2 x 33 strategy bytes). */
export const CTL_AUTO_TABLE = 64;
export const CTL_AUTO_TABLE_BYTES = 66;
/*
 * Words of the sync layer: CTL_ANY_WAITERS (128) and CTL_ANY_EPOCH (132) are
 * engine ABI (src/engine/abi.ts); the rest are src/sync's.
 */
/** u64: the next fence context (0 is the stub's; contexts start at 1). */
export const CTL_CONTEXT_NEXT = 136;
/** f64: the lab clock's epoch, in ms of performance.timeOrigin + now(). */
export const CTL_CLOCK_EPOCH_MS = 144;
/** u32: offset of the stub fence record. */
export const CTL_STUB_FENCE = 152;
/** u32: 1 when the lab models a non-coherent (ARM-like) machine (src/dmabuf/coherence.ts). */
export const CTL_NON_COHERENT = 156;
/** u32: 0 per-thread magazines in front of the depot, 1 the depot only (src/sync/fence_cache.ts). */
export const CTL_FENCE_CACHE_MODE = 160;
/** u32[CTL_FENCE_CACHE_SLOTS]: fence records parked for reuse, 0 = empty (src/sync/fence_cache.ts). */
export const CTL_FENCE_CACHE = 192;
export const CTL_FENCE_CACHE_SLOTS = 16;
/*
 * Tracing (src/trace/recorder.ts), on a cache line of their own: every
 * trace point reads CTL_TRACE_MASK with a plain load, and the words change
 * only at start() and stop().
 */
/** u32: the categories being recorded (0: tracing is off). */
export const CTL_TRACE_MASK = 512;
/** u32: the current (or last) session number; threads reset their buffers when it changes. */
export const CTL_TRACE_SESSION = 516;
/** u32: 0 idle, 1 recording, 2 being collected by stop(). */
export const CTL_TRACE_STATE = 520;
/** u32: head of the list of every trace chunk ever made (linked through the chunks). */
export const CTL_TRACE_CHUNKS = 524;
/** u32: the last tracer id handed out (one per thread's lab view). */
export const CTL_TRACE_IDS = 528;
/** u32: the most chunks one thread may fill in one session. */
export const CTL_TRACE_CHUNK_LIMIT = 532;
/** f64: when the current (or last) session started, ns on the lab clock. */
export const CTL_TRACE_START_NS = 536;
/*
 * The sanitizer (src/sanitize/), on a cache line of its own: every hook
 * reads CTL_SANITIZE with a plain load; the words are set once, when the lab
 * is created, except the agent counter and the log list, which change once
 * per thread (its first access record), never per access.
 */
/** u32: 1 when the lab was created with { sanitize: true }, else 0. */
export const CTL_SANITIZE = 576;
/** u32: the last sanitizer agent id handed out (one per thread's lab view). */
export const CTL_SAN_AGENTS = 580;
/** u32: head of the list of every sanitizer log chunk (linked through the chunks). */
export const CTL_SAN_CHUNKS = 584;
/** u32: offset of the record-clock table: one u32 per sync-heap granule (src/sanitize/agent.ts). */
export const CTL_SAN_CLOCKS = 588;
/** u32: the most log chunks one thread may fill. */
export const CTL_SAN_CHUNK_LIMIT = 592;

export interface Layout {
  /** The whole arena, bytes. */
  memoryBytes: number;
  /** The metadata region's offset (control block, allocator states, record tags). */
  metaBase: number;
  /** The metadata region's size. */
  metaBytes: number;
  /** The sync heap's offset (fences, timelines, resv and every other record). */
  syncBase: number;
  /** The sync heap's size. */
  syncBytes: number;
  /** The page pool's offset (dma-buf pages, IOMMU tables). */
  poolBase: number;
  /** The page pool's size. */
  poolBytes: number;
  /** User memory's offset (lab.alloc). */
  userBase: number;
  /** User memory's size. */
  userBytes: number;
  /** The page pool's buddy allocator state block (src/memory/buddy.ts). */
  poolAllocator: number;
  /** User memory's buddy allocator state block. */
  userAllocator: number;
  /** The sync heap's buddy allocator state block. */
  syncAllocator: number;
  /** The record-tag table: one u32 per sync-heap granule (record.ts). */
  syncTags: number;
}

export interface LayoutOptions {
  /** Size of the whole shared memory; default 256 MiB, at most 4 GiB - 64 KiB. */
  memoryBytes?: number;
  /** Size of the page pool; default half of what is left after the fixed regions. */
  poolBytes?: number;
  /** Size of the sync heap (fences, reservation objects); default 4 MiB. */
  syncBytes?: number;
}

export const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;
export const alignDown = (n: number, a: number): number => Math.floor(n / a) * a;

function checkSize(name: string, value: number, min: number, max: number, unit: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max || value % unit !== 0) {
    throw new DmaBufError("EINVAL", "lab_create",
      `${name}=${value} must be a multiple of ${unit} between ${min} and ${max}`);
  }
}

/**
 * Computes the layout. `stateBytes(granules)` is the size of an allocator
 * state block for a region of that many granules.
 */
export function computeLayout(
  options: LayoutOptions,
  stateBytes: (granules: number) => number,
): Layout {
  const memoryBytes = options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
  checkSize("memoryBytes", memoryBytes, 16 * 1024 * 1024, MAX_MEMORY_BYTES, WASM_PAGE);
  const syncBytes = options.syncBytes ?? DEFAULT_SYNC_BYTES;
  checkSize("syncBytes", syncBytes, 64 * 1024, memoryBytes, PAGE_SIZE);

  // Metadata for the worst case (all of memory in 64-byte granules) would be
  // wasteful; size it for the actual regions, iterating once because the
  // metadata itself moves the regions.
  const metaBase = CONTROL_BASE + CONTROL_BYTES;
  let metaBytes = 0;
  for (let pass = 0; pass < 2; pass++) {
    const syncBase = alignUp(metaBase + metaBytes, PAGE_SIZE);
    const poolBase = alignUp(syncBase + syncBytes, REGION_ALIGN);
    const rest = memoryBytes - poolBase;
    if (rest < 2 * REGION_ALIGN) {
      throw new DmaBufError("EINVAL", "lab_create",
        `memoryBytes=${memoryBytes} leaves no room for the page pool and user memory after syncBytes=${syncBytes}`);
    }
    const poolBytes = options.poolBytes ?? alignDown(rest / 2, REGION_ALIGN);
    checkSize("poolBytes", poolBytes, REGION_ALIGN, rest - REGION_ALIGN, REGION_ALIGN);
    const userBase = poolBase + poolBytes;
    const userBytes = memoryBytes - userBase;
    const poolMeta = alignUp(stateBytes(poolBytes >>> PAGE_SHIFT), CACHE_LINE);
    const userMeta = alignUp(stateBytes(userBytes >>> USER_GRANULE_SHIFT), CACHE_LINE);
    const syncMeta = alignUp(stateBytes(syncBytes >>> SYNC_GRANULE_SHIFT), CACHE_LINE);
    const tagBytes = alignUp(4 * (syncBytes >>> SYNC_GRANULE_SHIFT), CACHE_LINE);
    const needed = poolMeta + userMeta + syncMeta + tagBytes;
    if (pass === 1 || needed <= metaBytes) {
      if (needed > metaBytes) throw new Error("layout: metadata did not converge");
      return {
        memoryBytes, metaBase, metaBytes, syncBase, syncBytes, poolBase, poolBytes, userBase, userBytes,
        poolAllocator: metaBase, userAllocator: metaBase + poolMeta, syncAllocator: metaBase + poolMeta + userMeta,
        syncTags: metaBase + poolMeta + userMeta + syncMeta,
      };
    }
    metaBytes = needed;
  }
  throw new Error("unreachable");
}

const layoutWords: [keyof Layout, number][] = [
  ["memoryBytes", CTL_MEMORY_BYTES], ["metaBase", CTL_META_BASE], ["metaBytes", CTL_META_BYTES],
  ["syncBase", CTL_SYNC_BASE], ["syncBytes", CTL_SYNC_BYTES], ["poolBase", CTL_POOL_BASE],
  ["poolBytes", CTL_POOL_BYTES], ["userBase", CTL_USER_BASE], ["userBytes", CTL_USER_BYTES],
  ["poolAllocator", CTL_POOL_ALLOCATOR], ["userAllocator", CTL_USER_ALLOCATOR],
  ["syncAllocator", CTL_SYNC_ALLOCATOR], ["syncTags", CTL_SYNC_TAGS],
];

/** Writes the magic, version and region table. Called once, before sharing. */
export function writeLayout(u32: Uint32Array, layout: Layout): void {
  const base = CONTROL_BASE >>> 2;
  for (const [key, word] of layoutWords) u32[base + (word >>> 2)] = layout[key];
  u32[base + (CTL_VERSION >>> 2)] = LAB_LAYOUT_VERSION;
  // Published last: a thread that sees the magic sees the table (the memory
  // reaches other threads through postMessage, which orders everything).
  Atomics.store(u32, base + (CTL_MAGIC >>> 2), LAB_MAGIC);
}

/** Rebuilds the layout in any thread; EINVAL if this memory is not a lab. */
export function readLayout(u32: Uint32Array): Layout {
  const base = CONTROL_BASE >>> 2;
  if (u32.byteLength < CONTROL_BASE + CONTROL_BYTES) {
    throw new DmaBufError("EINVAL", "lab_attach",
      `memory of ${u32.byteLength} bytes is too small to be a dmabuf-lab arena`);
  }
  const magic = Atomics.load(u32, base + (CTL_MAGIC >>> 2));
  const version = u32[base + (CTL_VERSION >>> 2)];
  if (magic !== LAB_MAGIC || version !== LAB_LAYOUT_VERSION) {
    throw new DmaBufError("EINVAL", "lab_attach",
      `memory is not a dmabuf-lab arena (magic ${hex(magic)}, version ${version})`);
  }
  const layout = {} as Layout;
  for (const [key, word] of layoutWords) layout[key] = u32[base + (word >>> 2)];
  return layout;
}

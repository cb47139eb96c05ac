/*
 * The engine's ABI, mirrored from assembly/abi.ts (test/engine-abi.test.ts
 * checks that the two files agree). Offsets are u32 byte offsets into the
 * shared memory; every engine call returns 0 or a negative errno.
 */

export const STRATEGY_BULK = 0;
export const STRATEGY_SIMD = 1;
export const STRATEGY_WORDS = 2;
export const STRATEGY_BYTES = 3;
export const STRATEGY_REFERENCE = 4;
export const STRATEGY_AUTO = 5;

export const EFAULT = 14;
export const EINVAL = 22;

export const SG_DESC_DST = 0;
export const SG_DESC_SRC = 4;
export const SG_DESC_LEN = 8;
export const SG_DESC_SIZE = 12;

export const SG_SEG_ADDR = 0;
export const SG_SEG_LEN = 4;
export const SG_SEG_SIZE = 8;

export const AUTO_BUCKETS = 33;
export const AUTO_TABLE_SIZE = 2 * AUTO_BUCKETS;

export const XXH_LANES = 0;
export const XXH_TOTAL = 16;
export const XXH_LARGE = 20;
export const XXH_MEMSIZE = 24;
export const XXH_RESULT = 28;
export const XXH_MEM = 32;
export const XXH_STATE_SIZE = 48;

export const CACHE_LINE = 64;

/** The module's exports, as the build checks them and Engine calls them. */
export interface EngineExports {
  engine_init(dmaLo: number, dmaHi: number, autoTable: number, syncLo: number, syncHi: number, control: number): void;
  last_fault_index(): number;
  copy(strategy: number, dst: number, src: number, n: number): number;
  sg_copy(table: number, count: number, strategy: number): number;
  sg_gather(list: number, count: number, dst: number, strategy: number): number;
  sg_scatter(list: number, count: number, src: number, strategy: number): number;
  sg_checksum(list: number, count: number, state: number, seed: number): number;
  fill(dst: number, value: number, n: number): number;
  fence_signal(fence: number, error: number, timestampNs: number): number;
  fence_wait(fence: number, timeoutNs: bigint): number;
  fence_init(fence: number, timeline: number): number;
  resv_add_fence(resv: number, fence: number, usage: number): number;
  resv_reindex(resv: number): number;
  rw_fast(resv: number, fence: number, write: number, dst: number, src: number, n: number, token: number, timestampNs: number): number;
}

export const ENGINE_EXPORTS: readonly (keyof EngineExports)[] = [
  "engine_init", "last_fault_index", "copy", "sg_copy", "sg_gather", "sg_scatter", "sg_checksum", "fill",
  "fence_signal", "fence_wait", "fence_init", "resv_add_fence", "resv_reindex", "rw_fast",
];

export const FENCE_STATUS = 0;
export const FENCE_CLAIM = 4;
export const FENCE_ERROR = 8;
export const FENCE_WAITERS = 12;
export const FENCE_REFCOUNT = 16;
export const FENCE_KIND = 20;
export const FENCE_TIMELINE = 24;
export const FENCE_AUX = 28;
export const FENCE_CONTEXT = 32;
export const FENCE_SEQNO = 40;
export const FENCE_TIMESTAMP = 48;
export const FENCE_DEADLINE = 56;
export const FENCE_SIZE = 64;

export const FENCE_KIND_MASK = 0xff;
export const FENCE_KIND_PLAIN = 1;
export const FENCE_KIND_STUB = 2;
export const FENCE_KIND_ARRAY = 3;
export const FENCE_KIND_CHAIN = 4;

export const SIGNAL_ALREADY = 1;
export const MAX_ERRNO = 4095;

export const CTL_ANY_WAITERS = 128;
export const CTL_ANY_EPOCH = 132;

export const RESV_LOCK = 0;
export const RESV_SLOTS = 32;
export const RESV_COUNT = 36;
export const RESV_CAPACITY = 40;
export const RESV_GENERATION = 44;
export const RESV_REFCOUNT = 48;
export const RESV_CURSOR = 52;
export const RESV_SIZE = 64;
export const SLOT_FENCE = 0;
export const SLOT_USAGE = 4;
export const SLOT_SIZE = 8;
export const BUCKET_SIZE = 4;
export const BUCKETS_PER_SLOT = 2;
export const MUTEX_STATE = 0;
export const MUTEX_ACQUISITIONS = 4;
export const MUTEX_OWNER = 24;

export const DMA_RESV_USAGE_KERNEL = 0;
export const DMA_RESV_USAGE_WRITE = 1;
export const DMA_RESV_USAGE_READ = 2;
export const DMA_RESV_USAGE_BOOKKEEP = 3;

export const ENOSPC = 28;

export const TL_REFCOUNT = 0;
export const TL_CONTEXT = 56;
export const TL_NEXT_SEQNO = 64;
export const TL_SIZE = 136;

export const RW_FAST_FALLBACK = -1;

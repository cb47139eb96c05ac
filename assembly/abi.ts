/*
 * The engine's ABI: numbers shared with TypeScript (src/engine/abi.ts mirrors
 * this file word for word; a test checks that the two agree).
 *
 * Every function returns 0 or a negative errno. Offsets are u32 byte offsets
 * into the one shared memory. Nothing here allocates: tables and state blocks
 * are laid out by TypeScript inside the arena and passed in by offset.
 */

/** Copy strategies, selected per call (AUTO chooses per segment). */
export const STRATEGY_BULK: i32 = 0;
export const STRATEGY_SIMD: i32 = 1;
export const STRATEGY_WORDS: i32 = 2;
export const STRATEGY_BYTES: i32 = 3;
export const STRATEGY_REFERENCE: i32 = 4;
export const STRATEGY_AUTO: i32 = 5;

/** Errors, as negative errno values (Linux numbering). */
export const EFAULT: i32 = 14;
export const EINVAL: i32 = 22;

/** A copy descriptor: 12 bytes, three u32 words. */
export const SG_DESC_DST: usize = 0;
export const SG_DESC_SRC: usize = 4;
export const SG_DESC_LEN: usize = 8;
export const SG_DESC_SIZE: usize = 12;

/** A segment-list entry (gather, scatter, checksum): 8 bytes, two u32 words. */
export const SG_SEG_ADDR: usize = 0;
export const SG_SEG_LEN: usize = 4;
export const SG_SEG_SIZE: usize = 8;

/**
 * The AUTO calibration table: AUTO_BUCKETS entries for 64-bit-aligned
 * segments, then AUTO_BUCKETS for the others, one strategy byte each.
 * Bucket b holds lengths in [2^(b-1), 2^b): b = 32 - clz(len).
 */
export const AUTO_BUCKETS: usize = 33;
export const AUTO_TABLE_SIZE: usize = 2 * AUTO_BUCKETS;

/** A streaming xxHash32 state block, 48 bytes, 16-byte aligned. */
export const XXH_LANES: usize = 0;     // v1..v4, four u32 (one v128)
export const XXH_TOTAL: usize = 16;    // total length hashed, u32 (mod 2^32)
export const XXH_LARGE: usize = 20;    // 1 once 16 or more bytes were hashed
export const XXH_MEMSIZE: usize = 24;  // bytes pending in XXH_MEM (0..15)
export const XXH_RESULT: usize = 28;   // the digest of the last sg_checksum
export const XXH_MEM: usize = 32;      // 16 bytes of pending input
export const XXH_STATE_SIZE: usize = 48;

/** Cache line size of the coherence model and of the SIMD strategy. */
export const CACHE_LINE: usize = 64;

/**
 * A fence record: 64 bytes in the sync heap (src/sync/fence.ts owns the
 * rest of the contract). STATUS is the futex word and the publish point:
 * 0 pending, 1 signalled, -errno signalled with an error.
 */
export const FENCE_STATUS: usize = 0;     // i32
export const FENCE_CLAIM: usize = 4;      // i32: set by the one signaller that wins
export const FENCE_ERROR: usize = 8;      // i32: error to signal with (0 none)
export const FENCE_WAITERS: usize = 12;   // i32: threads waiting on STATUS
export const FENCE_REFCOUNT: usize = 16;  // i32
export const FENCE_KIND: usize = 20;      // u32: FENCE_KIND_* | flags << 8
export const FENCE_TIMELINE: usize = 24;  // u32: timeline record, 0 for built-in names
export const FENCE_AUX: usize = 28;       // u32: kind-specific (container block, next pt)
export const FENCE_CONTEXT: usize = 32;   // u64
export const FENCE_SEQNO: usize = 40;     // u64
export const FENCE_TIMESTAMP: usize = 48; // f64: ns on the lab clock, set before STATUS
export const FENCE_DEADLINE: usize = 56;  // f64: ns on the lab clock, 0 = none (a hint)
export const FENCE_SIZE: usize = 64;

export const FENCE_KIND_MASK: u32 = 0xff;
export const FENCE_KIND_PLAIN: u32 = 1;
export const FENCE_KIND_STUB: u32 = 2;
export const FENCE_KIND_ARRAY: u32 = 3;
export const FENCE_KIND_CHAIN: u32 = 4;

/** fence_signal: 0 signalled now, SIGNAL_ALREADY if it was signalled before. */
export const SIGNAL_ALREADY: i32 = 1;
export const MAX_ERRNO: i32 = 4095;

/** Control-block words of the sync layer (offsets from the control block). */
export const CTL_ANY_WAITERS: usize = 128; // i32: threads in a wait-for-any
export const CTL_ANY_EPOCH: usize = 132;   // i32: bumped by every signal while any-waiters exist

/**
 * A reservation object (src/sync/resv.ts owns the rest of the contract):
 * the words the engine reads and writes while it holds the object's lock.
 * RESV_LOCK is a Mutex (src/memory/mutex.ts); MUTEX_* are its words.
 */
export const RESV_LOCK: usize = 0;
export const RESV_SLOTS: usize = 32;      // u32: the slot array {fence u32, usage u32}[capacity], then the context index
export const RESV_COUNT: usize = 36;      // u32
export const RESV_CAPACITY: usize = 40;   // u32, a power of two
export const RESV_GENERATION: usize = 44; // u32: bumped whenever the slot array is replaced
export const RESV_REFCOUNT: usize = 48;   // i32
export const RESV_CURSOR: usize = 52;     // u32: the slot the next add looks at for a signalled fence
export const RESV_SIZE: usize = 64;
export const SLOT_FENCE: usize = 0;
export const SLOT_USAGE: usize = 4;
export const SLOT_SIZE: usize = 8;
/** The context index after the slots: BUCKETS_PER_SLOT u32 buckets per slot, each a slot index + 1 (0 empty). */
export const BUCKET_SIZE: usize = 4;
export const BUCKETS_PER_SLOT: usize = 2;
export const MUTEX_STATE: usize = 0;        // i32: 0 unlocked, 1 locked, 2 locked with waiters
export const MUTEX_ACQUISITIONS: usize = 4; // u32, by the holder
export const MUTEX_OWNER: usize = 24;       // i32: the holder's thread token

export const DMA_RESV_USAGE_KERNEL: u32 = 0;
export const DMA_RESV_USAGE_WRITE: u32 = 1;
export const DMA_RESV_USAGE_READ: u32 = 2;
export const DMA_RESV_USAGE_BOOKKEEP: u32 = 3;

/** resv_add_fence: no slot was reserved (the caller reports ENOSPC). */
export const ENOSPC: i32 = 28;

/**
 * A timeline record (src/sync/timeline.ts owns the rest): the words a new
 * fence of the timeline takes (fence_init).
 */
export const TL_REFCOUNT: usize = 0;    // i32: the timeline's references, one per fence on it
export const TL_CONTEXT: usize = 56;    // u64
export const TL_NEXT_SEQNO: usize = 64; // u64, taken by an atomic add
export const TL_SIZE: usize = 136;

/** rw_fast: the call is not the common case; nothing changed, take the full path. */
export const RW_FAST_FALLBACK: i32 = -1;

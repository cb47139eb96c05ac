/*
 * xxHash32, streaming, over a state block that the caller lays out in the
 * arena (XXH_* in abi.ts), so that the engine keeps no state of its own.
 * The four accumulator lanes are one v128: each 16-byte stripe costs one
 * load, a multiply-add, a rotate and a multiply. The digest equals the
 * reference XXH32 of the concatenated input, whatever the segmentation.
 */
import {
  EFAULT, EINVAL, SG_SEG_ADDR, SG_SEG_LEN, SG_SEG_SIZE, XXH_LANES, XXH_LARGE, XXH_MEM, XXH_MEMSIZE,
  XXH_RESULT, XXH_TOTAL,
} from "./abi";
import { clearFault, fault, inBounds, tableInBounds } from "./bounds";

const P1: u32 = 0x9E3779B1;
const P2: u32 = 0x85EBCA77;
const P3: u32 = 0xC2B2AE3D;
const P4: u32 = 0x27D4EB2F;
const P5: u32 = 0x165667B1;

// @ts-ignore: decorator
@inline function round(acc: v128, input: v128): v128 {
  acc = i32x4.add(acc, i32x4.mul(input, i32x4.splat(P2)));
  acc = v128.or(i32x4.shl(acc, 13), i32x4.shr_u(acc, 19));
  return i32x4.mul(acc, i32x4.splat(P1));
}

export function xxhReset(state: usize, seed: u32): void {
  v128.store(state + XXH_LANES, i32x4(seed + P1 + P2, seed + P2, seed, seed - P1));
  store<u32>(state + XXH_TOTAL, 0);
  store<u32>(state + XXH_LARGE, 0);
  store<u32>(state + XXH_MEMSIZE, 0);
}

export function xxhUpdate(state: usize, p: usize, n: usize): void {
  store<u32>(state + XXH_TOTAL, load<u32>(state + XXH_TOTAL) + <u32>n);
  if (n >= 16) store<u32>(state + XXH_LARGE, 1);
  let memsize = <usize>load<u32>(state + XXH_MEMSIZE);
  const mem = state + XXH_MEM;
  if (memsize + n < 16) {
    memory.copy(mem + memsize, p, n);
    store<u32>(state + XXH_MEMSIZE, <u32>(memsize + n));
    return;
  }
  let acc = v128.load(state + XXH_LANES);
  if (memsize != 0) {
    const fillup: usize = 16 - memsize;
    memory.copy(mem + memsize, p, fillup);
    acc = round(acc, v128.load(mem));
    p += fillup;
    n -= fillup;
    memsize = 0;
    store<u32>(state + XXH_LARGE, 1);
  }
  const end = p + (n & ~15);
  while (p < end) {
    acc = round(acc, v128.load(p));
    p += 16;
  }
  n &= 15;
  memory.copy(mem, p, n);
  store<u32>(state + XXH_MEMSIZE, <u32>n);
  v128.store(state + XXH_LANES, acc);
}

export function xxhDigest(state: usize): u32 {
  const acc = v128.load(state + XXH_LANES);
  let h: u32;
  if (load<u32>(state + XXH_LARGE) != 0) {
    h = rotl<u32>(i32x4.extract_lane(acc, 0), 1) + rotl<u32>(i32x4.extract_lane(acc, 1), 7)
      + rotl<u32>(i32x4.extract_lane(acc, 2), 12) + rotl<u32>(i32x4.extract_lane(acc, 3), 18);
  } else {
    h = <u32>i32x4.extract_lane(acc, 2) + P5; // lane 2 still holds the seed
  }
  h += load<u32>(state + XXH_TOTAL);
  let p = state + XXH_MEM;
  const end = p + <usize>load<u32>(state + XXH_MEMSIZE);
  while (p + 4 <= end) {
    h = rotl<u32>(h + load<u32>(p) * P3, 17) * P4;
    p += 4;
  }
  while (p < end) {
    h = rotl<u32>(h + <u32>load<u8>(p) * P5, 11) * P1;
    p++;
  }
  h ^= h >> 15;
  h *= P2;
  h ^= h >> 13;
  h *= P3;
  h ^= h >> 16;
  return h;
}

/**
 * The digest of the concatenation of a segment list, stored at
 * state + XXH_RESULT. Validated first, like every list (EFAULT).
 */
export function sgChecksum(list: usize, count: u32, state: usize, seed: u32): i32 {
  clearFault();
  if (!tableInBounds(list, count, SG_SEG_SIZE) || !inBounds(state, XXH_MEM + 16)) return fault(-1, EFAULT);
  if ((state & 15) != 0) return fault(-1, EINVAL);
  for (let i: u32 = 0, p = list; i < count; i++, p += SG_SEG_SIZE) {
    if (!inBounds(<usize>load<u32>(p + SG_SEG_ADDR), <usize>load<u32>(p + SG_SEG_LEN))) return fault(<i32>i, EFAULT);
  }
  xxhReset(state, seed);
  for (let i: u32 = 0, p = list; i < count; i++, p += SG_SEG_SIZE) {
    xxhUpdate(state, <usize>load<u32>(p + SG_SEG_ADDR), <usize>load<u32>(p + SG_SEG_LEN));
  }
  store<u32>(state + XXH_RESULT, xxhDigest(state));
  return 0;
}

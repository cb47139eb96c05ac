/*
 * Scatter-gather in one call. A descriptor table or a segment list lives in
 * the arena; the whole table is validated before the first byte moves, then
 * walked here, so JavaScript does no work per segment.
 *
 * Validation, in order, for every entry: the table itself must be inside the
 * DMA range (EFAULT, index -1); each range must be inside the DMA range and
 * must not wrap around 2^32 (EFAULT); with the reference strategy a segment
 * whose destination starts inside its own source is refused (EINVAL). On
 * error the index of the first bad entry is kept for lastFaultIndex().
 *
 * Segments are executed in table order: a later segment sees what an earlier
 * one wrote. Within a segment, overlap follows the strategy (see copy.ts).
 */
import {
  AUTO_BUCKETS, EFAULT, EINVAL, SG_DESC_DST, SG_DESC_LEN, SG_DESC_SIZE, SG_DESC_SRC,
  SG_SEG_ADDR, SG_SEG_LEN, SG_SEG_SIZE, STRATEGY_AUTO, STRATEGY_REFERENCE,
} from "./abi";
import { autoTableBase, clearFault, fault, inBounds, tableInBounds } from "./bounds";
import { copySmall, copyWith, mustCopyBackward } from "./copy";

/**
 * AUTO: the strategy for one segment, from the calibration table in the
 * arena. Segments of up to 64 bytes always take the inline SIMD path.
 */
// @ts-ignore: decorator
@inline function autoStrategy(dst: usize, src: usize, n: usize): i32 {
  const bucket = <usize>(32 - clz(<u32>n));
  const misaligned = ((dst | src) & 7) != 0 ? AUTO_BUCKETS : 0;
  return <i32>load<u8>(autoTableBase() + misaligned + bucket);
}

// @ts-ignore: decorator
@inline function copyOne(strategy: i32, dst: usize, src: usize, n: usize): void {
  if (strategy == STRATEGY_AUTO) {
    if (n <= 64) copySmall(dst, src, n);
    else copyWith(autoStrategy(dst, src, n), dst, src, n);
  } else {
    copyWith(strategy, dst, src, n);
  }
}

function checkStrategy(strategy: i32): bool {
  return strategy >= 0 && strategy <= STRATEGY_AUTO;
}

/** One contiguous copy, validated like a one-entry table. */
export function copy(strategy: i32, dst: usize, src: usize, n: usize): i32 {
  clearFault();
  if (!checkStrategy(strategy)) return fault(-1, EINVAL);
  if (!inBounds(dst, n) || !inBounds(src, n)) return fault(0, EFAULT);
  if (strategy == STRATEGY_REFERENCE && mustCopyBackward(dst, src, n)) return fault(0, EINVAL);
  copyOne(strategy, dst, src, n);
  return 0;
}

/** Copies count descriptors {dst, src, len} from the table at `table`. */
export function sgCopy(table: usize, count: u32, strategy: i32): i32 {
  clearFault();
  if (!checkStrategy(strategy)) return fault(-1, EINVAL);
  if (!tableInBounds(table, count, SG_DESC_SIZE)) return fault(-1, EFAULT);
  for (let i: u32 = 0, p = table; i < count; i++, p += SG_DESC_SIZE) {
    const dst = <usize>load<u32>(p + SG_DESC_DST);
    const src = <usize>load<u32>(p + SG_DESC_SRC);
    const n = <usize>load<u32>(p + SG_DESC_LEN);
    if (!inBounds(dst, n) || !inBounds(src, n)) return fault(<i32>i, EFAULT);
    if (strategy == STRATEGY_REFERENCE && mustCopyBackward(dst, src, n)) return fault(<i32>i, EINVAL);
  }
  for (let i: u32 = 0, p = table; i < count; i++, p += SG_DESC_SIZE) {
    copyOne(strategy, <usize>load<u32>(p + SG_DESC_DST), <usize>load<u32>(p + SG_DESC_SRC),
      <usize>load<u32>(p + SG_DESC_LEN));
  }
  return 0;
}

/**
 * Validates a segment list and the linear range it maps to; returns the
 * total length, or a negative errno. The linear side is [linear, linear+sum).
 */
function checkSegments(list: usize, count: u32, linear: usize, toLinear: bool, strategy: i32): i64 {
  if (!checkStrategy(strategy)) return fault(-1, EINVAL);
  if (!tableInBounds(list, count, SG_SEG_SIZE)) return fault(-1, EFAULT);
  let total: u64 = 0;
  for (let i: u32 = 0, p = list; i < count; i++, p += SG_SEG_SIZE) {
    const addr = <usize>load<u32>(p + SG_SEG_ADDR);
    const n = <usize>load<u32>(p + SG_SEG_LEN);
    if (!inBounds(addr, n)) return fault(<i32>i, EFAULT);
    total += <u64>n;
    if (total > 0xffff_ffff) return fault(<i32>i, EFAULT);
    const lin = linear + <usize>(total - n);
    if (strategy == STRATEGY_REFERENCE) {
      const backward = toLinear ? mustCopyBackward(lin, addr, n) : mustCopyBackward(addr, lin, n);
      if (backward) return fault(<i32>i, EINVAL);
    }
  }
  if (!inBounds(linear, <usize>total)) return fault(-1, EFAULT);
  return <i64>total;
}

/** Gather: the segments of a list, in order, into [dst, dst + total). */
export function sgGather(list: usize, count: u32, dst: usize, strategy: i32): i32 {
  clearFault();
  const total = checkSegments(list, count, dst, true, strategy);
  if (total < 0) return <i32>total;
  let d = dst;
  for (let i: u32 = 0, p = list; i < count; i++, p += SG_SEG_SIZE) {
    const n = <usize>load<u32>(p + SG_SEG_LEN);
    copyOne(strategy, d, <usize>load<u32>(p + SG_SEG_ADDR), n);
    d += n;
  }
  return 0;
}

/** Scatter: [src, src + total) into the segments of a list, in order. */
export function sgScatter(list: usize, count: u32, src: usize, strategy: i32): i32 {
  clearFault();
  const total = checkSegments(list, count, src, false, strategy);
  if (total < 0) return <i32>total;
  let s = src;
  for (let i: u32 = 0, p = list; i < count; i++, p += SG_SEG_SIZE) {
    const n = <usize>load<u32>(p + SG_SEG_LEN);
    copyOne(strategy, <usize>load<u32>(p + SG_SEG_ADDR), s, n);
    s += n;
  }
  return 0;
}

/** Fills [dst, dst + n) with a byte value. */
export function fill(dst: usize, value: u8, n: usize): i32 {
  clearFault();
  if (!inBounds(dst, n)) return fault(0, EFAULT);
  memory.fill(dst, value, n);
  return 0;
}


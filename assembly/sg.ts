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
import { autoTableBase, clearFault, fault, inBounds, spanInBounds, tableInBounds } from "./bounds";
import { copyMedium, copySmall, copyWith, mustCopyBackward } from "./copy";

/**
 * AUTO: the strategy for one segment, from the calibration table in the
 * arena. Segments of up to 256 bytes always take the inline SIMD paths
 * (copySmall up to 64 bytes, copyMedium above), whatever the table says.
 */
// @ts-ignore: decorator
@inline function autoStrategy(dst: usize, src: usize, n: usize): i32 {
  const bucket = <usize>(32 - clz(<u32>n));
  const misaligned = ((dst | src) & 7) != 0 ? AUTO_BUCKETS : 0;
  return <i32>load<u8>(autoTableBase() + misaligned + bucket);
}

// @ts-ignore: decorator
@inline export function copyOne(strategy: i32, dst: usize, src: usize, n: usize): void {
  if (strategy == STRATEGY_AUTO) {
    if (n <= 64) copySmall(dst, src, n);
    else if (n <= 256) copyMedium(dst, src, n);
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

/**
 * The fast validation pass of a descriptor table: branch-free, it keeps the
 * lowest start and the highest end of all ranges and answers whether every
 * range is in bounds; it cannot say which one is not (the exact pass in
 * sgCopy does, and runs only when this one fails). Four descriptors at a
 * time as i32x4 lanes: per lane, start = min(dst, src), end = max(dst, src)
 * + len, and an end below max(dst, src) means that range wraps around 2^32
 * (it then counts as an end beyond 2^32, i.e. out of bounds). The last
 * count % 4 descriptors take the same steps in scalar code.
 */
function descriptorsInBounds(table: usize, count: u32): bool {
  let lows = i32x4.splat(-1);
  let highs = i32x4.splat(0);
  let wraps = i32x4.splat(0);
  let i: u32 = 0;
  let p = table;
  for (; i + 4 <= count; i += 4, p += 4 * SG_DESC_SIZE) {
    const a = v128.load(p);     // dst0 src0 len0 dst1
    const b = v128.load(p, 16); // src1 len1 dst2 src2
    const c = v128.load(p, 32); // len2 dst3 src3 len3
    const dst = v128.shuffle<i32>(v128.shuffle<i32>(a, b, 0, 3, 6, 6), c, 0, 1, 2, 5);
    const src = v128.shuffle<i32>(v128.shuffle<i32>(a, b, 1, 4, 7, 7), c, 0, 1, 2, 6);
    const len = v128.shuffle<i32>(v128.shuffle<i32>(a, b, 2, 5, 5, 5), c, 0, 1, 4, 7);
    const top = i32x4.max_u(dst, src);
    const end = i32x4.add(top, len);
    wraps = v128.or(wraps, i32x4.lt_u(end, top));
    lows = i32x4.min_u(lows, i32x4.min_u(dst, src));
    highs = i32x4.max_u(highs, end);
  }
  let lowest: usize = min(
    min(<u32>i32x4.extract_lane(lows, 0), <u32>i32x4.extract_lane(lows, 1)),
    min(<u32>i32x4.extract_lane(lows, 2), <u32>i32x4.extract_lane(lows, 3)));
  let highest: u64 = v128.any_true(wraps) ? 0x1_0000_0000 : <u64>max(
    max(<u32>i32x4.extract_lane(highs, 0), <u32>i32x4.extract_lane(highs, 1)),
    max(<u32>i32x4.extract_lane(highs, 2), <u32>i32x4.extract_lane(highs, 3)));
  for (; i < count; i++, p += SG_DESC_SIZE) {
    const dst = <usize>load<u32>(p + SG_DESC_DST);
    const src = <usize>load<u32>(p + SG_DESC_SRC);
    const n = <u64>load<u32>(p + SG_DESC_LEN);
    const start = dst < src ? dst : src;
    const end = (dst > src ? <u64>dst : <u64>src) + n;
    lowest = start < lowest ? start : lowest;
    highest = end > highest ? end : highest;
  }
  return spanInBounds(lowest, highest);
}

/** Copies count descriptors {dst, src, len} from the table at `table`. */
export function sgCopy(table: usize, count: u32, strategy: i32): i32 {
  clearFault();
  if (!checkStrategy(strategy)) return fault(-1, EINVAL);
  if (!tableInBounds(table, count, SG_DESC_SIZE)) return fault(-1, EFAULT);
  // The exact pass names the first bad descriptor; it runs when the fast
  // pass finds one, and always for reference (its overlap check).
  if (strategy == STRATEGY_REFERENCE || !descriptorsInBounds(table, count)) {
    for (let i: u32 = 0, p = table; i < count; i++, p += SG_DESC_SIZE) {
      const dst = <usize>load<u32>(p + SG_DESC_DST);
      const src = <usize>load<u32>(p + SG_DESC_SRC);
      const n = <usize>load<u32>(p + SG_DESC_LEN);
      if (!inBounds(dst, n) || !inBounds(src, n)) return fault(<i32>i, EFAULT);
      if (strategy == STRATEGY_REFERENCE && mustCopyBackward(dst, src, n)) return fault(<i32>i, EINVAL);
    }
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


/*
 * Arena bounds: the range of the shared memory that DMA may touch.
 *
 * The globals are per instance, that is per thread: every thread calls
 * engine_init() once after instantiating. A range is valid when it lies
 * inside [dmaLo, dmaHi) and does not wrap around 2^32. The control block and
 * the synchronization region below dmaLo are never valid copy targets.
 */
let dmaLo: usize = 0;
let dmaHi: usize = 0;
let autoTable: usize = 0;
let faultIndex: i32 = -1;

export function setBounds(lo: usize, hi: usize, table: usize): void {
  dmaLo = lo;
  dmaHi = hi;
  autoTable = table;
}

export function autoTableBase(): usize {
  return autoTable;
}

/** True when [addr, addr + len) is inside the DMA range (len 0 included). */
// @ts-ignore: decorator
@inline export function inBounds(addr: usize, len: usize): bool {
  const end = addr + len;
  return end >= addr && addr >= dmaLo && end <= dmaHi;
}

/**
 * True when every range of a table is inside the DMA range, given the
 * table's lowest start and highest end. The end is computed in 64 bits, so a
 * range that wraps around 2^32 shows as an end above dmaHi: the answer is
 * the conjunction of inBounds() over the table's ranges.
 */
// @ts-ignore: decorator
@inline export function spanInBounds(lowest: usize, highestEnd: u64): bool {
  return lowest >= dmaLo && highestEnd <= <u64>dmaHi;
}

/** Records which descriptor failed validation, for the error message. */
export function fault(index: i32, errno: i32): i32 {
  faultIndex = index;
  return -errno;
}

export function clearFault(): void {
  faultIndex = -1;
}

export function lastFaultIndex(): i32 {
  return faultIndex;
}

/** Validates a table of count entries of size bytes each (the table itself). */
export function tableInBounds(table: usize, count: u32, size: usize): bool {
  const bytes = <u64>count * <u64>size;
  return bytes <= 0xffff_ffff && inBounds(table, <usize>bytes);
}

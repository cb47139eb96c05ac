/*
 * Copy strategies. Each moves n bytes from src to dst inside the shared
 * memory; bounds were checked by the caller (sg.ts).
 *
 *  bulk       memory.copy, i.e. the host's memmove. Wins everywhere above a
 *             few hundred bytes: nothing written in wasm beats native memcpy.
 *  simd       v128: a segment is split into head, whole 64-byte lines of the
 *             destination and tail; each line moves as four v128 loads then
 *             four stores. Heads and tails of up to 64 bytes load everything
 *             before storing anything, which also makes them overlap-safe.
 *             Wins for tiny segments, where memory.copy's call costs more
 *             than the copy.
 *  words      a u64 loop with byte heads and tails; the regime of a plain
 *             word loop, about 22 GB/s here whatever the size.
 *  bytes      one byte per iteration; the floor every other strategy beats.
 *  reference  musl's memcpy: align the source, copy u32 words, and merge
 *             shifted words when the destination is misaligned. Readable,
 *             forward only.
 *
 * Overlap: bulk, simd, words and bytes have memmove semantics (they copy
 * backward when dst lies inside the source). reference copies forward only,
 * so an overlapping segment with dst > src is refused (EINVAL) by sg.ts
 * before any byte moves.
 */
import { CACHE_LINE, STRATEGY_BULK, STRATEGY_SIMD, STRATEGY_WORDS, STRATEGY_BYTES } from "./abi";
import { lineHead, lineBody } from "./lines";

/** Copies n <= 64 bytes, loading everything before storing (overlap-safe). */
// @ts-ignore: decorator
@inline export function copySmall(dst: usize, src: usize, n: usize): void {
  if (n >= 32) {
    const a = v128.load(src);
    const b = v128.load(src, 16);
    const c = v128.load(src + n - 32);
    const d = v128.load(src + n - 16);
    v128.store(dst, a);
    v128.store(dst, b, 16);
    v128.store(dst + n - 32, c);
    v128.store(dst + n - 16, d);
  } else if (n >= 16) {
    const a = v128.load(src);
    const b = v128.load(src + n - 16);
    v128.store(dst, a);
    v128.store(dst + n - 16, b);
  } else if (n >= 8) {
    const a = load<u64>(src);
    const b = load<u64>(src + n - 8);
    store<u64>(dst, a);
    store<u64>(dst + n - 8, b);
  } else if (n >= 4) {
    const a = load<u32>(src);
    const b = load<u32>(src + n - 4);
    store<u32>(dst, a);
    store<u32>(dst + n - 4, b);
  } else if (n >= 2) {
    const a = load<u16>(src);
    const b = load<u16>(src + n - 2);
    store<u16>(dst, a);
    store<u16>(dst + n - 2, b);
  } else if (n == 1) {
    store<u8>(dst, load<u8>(src));
  }
}


/** True when a forward copy would overwrite source bytes not yet read. */
// @ts-ignore: decorator
@inline export function mustCopyBackward(dst: usize, src: usize, n: usize): bool {
  return dst > src && dst - src < n;
}

/** One 64-byte line: four loads, then four stores. */
// @ts-ignore: decorator
@inline function copyLine(dst: usize, src: usize): void {
  const a = v128.load(src);
  const b = v128.load(src, 16);
  const c = v128.load(src, 32);
  const d = v128.load(src, 48);
  v128.store(dst, a);
  v128.store(dst, b, 16);
  v128.store(dst, c, 32);
  v128.store(dst, d, 48);
}

/**
 * Copies 64 < n <= 256 bytes for AUTO, where memory.copy's call costs more
 * than the copy: whole lines from the start and one line ending at n (the
 * last two may overlap each other, which is harmless when source and
 * destination do not). Overlapping source and destination go to
 * memory.copy, so the result is always memmove's.
 */
// @ts-ignore: decorator
@inline export function copyMedium(dst: usize, src: usize, n: usize): void {
  if (dst - src < n || src - dst < n) {
    memory.copy(dst, src, n);
    return;
  }
  copyLine(dst, src);
  if (n > 128) {
    copyLine(dst + 64, src + 64);
    if (n > 192) copyLine(dst + 128, src + 128);
  }
  copyLine(dst + n - 64, src + n - 64);
}

export function copySimd(dst: usize, src: usize, n: usize): void {
  if (n <= CACHE_LINE) {
    copySmall(dst, src, n);
    return;
  }
  const head = lineHead(dst, n);
  const body = lineBody(n, head);
  const tail = n - head - body;
  if (!mustCopyBackward(dst, src, n)) {
    copySmall(dst, src, head);
    let d = dst + head;
    let s = src + head;
    const end = d + body;
    while (d < end) {
      copyLine(d, s);
      d += CACHE_LINE;
      s += CACHE_LINE;
    }
    copySmall(d, s, tail);
  } else {
    copySmall(dst + head + body, src + head + body, tail);
    let d = dst + head + body;
    let s = src + head + body;
    const start = dst + head;
    while (d > start) {
      d -= CACHE_LINE;
      s -= CACHE_LINE;
      copyLine(d, s);
    }
    copySmall(dst, src, head);
  }
}

export function copyWords(dst: usize, src: usize, n: usize): void {
  if (!mustCopyBackward(dst, src, n)) {
    let i: usize = 0;
    const head: usize = (8 - (dst & 7)) & 7;
    while (i < head && i < n) {
      store<u8>(dst + i, load<u8>(src + i));
      i++;
    }
    while (i + 8 <= n) {
      store<u64>(dst + i, load<u64>(src + i));
      i += 8;
    }
    while (i < n) {
      store<u8>(dst + i, load<u8>(src + i));
      i++;
    }
  } else {
    let i = n;
    const tail = (dst + n) & 7;
    while (i > n - tail && i > 0) {
      i--;
      store<u8>(dst + i, load<u8>(src + i));
    }
    while (i >= 8) {
      i -= 8;
      store<u64>(dst + i, load<u64>(src + i));
    }
    while (i > 0) {
      i--;
      store<u8>(dst + i, load<u8>(src + i));
    }
  }
}

export function copyBytes(dst: usize, src: usize, n: usize): void {
  if (!mustCopyBackward(dst, src, n)) {
    for (let i: usize = 0; i < n; i++) store<u8>(dst + i, load<u8>(src + i));
  } else {
    for (let i = n; i > 0; i--) store<u8>(dst + i - 1, load<u8>(src + i - 1));
  }
}

/** musl's memcpy, little-endian. Forward only (see the module comment). */
export function copyReference(dst: usize, src: usize, n: usize): void {
  let d = dst;
  let s = src;
  // Align the source to 4 bytes.
  while (n != 0 && (s & 3) != 0) {
    store<u8>(d++, load<u8>(s++));
    n--;
  }
  if ((d & 3) == 0) {
    // Both aligned: 16 bytes per iteration as four u32 words.
    while (n >= 16) {
      store<u32>(d, load<u32>(s));
      store<u32>(d + 4, load<u32>(s + 4));
      store<u32>(d + 8, load<u32>(s + 8));
      store<u32>(d + 12, load<u32>(s + 12));
      s += 16; d += 16; n -= 16;
    }
  } else if (n >= 32) {
    // Destination misaligned by k bytes: copy 4-k bytes to align it, then
    // build each destination word from two source words shifted by 8k bits.
    const k = d & 3;
    const lead: usize = 4 - k;
    const rs = <u32>(lead << 3); // right shift of the older word
    const ls = 32 - rs;         // left shift of the newer word
    let w = load<u32>(s);
    for (let i: usize = 0; i < lead; i++) store<u8>(d++, load<u8>(s++));
    n -= lead;
    // Each iteration reads source words at s+k .. s+k+15 (k = 4 - lead),
    // so n must exceed 16 + k.
    while (n >= 16 + k + 1) {
      let x = load<u32>(s + k);
      store<u32>(d, (w >> rs) | (x << ls));
      w = load<u32>(s + k + 4);
      store<u32>(d + 4, (x >> rs) | (w << ls));
      x = load<u32>(s + k + 8);
      store<u32>(d + 8, (w >> rs) | (x << ls));
      w = load<u32>(s + k + 12);
      store<u32>(d + 12, (x >> rs) | (w << ls));
      s += 16; d += 16; n -= 16;
    }
  }
  // The tail, byte by byte.
  while (n != 0) {
    store<u8>(d++, load<u8>(s++));
    n--;
  }
}

/** Dispatches one segment to a fixed strategy (never AUTO or REFERENCE). */
// @ts-ignore: decorator
@inline export function copyWith(strategy: i32, dst: usize, src: usize, n: usize): void {
  if (strategy == STRATEGY_BULK) memory.copy(dst, src, n);
  else if (strategy == STRATEGY_SIMD) copySimd(dst, src, n);
  else if (strategy == STRATEGY_WORDS) copyWords(dst, src, n);
  else if (strategy == STRATEGY_BYTES) copyBytes(dst, src, n);
  else copyReference(dst, src, n);
}

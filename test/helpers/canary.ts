/*
 * Canaries around a copy destination. guard() fills the whole guarded area
 * (destination plus `margin` bytes either side) with a pattern that no test
 * source uses; intact() checks that every byte outside the destination still
 * holds it, and names the first one that does not.
 */

export const CANARY = 0xa5;

export interface Guarded {
  /** Offset of the destination inside `area`. */
  at: number;
  len: number;
  area: Uint8Array;
}

export function guard(area: Uint8Array, at: number, len: number, margin = 64): Guarded {
  if (at < margin || at + len + margin > area.length) throw new RangeError("no room for the canaries");
  area.fill(CANARY, at - margin, at + len + margin);
  return { at, len, area };
}

/** Returns undefined when the canaries survived, else a description of the first casualty. */
export function brokenCanary(g: Guarded, margin = 64): string | undefined {
  const { area, at, len } = g;
  for (let i = at - margin; i < at; i++) if (area[i] !== CANARY) return `byte ${i - at} before the destination is ${area[i]}`;
  for (let i = at + len; i < at + len + margin; i++) if (area[i] !== CANARY) return `byte ${i - at - len} after the destination is ${area[i]}`;
  return undefined;
}

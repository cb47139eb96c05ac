/*
 * Byte-for-byte comparisons of engine results with their plain-JS models.
 * expectSame() throws (failing the test) with the first differing index
 * rather than letting vitest print two large arrays.
 */

/** The first index where a and b differ; the shorter length when one is a prefix of the other; -1 when equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

export function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

export function expectSame(got: Uint8Array, want: Uint8Array, where: string): void {
  if (!same(got, want)) throw new Error(`${where}: byte ${firstDifference(got, want)} differs from the model`);
}

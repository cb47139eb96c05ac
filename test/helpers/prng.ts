/*
 * A seeded PRNG for tests (mulberry32). The seed comes from DMABUF_SEED when
 * set, otherwise it is the fixed DEFAULT_SEED (a run is reproducible);
 * withSeed() prints it when the test fails,
 * so that `DMABUF_SEED=<seed> npx vitest run <file>` replays the failure.
 * shuffle() permutes an array in place with a PRNG (Fisher-Yates);
 * takeRandom() removes a random item from an array whose order does not matter.
 */

export interface Prng {
  readonly seed: number;
  /** A uniform float in [0, 1). */
  next(): number;
  /** A uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number;
  /** Fills a view with random bytes. */
  bytes(view: Uint8Array): Uint8Array;
  pick<T>(items: readonly T[]): T;
}

export function prng(seed: number): Prng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    bytes(view) {
      for (let i = 0; i < view.length; i++) view[i] = (next() * 256) | 0;
      return view;
    },
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

/** Shuffles items in place (Fisher-Yates, from the end) and returns them. */
export function shuffle<T>(rng: Prng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** Removes a random item (the last one takes its place) and returns it; items must not be empty. */
export function takeRandom<T>(rng: Prng, items: T[]): T {
  const i = rng.int(0, items.length - 1);
  const item = items[i];
  items[i] = items[items.length - 1];
  items.pop();
  return item;
}

/** The seed every random test runs by default, so that a run passes or fails the same way each time. */
export const DEFAULT_SEED = 0x5eed2026;

/**
 * The seed for this run: DMABUF_SEED when set (a number, or "random" for a
 * fresh one, printed by withSeed on failure), otherwise DEFAULT_SEED.
 */
export function testSeed(): number {
  const env = process.env.DMABUF_SEED;
  if (env === undefined || env === "") return DEFAULT_SEED;
  if (env === "random") return (Date.now() ^ (Math.random() * 0x100000000)) >>> 0;
  const n = Number(env);
  if (!Number.isInteger(n)) throw new Error(`DMABUF_SEED=${env} is not an integer (or "random")`);
  return n >>> 0;
}

/** Runs fn with a seeded PRNG; on failure, adds the seed to the error. */
export async function withSeed<T>(fn: (rng: Prng) => T | Promise<T>, seed = testSeed()): Promise<T> {
  try {
    return await fn(prng(seed));
  } catch (e) {
    const note = `(replay with DMABUF_SEED=${seed})`;
    if (e instanceof Error) e.message = `${e.message} ${note}`;
    console.error(`seeded test failed ${note}`);
    throw e;
  }
}

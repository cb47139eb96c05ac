/*
 * Bounded waits for tests. Each of these ends by itself: within() rejects
 * and until() throws when their time is up (naming what was awaited), and
 * clockPast() fails the test after about a thousand 1 ms sleeps. None of them
 * asserts anything about how long a wait took.
 */
import { expect } from "vitest";
import type { Lab } from "../../src/api/lab.js";

export const sleep = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Rejects when the promise has not settled within ms. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls cond (every few ms) until it holds; throws after ms. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(2);
  }
}

/** Waits until the lab clock has moved past `ns`, so that the next signal gets a later timestamp. */
export async function clockPast(lab: Lab, ns: number): Promise<void> {
  for (let i = 0; i < 1000 && lab.sync.clock.nowNs() <= ns; i++) await sleep(1);
  expect(lab.sync.clock.nowNs()).toBeGreaterThan(ns);
}

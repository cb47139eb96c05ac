/*
 * Expecting a DmaBufError. Every helper here calls fn once and fails the
 * test when fn returns (or its promise resolves) or throws anything but a
 * DmaBufError; that other error is kept as the failure's cause. The
 * DmaBufError itself is returned for further checks.
 */
import { expect } from "vitest";
import { DmaBufError } from "../../src/errno.js";

function notADmaBufError(e: unknown): Error {
  return new Error(`expected a DmaBufError, but the call threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
}

/** The DmaBufError fn throws. */
export function dmaBufError(fn: () => unknown): DmaBufError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaBufError) return e;
    throw notADmaBufError(e);
  }
  throw new Error("expected a DmaBufError, but the call returned");
}

/** The DmaBufError the promise fn returns rejects with (or fn throws). */
export async function dmaBufErrorAsync(fn: () => Promise<unknown>): Promise<DmaBufError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof DmaBufError) return e;
    throw notADmaBufError(e);
  }
  throw new Error("expected a DmaBufError, but the promise resolved");
}

/** The code ("EINVAL", ...) of the DmaBufError fn throws. */
export const codeOf = (fn: () => unknown): string => dmaBufError(fn).code;

/** Expects fn to throw the DmaBufError `code`. */
export function expectErrno(fn: () => unknown, code: string): DmaBufError {
  const e = dmaBufError(fn);
  expect(e.code, `expected ${code}`).toBe(code);
  return e;
}

/** Expects the promise fn returns to reject with the DmaBufError `code`. */
export async function expectErrnoAsync(fn: () => Promise<unknown>, code: string): Promise<DmaBufError> {
  const e = await dmaBufErrorAsync(fn);
  expect(e.code, `expected ${code}`).toBe(code);
  return e;
}

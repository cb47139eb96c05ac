/*
 * Argument checks: the one place where a value from the caller (any
 * JavaScript value: BigInt, null, undefined, a Symbol, a frozen object, a
 * Proxy) becomes a value the lab trusts, or a DmaBufError that names it.
 *
 * Contract: every function here either returns the checked value or throws a
 * DmaBufError (never a TypeError, also for values whose conversion to a
 * string throws) and has no other effect. The codes follow the kernel: a
 * bad number or flag EINVAL, a bad pointer (not an object, not an array of
 * views, a field that cannot be written back) EFAULT. Entry points call these
 * before they change or create anything.
 */
import { DmaBufError, type ErrnoCode } from "./errno.js";

/** A value as a message shows it; never throws (Symbols, BigInts, objects without toString). */
export function describe(value: unknown): string {
  switch (typeof value) {
    case "string": return `'${value.length > 40 ? `${value.slice(0, 40)}...` : value}'`;
    case "bigint": return `${value}n`;
    case "symbol": return value.description === undefined ? "Symbol()" : `Symbol(${value.description})`;
    case "function": return "a function";
    case "object":
      if (value === null) return "null";
      try {
        if (Array.isArray(value)) return `an array of ${value.length}`;
        if (ArrayBuffer.isView(value)) return `a ${value.constructor?.name ?? "view"} of ${value.byteLength} bytes`;
      } catch {
        // a revoked Proxy: fall through
      }
      return "an object";
    default: return String(value);
  }
}

export interface IntRange {
  min?: number;
  max?: number;
}

/** A safe integer within [min, max] (defaults: 0 and MAX_SAFE_INTEGER), else `code` (EINVAL). */
export function intArg(value: unknown, syscall: string, what: string, range: IntRange = {}, code: ErrnoCode = "EINVAL"): number {
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = range;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    const bounds = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new DmaBufError(code, syscall, `${what} ${describe(value)} must be an integer ${bounds}`);
  }
  return value;
}

/** A file position (loff_t): a non-negative safe integer. */
export const positionArg = (value: unknown, syscall: string): number => intArg(value, syscall, "position");

/** A 32-bit flags word (unsigned), EINVAL otherwise. */
export const flagsArg = (value: unknown, syscall: string, what = "flags"): number =>
  intArg(value, syscall, what, { max: 0xffffffff });

/**
 * A timeout in ms: undefined and null mean none (Infinity), as for every
 * call that takes one; otherwise a number >= 0 (Infinity allowed), else EINVAL.
 */
export function timeoutArg(value: unknown, syscall: string): number {
  if (value === undefined || value === null) return Infinity;
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
    throw new DmaBufError("EINVAL", syscall, `timeout ${describe(value)} ms must be a number >= 0`);
  }
  return value;
}

/** A finite timeout in ms (>= 0): the bound of a wait that must not be forever. */
export function finiteTimeoutArg(value: unknown, syscall: string, what = "timeout"): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new DmaBufError("EINVAL", syscall, `${what} ${describe(value)} ms must be a finite number >= 0`);
  }
  return value;
}

/** An argument structure (the kernel's user pointer): a non-null object, else EFAULT. */
export function objectArg<T extends object>(value: unknown, syscall: string, what = "the argument"): T {
  if (typeof value !== "object" || value === null) {
    throw new DmaBufError("EFAULT", syscall, `${what} ${describe(value)} is not an object`);
  }
  return value as T;
}

/**
 * An argument structure whose `fields` the call writes back (copy_to_user):
 * checked writable before the call creates anything, so a frozen argument
 * fails with nothing made (EFAULT).
 */
export function writableArg<T extends object>(value: unknown, syscall: string, fields: readonly string[]): T {
  const arg = objectArg<T>(value, syscall);
  for (const field of fields) {
    if (!canWrite(arg, field)) throw new DmaBufError("EFAULT", syscall, `the argument's field '${field}' cannot be written`);
  }
  return arg;
}

function canWrite(obj: object, field: string): boolean {
  try {
    for (let o: object | null = obj; o !== null; o = Object.getPrototypeOf(o)) {
      const d = Object.getOwnPropertyDescriptor(o, field);
      if (d !== undefined) return d.set !== undefined || (d.writable === true && (o === obj || Object.isExtensible(obj)));
    }
    return Object.isExtensible(obj);
  } catch {
    return false; // a Proxy whose traps throw
  }
}

/** A caller's memory: a Uint8Array, else `code` (EFAULT, a bad user pointer). */
export function bytesArg(value: unknown, syscall: string, what = "the buffer", code: ErrnoCode = "EFAULT"): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new DmaBufError(code, syscall, `${what} ${describe(value)} is not a Uint8Array`);
  return value;
}

/** An array of iovecs (each a Uint8Array), else EFAULT naming the bad one. */
export function iovArg(value: unknown, syscall: string): Uint8Array[] {
  if (!Array.isArray(value)) throw new DmaBufError("EFAULT", syscall, `the iovecs ${describe(value)} are not an array of Uint8Array`);
  for (let i = 0; i < value.length; i++) bytesArg(value[i], syscall, `iovec ${i}`);
  return value as Uint8Array[];
}

/** A string argument (a path, a name), else EFAULT. */
export function stringArg(value: unknown, syscall: string, what: string): string {
  if (typeof value !== "string") throw new DmaBufError("EFAULT", syscall, `${what} ${describe(value)} is not a string`);
  return value;
}

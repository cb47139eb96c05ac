/*
 * Copy strategies by name, and the regime where each wins (measured by
 * `dmabuf-lab bench copy`; see README for the figures).
 */
import {
  STRATEGY_AUTO, STRATEGY_BULK, STRATEGY_BYTES, STRATEGY_REFERENCE, STRATEGY_SIMD, STRATEGY_WORDS,
} from "./abi.js";
import { DmaBufError } from "../errno.js";
import { describe } from "../args.js";

export const strategies = {
  /** memory.copy (native memmove): wins from a few hundred bytes up. */
  bulk: STRATEGY_BULK,
  /** v128, a 64-byte line per iteration: wins for tiny segments. */
  simd: STRATEGY_SIMD,
  /** a u64 loop: the plain word-loop regime. */
  words: STRATEGY_WORDS,
  /** a byte loop: the floor. */
  bytes: STRATEGY_BYTES,
  /** musl's memcpy with shifted merges: readable, forward only. */
  reference: STRATEGY_REFERENCE,
  /** per segment, by size and alignment, from the calibration table. */
  auto: STRATEGY_AUTO,
} as const;

export type StrategyName = keyof typeof strategies;
/** The strategies AUTO may choose from (reference cannot copy backward). */
export type FixedStrategy = Exclude<StrategyName, "auto" | "reference">;

export const strategyNames = Object.keys(strategies) as StrategyName[];
export const fixedStrategyNames: FixedStrategy[] = ["bulk", "simd", "words", "bytes"];

export function strategyId(name: StrategyName, syscall: string): number {
  // Own names only: not a key like "toString" from the prototype, nor a non-string.
  const id = typeof name === "string" && Object.hasOwn(strategies, name) ? (strategies as Record<string, number>)[name] : undefined;
  if (id === undefined) {
    throw new DmaBufError("EINVAL", syscall, `unknown strategy ${describe(name)} (expected one of ${strategyNames.join(", ")})`);
  }
  return id;
}

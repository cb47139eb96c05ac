/*
 * Command-line options for every command: parseOptions() wraps node:util
 * parseArgs so that a negative number is a value ("--seed -5" reaches the
 * range check instead of Node's "argument is ambiguous"), and the value
 * parsers give range messages that name the flag, the value and the range.
 * A bad value throws UsageError; the CLI prints it with the command's usage
 * line and exits 2, before any work starts.
 */
import { parseArgs } from "node:util";

/** A bad command line: printed with the usage line, exit code 2. */
export class UsageError extends Error {}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;
export type OptionsConfig = Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>;

/** parseArgs, strict, with "--flag -5" read as a value of a string flag; positionals refused. */
export function parseOptions(argv: string[], options: OptionsConfig): OptionValues {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = /^--([^=]+)$/.exec(argv[i])?.[1];
    if (name !== undefined && options[name]?.type === "string" && /^-[\d.]/.test(argv[i + 1] ?? "")) {
      args.push(`--${name}=${argv[++i]}`);
    } else {
      args.push(argv[i]);
    }
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as OptionValues;
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    if (!code.startsWith("ERR_PARSE_ARGS")) throw e;
    // Node's messages: "Unknown option '--x'. To specify a positional ...", "Option '--x <value>' argument missing"
    const message = (e as Error).message.replace(/\. To specify a positional.*$/s, "").replace(/^Unknown option/, "unknown option")
      .replace(/^Unexpected argument/, "unexpected argument").replace(/^Option/, "option");
    throw new UsageError(message);
  }
}

/** An integer flag in min..max; undefined when absent. */
export function integer(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[+-]?\d+$/.test(value.trim())) throw new UsageError(`--${flag} '${value}' is not a whole number (expected ${min}..${max})`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${flag} ${value} is out of range (expected ${min}..${max})`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** A byte size with an optional K/KiB/M/MiB/G/GiB suffix, in min..max; undefined when absent. */
export function byteSize(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const m = /^([+-]?\d+)\s*(k|kib|m|mib|g|gib)?$/i.exec(value.trim());
  if (m === null) throw new UsageError(`--${flag} '${value}' is not a size (65536, 64K, 1M)`);
  const n = Number(m[1]) * SIZE_UNITS[(m[2] ?? "").toLowerCase()];
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag} ${value} is out of range (expected ${min}..${max} bytes)`);
  }
  return n;
}

/** Milliseconds, or a number with ms or s, in min..max ms; undefined when absent. */
export function duration(flag: string, value: string | undefined, minMs: number, maxMs: number): number | undefined {
  if (value === undefined) return undefined;
  const m = /^([+-]?\d+(?:\.\d+)?)(ms|s)?$/.exec(value.trim());
  if (m === null) throw new UsageError(`--${flag} '${value}' is not a duration (2s, 500ms)`);
  const ms = Math.round(Number(m[1]) * (m[2] === "s" ? 1000 : 1));
  if (!(ms >= minMs && ms <= maxMs)) throw new UsageError(`--${flag} ${value} is out of range (expected ${minMs} ms..${maxMs / 1000} s)`);
  return ms;
}

/** One of a list of words; undefined when absent. */
export function oneOf<T extends string>(flag: string, value: string | undefined, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!choices.includes(value as T)) throw new UsageError(`--${flag} '${value}' is not one of ${choices.join(", ")}`);
  return value as T;
}

/** --chart FILE: an .svg or .html file name; undefined when absent. */
export function chartFile(value: string | undefined): string | undefined {
  if (value !== undefined && !/\.(svg|html)$/i.test(value)) throw new UsageError(`--chart '${value}' must name an .svg or .html file`);
  return value;
}

/*
 * A CLI subcommand: a name, a one-line summary for `dmabuf-lab --help`, and
 * run(), which parses its own arguments (node:util parseArgs), writes results
 * to stdout (a table for people, JSON with --json) and progress to stderr,
 * and returns the process exit code. progress() and writeFile() are the
 * shared ways to do the latter two.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

export interface Command {
  name: string;
  summary: string;
  /** Full usage text for `dmabuf-lab NAME --help`. */
  usage: string;
  run(argv: string[], io: CommandIo): Promise<number>;
}

export interface CommandIo {
  stdout: (text: string) => void;
  /** Progress and diagnostics; never results. */
  stderr: (text: string) => void;
}

/** A progress printer on stderr: "PREFIX [  12 s] TEXT", seconds since it was made. */
export function progress(io: CommandIo, prefix: string): (text: string) => void {
  const t0 = performance.now();
  return (text) => io.stderr(`${prefix} [${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${text}\n`);
}

/** Writes a file an option named (creating its directory); returns its absolute path. */
export function writeFile(path: string, text: string): string {
  const abs = resolve(path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, text);
  return abs;
}

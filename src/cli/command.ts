/*
 * A CLI command: a name, a one-line summary for `dmabuf-lab --help`, its
 * full help (`dmabuf-lab NAME --help`; the first paragraph is the usage
 * line printed after a usage error), and run(), which parses its own
 * arguments (parseOptions, src/cli/options.ts), writes results to stdout (a
 * table for people, JSON with --json) and progress to stderr, and returns
 * the process exit code. A command with subcommands (bench) picks the
 * subcommand named next, whose name is the full path ("bench copy"); one
 * that also has a run of its own (demo) runs it when no subcommand is
 * named ("demo --frames 60" against "demo io"). progress(), writeFile() and writeCharts() are the shared
 * ways to report progress and write what an option names.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { renderChartsSvg, renderPage, type Chart } from "../report.js";

export interface Command {
  /** The words after `dmabuf-lab`: "tour", "bench copy". */
  name: string;
  summary: string;
  /** Full help; its first paragraph is the usage line. */
  usage: string;
  run?(argv: string[], io: CommandIo): Promise<number>;
  subcommands?: Command[];
}

export interface CommandIo {
  stdout: (text: string) => void;
  /** Progress and diagnostics; never results. */
  stderr: (text: string) => void;
}

/** The usage line(s) of a command: its help's first paragraph. */
export const usageLine = (c: Command): string => c.usage.split(/\n\s*\n/)[0].trimEnd();

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

/** --chart FILE: the charts as one SVG (.svg), or a page with the charts and the table (.html). */
export function writeCharts(path: string, heading: string, charts: Chart[], table: string): string {
  return writeFile(path, path.toLowerCase().endsWith(".html")
    ? renderPage(heading, [{ heading, charts, table }])
    : renderChartsSvg(charts));
}

/*
 * A CLI subcommand: a name, a one-line summary for `dmabuf-lab --help`, and
 * run(), which parses its own arguments (node:util parseArgs), writes results
 * to stdout (a table for people, JSON with --json) and progress to stderr,
 * and returns the process exit code.
 */
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

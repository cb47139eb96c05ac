/*
 * --trace FILE.json on the commands that run labs (demo, contend, bench
 * trace): the option's check and the writing of a session's Chrome Trace
 * Event JSON, with its structure checked (src/trace/validate.ts) and a
 * one-line summary on stderr.
 */
import { chromeTrace } from "../trace/chrome.js";
import type { TraceData } from "../trace/events.js";
import { checkChromeTrace } from "../trace/validate.js";
import { writeFile, type CommandIo } from "./command.js";
import { UsageError } from "./options.js";

export const traceUsage = `  --trace FILE     record every thread and device and write a Perfetto /
                   chrome://tracing file (Chrome Trace Event JSON): FILE.json`;

/** The --trace value, checked (a UsageError names it); undefined when absent. */
export function traceOption(value: string | undefined): string | undefined {
  if (value !== undefined && !/\.json$/i.test(value)) throw new UsageError(`--trace '${value}' must name a .json file`);
  return value;
}

/** Writes the trace; returns false (and says why on stderr) when its structure is unsound. */
export function writeTrace(io: CommandIo, command: string, path: string, data: TraceData): boolean {
  const trace = chromeTrace(data);
  const check = checkChromeTrace(trace);
  const events = data.threads.reduce((n, t) => n + t.events.length, 0);
  const dropped = data.threads.reduce((n, t) => n + t.dropped, 0);
  const file = writeFile(path, JSON.stringify(trace));
  io.stderr(`${command}: wrote ${file}: ${events} events from ${data.threads.length} threads` +
    `${dropped > 0 ? `, ${dropped} dropped (buffers full)` : ""}, ${check.slices} slices, ${check.flows} flows\n`);
  for (const p of check.problems.slice(0, 10)) io.stderr(`${command}: trace problem: ${p}\n`);
  return check.problems.length === 0;
}

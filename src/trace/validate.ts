/*
 * A strict check of a Chrome Trace Event file's structure, as the trace
 * viewers need it. Returns the problems found (none: the file is sound):
 * - every B has its E, with the same name, on the same track (pid, tid),
 *   properly nested, and no E without a B;
 * - every b has its e (same cat, id and name), and no e without a b;
 * - timestamps never go back on a track (thread tracks, each counter, each
 *   async id), and every ts is a finite number >= 0;
 * - every flow id has exactly one s and one f, each inside a slice open on
 *   its track at its ts (the arrow may point back in time: a signal's
 *   slice can outlast the wake-up it caused).
 */
import type { ChromeEvent } from "./chrome.js";

export interface TraceCheck {
  problems: string[];
  slices: number;
  flows: number;
  counters: number;
  tracks: number;
}

export function checkChromeTrace(trace: {
  /** The file's events (a ChromeTrace, or a parsed file). */
  traceEvents: ChromeEvent[];
}): TraceCheck {
  const problems: string[] = [];
  const stacks = new Map<string, { name: string; ts: number }[]>();
  const lastTs = new Map<string, number>();
  const asyncOpen = new Map<string, string>();
  const flowEnds = new Map<string, { s: number; f: number }>();
  let slices = 0;
  let counters = 0;
  const monotone = (key: string, ts: number, i: number): void => {
    const prev = lastTs.get(key);
    if (prev !== undefined && ts < prev) problems.push(`event ${i} on ${key} at ${ts} µs goes back from ${prev} µs`);
    lastTs.set(key, ts);
  };
  trace.traceEvents.forEach((e, i) => {
    if (e.ph === "M") return;
    if (typeof e.ts !== "number" || !Number.isFinite(e.ts) || e.ts < 0) {
      problems.push(`event ${i} (${e.ph} ${e.name}) has ts ${String(e.ts)}`);
      return;
    }
    const track = `thread ${e.pid}/${e.tid}`;
    switch (e.ph) {
      case "B":
      case "E":
      case "i":
      case "s":
      case "f": {
        monotone(track, e.ts, i);
        const stack = stacks.get(track) ?? [];
        stacks.set(track, stack);
        if (e.ph === "B") {
          stack.push({ name: e.name, ts: e.ts });
          slices++;
        } else if (e.ph === "E") {
          const open = stack.pop();
          if (open === undefined) problems.push(`event ${i}: E "${e.name}" on ${track} closes nothing`);
          else if (open.name !== e.name) problems.push(`event ${i}: E "${e.name}" on ${track} closes B "${open.name}"`);
        } else if (e.ph === "s" || e.ph === "f") {
          if (stack.length === 0) problems.push(`event ${i}: flow ${e.ph} ${String(e.id)} on ${track} at ${e.ts} µs is inside no slice`);
          const key = String(e.id);
          const ends = flowEnds.get(key) ?? { s: 0, f: 0 };
          ends[e.ph]++;
          flowEnds.set(key, ends);
        }
        break;
      }
      case "b":
      case "e": {
        const key = `async ${e.cat}/${String(e.id)}/${e.name}`;
        monotone(`async ${e.cat}/${String(e.id)}`, e.ts, i);
        if (e.ph === "b") {
          if (asyncOpen.has(key)) problems.push(`event ${i}: async b "${e.name}" id ${String(e.id)} opened twice`);
          asyncOpen.set(key, e.name);
        } else if (!asyncOpen.delete(key)) {
          problems.push(`event ${i}: async e "${e.name}" id ${String(e.id)} closes nothing`);
        }
        break;
      }
      case "C":
        monotone(`counter ${e.name}`, e.ts, i);
        counters++;
        break;
      default:
        problems.push(`event ${i} has phase ${String(e.ph)}, which this trace never writes`);
    }
  });
  for (const [track, stack] of stacks) {
    for (const open of stack) problems.push(`B "${open.name}" on ${track} at ${open.ts} µs has no E`);
  }
  for (const key of asyncOpen.keys()) problems.push(`${key} has no e`);
  for (const [id, ends] of flowEnds) {
    if (ends.s !== 1 || ends.f !== 1) problems.push(`flow ${id} has ${ends.s} s and ${ends.f} f (one of each expected)`);
  }
  return { problems, slices, flows: flowEnds.size, counters, tracks: stacks.size };
}

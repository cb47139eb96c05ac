/*
 * TraceData -> the Chrome Trace Event format (JSON), which ui.perfetto.dev
 * and chrome://tracing open as it is.
 *
 * Contract:
 * - One process ("dmabuf-lab"), one track (tid) per recording thread; a
 *   device's thread is named "device NAME", so each device has its track.
 * - Calls and jobs that run on their thread's stack become B/E slices,
 *   properly nested per track, each B followed by its E on the same track;
 *   the read/write path's phases (validate, wait, copy, end) and a job's
 *   (wait deps, run) are child slices. Async calls (the *Async twins,
 *   waitAsync) interleave with other work on their thread, so they become
 *   async slices (b/e, one id each), and their wake-up is a zero-length
 *   "woken" slice on the thread track.
 * - Flow arrows (s/f, one id per arrow): from a fence's signal slice to
 *   every wait that slept on it (or on a container holding it) and woke
 *   after that signal: the wake-ups the signal caused.
 * - Counters: each device's ring depth (from pushes and pops) and the
 *   number of threads waiting for a reservation lock.
 * - Per track, timestamps never go back (µs with ns precision).
 */
import {
  JOB_KINDS, NOT_REACHED, RW_SYSCALLS, T_FENCE_CREATE, T_FENCE_LEAF, T_FENCE_SIGNAL, T_FENCE_WAIT, T_JOB, T_JOB_SUBMIT,
  T_RESV_WAIT, T_RING_POP, T_RING_PUSH, T_RW, T_WATCHDOG, WAIT_ASYNC, WAIT_SLEPT, WD_OVERRUN,
  type TraceData, type TraceThread,
} from "./events.js";

export interface ChromeEvent {
  name: string;
  ph: "B" | "E" | "i" | "C" | "M" | "b" | "e" | "s" | "f";
  ts?: number;
  pid: number;
  tid?: number;
  cat?: string;
  id?: number | string;
  s?: "t" | "p" | "g";
  bp?: "e";
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeEvent[];
  displayTimeUnit: "ns";
  metadata: { "dmabuf-lab": { session: number; categories: string[]; startNs: number; stopNs: number; dropped: number; clamped: number } };
}

const PID = 1;
const us = (ns: number): number => Math.round(ns) / 1000;
const i32 = (u: number): number => u | 0;

interface Slice {
  t0: number;
  t1: number;
  name: string;
  cat: string;
  args?: Record<string, unknown>;
  /** Flow endpoints bound to this slice, emitted at its end. */
  flows: ChromeEvent[];
  order: number;
}

interface Instant {
  ts: number;
  name: string;
  cat: string;
  args?: Record<string, unknown>;
}

interface Track {
  thread: TraceThread;
  slices: Slice[];
  instants: Instant[];
}

const fenceKey = (ctx: number, seqno: number): string => `${ctx}:${seqno}`;

/** The Chrome Trace Event JSON of a session. */
export function chromeTrace(data: TraceData): ChromeTrace {
  const events: ChromeEvent[] = [{ name: "process_name", ph: "M", pid: PID, args: { name: "dmabuf-lab" } }];
  const deviceNames = new Map<number, string>();
  for (const t of data.threads) if (t.context !== 0) deviceNames.set(t.context, t.name.replace(/^device /, ""));
  const deviceOf = (ctx: number): string => deviceNames.get(ctx) ?? `context ${ctx}`;

  let order = 0;
  let asyncId = 0;
  let flowId = 0;
  const tracks: Track[] = [];
  const signals = new Map<string, { slice: Slice; tid: number }>();
  /** Waits that slept and woke: the slice a flow ends in, the leaves it waited for. */
  const wakes: { slice: Slice; tid: number; leaves: string[]; t0: number }[] = [];
  const counters: ChromeEvent[] = [];
  const resvEdges: { ts: number; delta: number }[] = [];

  for (const thread of data.threads) {
    const track: Track = { thread, slices: [], instants: [] };
    tracks.push(track);
    const tid = thread.id;
    const slice = (t0: number, t1: number, name: string, cat: string, args?: Record<string, unknown>): Slice => {
      const s: Slice = { t0, t1: Math.max(t0, t1), name, cat, args, flows: [], order: order++ };
      track.slices.push(s);
      return s;
    };
    const asyncSlice = (t0: number, t1: number, name: string, cat: string, id: number, args?: Record<string, unknown>): void => {
      events.push({ name, ph: "b", cat, id, ts: us(t0), pid: PID, tid, args });
      events.push({ name, ph: "e", cat, id, ts: us(Math.max(t0, t1)), pid: PID, tid });
    };
    const evs = thread.events;
    for (let n = 0; n < evs.length; n++) {
      const e = evs[n];
      const [a, b, c, d, f, g, h, k, l, m, nDeps] = e.args;
      switch (e.type) {
        case T_FENCE_CREATE:
          track.instants.push({ ts: e.t0, name: `create ${fenceKey(a, b)}`, cat: "fence", args: { context: a, seqno: b, fence: hex(c) } });
          break;
        case T_FENCE_SIGNAL: {
          const err = i32(d);
          const s = slice(e.t0, e.t1, err === 0 ? `signal ${fenceKey(a, b)}` : `signal ${fenceKey(a, b)} error ${err}`, "fence",
            { context: a, seqno: b, fence: hex(c), error: err });
          signals.set(fenceKey(a, b), { slice: s, tid });
          break;
        }
        case T_FENCE_WAIT: {
          const leaves: string[] = [];
          for (let q = 0; q < g && n + 1 < evs.length && evs[n + 1].type === T_FENCE_LEAF; q++) {
            n++;
            leaves.push(fenceKey(evs[n].args[0], evs[n].args[1]));
          }
          if (g === 0) leaves.push(fenceKey(a, b));
          const name = `wait ${fenceKey(a, b)}${d === 0 ? " (timed out)" : ""}`;
          const args = { context: a, seqno: b, fence: hex(c), signalled: d === 1, slept: (f & WAIT_SLEPT) !== 0, leaves };
          let end: Slice | undefined;
          if ((f & WAIT_ASYNC) === 0) end = slice(e.t0, e.t1, name, "fence", args);
          else {
            asyncSlice(e.t0, e.t1, name, "fence", ++asyncId, args);
            if (d === 1 && (f & WAIT_SLEPT) !== 0) end = slice(e.t1, e.t1, `woken ${fenceKey(a, b)}`, "fence", { context: a, seqno: b });
          }
          if (end !== undefined && d === 1 && (f & WAIT_SLEPT) !== 0) wakes.push({ slice: end, tid, leaves, t0: e.t0 });
          break;
        }
        case T_RW: {
          const syscall = RW_SYSCALLS[e.code] ?? `rw ${e.code}`;
          const err = i32(m);
          const args = { buffer: hex(a), position: b, bytes: c, fence: fenceKey(d, f), dependencies: nDeps, errno: err };
          const name = err === 0 ? syscall : `${syscall} error ${err}`;
          const bounds = [e.t0, ...[h, k, l].map((x) => (x === NOT_REACHED ? NaN : e.t0 + x)), e.t1];
          const phases = ["validate", "wait", "copy", "end"];
          if ((g & WAIT_ASYNC) === 0) {
            slice(e.t0, e.t1, name, "rw", args);
            phaseSlices(bounds, phases, (t0, t1, p) => slice(t0, t1, p, "rw"));
          } else {
            const id = ++asyncId;
            events.push({ name, ph: "b", cat: "rw", id, ts: us(e.t0), pid: PID, tid, args });
            phaseSlices(bounds, phases, (t0, t1, p) => {
              events.push({ name: p, ph: "b", cat: "rw", id, ts: us(t0), pid: PID, tid });
              events.push({ name: p, ph: "e", cat: "rw", id, ts: us(t1), pid: PID, tid });
            });
            events.push({ name, ph: "e", cat: "rw", id, ts: us(e.t1), pid: PID, tid });
          }
          break;
        }
        case T_RESV_WAIT:
          if (e.code === 0) slice(e.t0, e.t1, "resv lock wait", "resv", { resv: hex(a), contended: b });
          else asyncSlice(e.t0, e.t1, "resv lock wait", "resv", ++asyncId, { resv: hex(a), contended: b });
          resvEdges.push({ ts: e.t0, delta: 1 }, { ts: e.t1, delta: -1 });
          break;
        case T_RING_PUSH:
        case T_RING_POP: {
          const push = e.type === T_RING_PUSH;
          track.instants.push({ ts: e.t0, name: `${push ? "push" : "pop"} ${deviceOf(a)} #${c}`, cat: "ring", args: { device: deviceOf(a), depth: b, seqno: c } });
          counters.push({ name: `ring depth ${deviceOf(a)}`, ph: "C", ts: us(e.t0), pid: PID, cat: "ring", args: { depth: b } });
          break;
        }
        case T_JOB_SUBMIT:
          track.instants.push({ ts: e.t0, name: `submit ${JOB_KINDS[e.code] ?? e.code} ${deviceOf(a)} #${b}`, cat: "job", args: { device: deviceOf(a), seqno: b, dependencies: c } });
          break;
        case T_JOB: {
          const err = i32(c);
          const kind = JOB_KINDS[e.code] ?? `job ${e.code}`;
          slice(e.t0, e.t1, err === 0 ? `${kind} #${b}` : `${kind} #${b} failed ${err}`, "job",
            { device: deviceOf(a), seqno: b, error: err, bytes: d });
          const depsAt = f === NOT_REACHED ? NaN : e.t0 + f;
          const ranAt = g === NOT_REACHED ? NaN : e.t0 + g;
          phaseSlices([e.t0, depsAt, ranAt, e.t1], ["wait deps", "", "run"], (t0, t1, p) => { if (p !== "") slice(t0, t1, p, "job"); });
          break;
        }
        case T_WATCHDOG:
          track.instants.push({ ts: e.t0, name: `watchdog: ${e.code === WD_OVERRUN ? "job overran" : "device silent"}, failing ${deviceOf(a)}`, cat: "watchdog", args: { device: deviceOf(a), errno: i32(b) } });
          break;
        default:
          break; // T_FENCE_LEAF outside a wait, or a type from a newer recorder: nothing to draw
      }
    }
  }

  // Flows: a signal that happened during a sleeping wait on one of its leaves woke it.
  for (const w of wakes) {
    for (const leaf of w.leaves) {
      const sig = signals.get(leaf);
      if (sig === undefined || sig.slice.t1 < w.t0) continue;
      const id = ++flowId;
      sig.slice.flows.push({ name: "wake", ph: "s", cat: "fence", id, ts: us(sig.slice.t1), pid: PID, tid: sig.tid });
      w.slice.flows.push({ name: "wake", ph: "f", bp: "e", cat: "fence", id, ts: us(w.slice.t1), pid: PID, tid: w.tid });
    }
  }

  let clamped = 0;
  for (const track of tracks) {
    const tid = track.thread.id;
    const name = track.thread.dropped > 0 ? `${track.thread.name} (${track.thread.dropped} events dropped)` : track.thread.name;
    events.push({ name: "thread_name", ph: "M", pid: PID, tid, args: { name } });
    events.push({ name: "thread_sort_index", ph: "M", pid: PID, tid, args: { sort_index: track.thread.context !== 0 ? 1000 + tid : tid } });
    clamped += nest(track, events);
  }

  resvEdges.sort((x, y) => x.ts - y.ts || x.delta - y.delta);
  let waiting = 0;
  for (const r of resvEdges) {
    waiting += r.delta;
    counters.push({ name: "resv lock waiters", ph: "C", ts: us(r.ts), pid: PID, cat: "resv", args: { waiting } });
  }
  counters.sort((x, y) => x.ts! - y.ts!);
  events.push(...counters);

  const dropped = data.threads.reduce((s, t) => s + t.dropped, 0);
  return {
    traceEvents: events,
    displayTimeUnit: "ns",
    metadata: { "dmabuf-lab": { session: data.session, categories: data.categories, startNs: data.startNs, stopNs: data.stopNs, dropped, clamped } },
  };
}

/** Child slices between consecutive reached bounds (NaN: the phase was not reached). */
function phaseSlices(bounds: number[], names: string[], emit: (t0: number, t1: number, name: string) => void): void {
  for (let i = 0; i < names.length; i++) {
    const t0 = bounds[i];
    const t1 = bounds[i + 1];
    if (Number.isNaN(t0) || Number.isNaN(t1)) continue;
    emit(t0, Math.max(t0, t1), names[i]);
  }
}

/**
 * A track's slices as nested B/E pairs and its instants, in time order.
 * A slice that would end after its parent is clamped to the parent's end
 * (counted: it means the recorded times disagree).
 */
function nest(track: Track, out: ChromeEvent[]): number {
  const tid = track.thread.id;
  const slices = track.slices.slice().sort((x, y) => x.t0 - y.t0 || y.t1 - x.t1 || x.order - y.order);
  const instants = track.instants.slice().sort((x, y) => x.ts - y.ts);
  const stack: Slice[] = [];
  let clamped = 0;
  let ii = 0;
  const flush = (upTo: number): void => {
    while (ii < instants.length && instants[ii].ts <= upTo) {
      const i = instants[ii++];
      out.push({ name: i.name, ph: "i", s: "t", cat: i.cat, ts: us(i.ts), pid: PID, tid, args: i.args });
    }
  };
  // Closes the open slices that do not contain `next` (all of them for none).
  const close = (next: Slice | undefined): void => {
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) break;
      const contains = next !== undefined && (top.t1 > next.t0 || (top.t1 === next.t0 && next.t1 === next.t0));
      if (contains) break;
      flush(top.t1);
      stack.pop();
      out.push(...top.flows);
      out.push({ name: top.name, ph: "E", cat: top.cat, ts: us(top.t1), pid: PID, tid });
    }
    flush(next === undefined ? Infinity : next.t0);
  };
  for (const s of slices) {
    close(s);
    const parent = stack[stack.length - 1];
    if (parent !== undefined && s.t1 > parent.t1) {
      s.t1 = parent.t1;
      clamped++;
    }
    out.push({ name: s.name, ph: "B", cat: s.cat, ts: us(s.t0), pid: PID, tid, args: s.args });
    stack.push(s);
  }
  close(undefined);
  return clamped;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

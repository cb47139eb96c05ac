/*
 * The race check: reads every agent's log (log.ts) and reports each pair of
 * accesses to one dma-buf that overlap, of which at least one writes, and
 * that neither happens before the other (agent.ts defines the order).
 *
 * Contract:
 * - Any thread, any time, as often as wanted: it reads what every agent has
 *   published (an access still being made may be missing), writes nothing.
 * - a HB b iff a.epoch <= b.clock[a.agent]: each access carries the clock it
 *   began with and its agent's component when it ended, so the check needs
 *   no replay. Per buffer and per agent, accesses sorted by the clock they
 *   began with have non-decreasing clocks; the accesses of agent A that are
 *   neither before nor after an access b form one run of that order, found
 *   by two binary searches (a prefix maximum of the epochs makes the first
 *   one exact for CPU brackets, which end after later accesses began).
 * - An access marked AF_UNSURE (its agent lost an edge: a log was full) is
 *   never reported in a race; `incomplete` says records were lost.
 * - Unbracketed mmap accesses (AF_UNBRACKETED) are findings of their own,
 *   reported whether or not they race.
 */
import type { Arena } from "../memory/arena.js";
import { JOB_KINDS, RW_SYSCALLS } from "../trace/events.js";
import {
  ACC_BUFFER, ACC_CLOCK, ACC_EPOCH, ACC_FENCE_CTX, ACC_FENCE_SEQNO, ACC_FLAGS, ACC_GENERATION, ACC_KIND, ACC_LENGTH,
  ACC_OFFSET, ACC_T0, ACC_T1, AF_UNBRACKETED, AF_UNSURE, AF_WRITE, AK_CPU, AK_IO, AK_JOB, AK_MMAP, AK_RW, REC_ACCESS, REC_CLOCK,
  readLogs,
} from "./log.js";

/** One side of a race, as the report names it. */
export interface AccessSide {
  /** The thread or device (the trace's thread name: "main", "writer 0", "device gpu0"). */
  agent: string;
  /** The device's fence context (0 for a thread). */
  agentContext: number;
  /** What accessed: the system call ("pwritev"), "job copy", "cpu access" (SYNC START..END) or "mmap". */
  call: string;
  write: boolean;
  /** The fence that stands for the access (the call's own fence, the job's out-fence); null for CPU and mmap access. */
  fence: { context: number; seqno: number } | null;
  /** The dma-buf record's offset and generation, and its name (describeBuffer). */
  buffer: { offset: number; generation: number; name: string };
  range: { offset: number; length: number };
  /** Lab clock ns: when the access began and ended (for timelines). */
  startNs: number;
  endNs: number;
}

export interface Race {
  a: AccessSide;
  b: AccessSide;
}

export interface SanitizeReport {
  /** Accesses checked. */
  accesses: number;
  /** Agents (threads and devices) that recorded anything. */
  agents: number;
  /** Every race found (a before b in time), at most MAX_RACES. */
  races: Race[];
  /** How many races there were (more than races.length when capped; at least this many when `truncated`). */
  raceCount: number;
  /** The search stopped at MAX_COUNTED races (a protocol with no ordering at all). */
  truncated: boolean;
  /** mmap accesses outside a SYNC START/END bracket that allows them, at most MAX_RACES. */
  unbracketed: AccessSide[];
  /** How many there were. */
  unbracketedCount: number;
  /** Records were lost (a thread's log was full): races may be missing, none is made up. */
  incomplete: boolean;
  /** Accesses not checked because their agent had lost an edge. */
  unsure: number;
  /** How long the check took (ms). */
  checkMs: number;
}

/** The most races a report lists. */
export const MAX_RACES = 1000;
/** The most races a report counts before it stops looking. */
export const MAX_COUNTED = 100_000;

interface Access {
  agent: number;
  /** Word index of its record. */
  at: number;
  clock: number;
  clockSeq: number;
  epoch: number;
  offset: number;
  end: number;
  write: boolean;
}

/** Names a dma-buf for the report (the lab's layer knows names; this one does not). */
export type DescribeBuffer = (offset: number, generation: number) => string;

export function checkRaces(arena: Arena, describeBuffer: DescribeBuffer): SanitizeReport {
  const started = performance.now();
  const u32 = arena.u32;
  const logs = readLogs(arena);
  const names = new Map(logs.map((l) => [l.agent, l]));
  const byBuffer = new Map<string, Map<number, Access[]>>();
  const unbracketed: number[] = [];
  let accesses = 0;
  let unsure = 0;
  for (const log of logs) {
    const clockSeq = new Map<number, number>();
    for (const [from, to] of log.ranges) {
      for (let w = from; w < to; w += 1 + (u32[w] >>> 8)) {
        const tag = u32[w] & 0xff;
        if (tag === REC_CLOCK) {
          clockSeq.set(w << 2, clockSeq.size + 1);
          continue;
        }
        if (tag !== REC_ACCESS) break; // a torn log cannot be read on
        accesses++;
        const flags = u32[w + ACC_FLAGS];
        if ((flags & AF_UNBRACKETED) !== 0) unbracketed.push(w);
        if ((flags & AF_UNSURE) !== 0) {
          unsure++;
          continue;
        }
        const key = `${u32[w + ACC_BUFFER]}:${u32[w + ACC_GENERATION]}`;
        let perAgent = byBuffer.get(key);
        if (perAgent === undefined) byBuffer.set(key, (perAgent = new Map()));
        let list = perAgent.get(log.agent);
        if (list === undefined) perAgent.set(log.agent, (list = []));
        const clock = u32[w + ACC_CLOCK];
        list.push({
          agent: log.agent, at: w, clock, clockSeq: clockSeq.get(clock) ?? 0, epoch: u32[w + ACC_EPOCH],
          offset: u32[w + ACC_OFFSET], end: u32[w + ACC_OFFSET] + u32[w + ACC_LENGTH], write: (flags & AF_WRITE) !== 0,
        });
      }
    }
  }

  // clock[agent] of the REC_CLOCK at byte offset `clock`.
  const component = (clock: number, agent: number): number => {
    const w = clock >>> 2;
    return agent <= u32[w] >>> 8 ? u32[w + agent] : 0;
  };

  const pairs: [number, number][] = [];
  let raceCount = 0;
  search: for (const perAgent of byBuffer.values()) {
    const agents = [...perAgent.keys()].sort((x, y) => x - y);
    const sorted = new Map<number, { list: Access[]; maxEpoch: number[] }>();
    for (const agent of agents) {
      const list = perAgent.get(agent)!.sort((x, y) => x.clockSeq - y.clockSeq || x.at - y.at);
      const maxEpoch: number[] = [];
      let m = 0;
      for (const a of list) maxEpoch.push((m = Math.max(m, a.epoch)));
      sorted.set(agent, { list, maxEpoch });
    }
    for (const B of agents) {
      for (const b of sorted.get(B)!.list) {
        for (const A of agents) {
          if (A <= B) continue;
          const { list, maxEpoch } = sorted.get(A)!;
          // Before b: every a up to L has epoch <= b.clock[A].
          const known = component(b.clock, A);
          const L = firstIndex(list.length, (i) => maxEpoch[i] > known);
          // After b: from U on, a.clock[B] >= b.epoch.
          const U = firstIndex(list.length, (i) => component(list[i].clock, B) >= b.epoch);
          for (let i = L; i < U; i++) {
            const a = list[i];
            if (a.epoch <= known || component(a.clock, B) >= b.epoch) continue;
            if (!(a.write || b.write) || a.end <= b.offset || b.end <= a.offset) continue;
            raceCount++;
            if (pairs.length < MAX_RACES) pairs.push([a.at, b.at]);
            if (raceCount === MAX_COUNTED) break search;
          }
        }
      }
    }
  }

  const side = (w: number): AccessSide => {
    const log = names.get(agentOf(w))!;
    const kind = u32[w + ACC_KIND];
    const fenceContext = u32[w + ACC_FENCE_CTX];
    const f64 = new Float64Array(new Uint32Array([u32[w + ACC_T0], u32[w + ACC_T0 + 1], u32[w + ACC_T1], u32[w + ACC_T1 + 1]]).buffer);
    const offset = u32[w + ACC_BUFFER];
    const generation = u32[w + ACC_GENERATION];
    return {
      agent: log.name, agentContext: log.context, call: callName(kind), write: (u32[w + ACC_FLAGS] & AF_WRITE) !== 0,
      fence: fenceContext === 0 ? null : { context: fenceContext, seqno: u32[w + ACC_FENCE_SEQNO] },
      buffer: { offset, generation, name: describeBuffer(offset, generation) },
      range: { offset: u32[w + ACC_OFFSET], length: u32[w + ACC_LENGTH] },
      startNs: f64[0], endNs: f64[1],
    };
  };
  // Which agent's log holds word w.
  const owners: { from: number; to: number; agent: number }[] = logs.flatMap((l) => l.ranges.map(([from, to]) => ({ from, to, agent: l.agent })));
  function agentOf(w: number): number {
    return owners.find((o) => w >= o.from && w < o.to)!.agent;
  }

  const races = pairs.map(([x, y]) => {
    const a = side(x);
    const b = side(y);
    return a.startNs <= b.startNs ? { a, b } : { a: b, b: a };
  }).sort((r, s) => r.a.startNs - s.a.startNs);
  return {
    accesses, agents: logs.length, races, raceCount, truncated: raceCount === MAX_COUNTED, unbracketed: unbracketed.slice(0, MAX_RACES).map(side), unbracketedCount: unbracketed.length,
    incomplete: logs.some((l) => l.dropped > 0), unsure, checkMs: performance.now() - started,
  };
}

/** The first i in [0, n) with pred(i), pred monotone (false then true); n if none. */
function firstIndex(n: number, pred: (i: number) => boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pred(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function callName(kind: number): string {
  const code = kind >>> 8;
  switch (kind & 0xff) {
    case AK_RW: return RW_SYSCALLS[code] ?? `rw ${code}`;
    case AK_JOB: return `job ${JOB_KINDS[code] ?? code}`;
    case AK_CPU: return "cpu access";
    case AK_MMAP: return "mmap";
    case AK_IO: return "file I/O";
    default: return `access ${kind}`;
  }
}

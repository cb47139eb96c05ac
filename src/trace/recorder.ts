/*
 * The trace recorder: per-thread event buffers in the shared memory,
 * merged by whichever thread calls stop().
 *
 *   const tr = lab.trace;                  // this thread's Tracer
 *   tr.start({ categories: ["fence", "rw"] });
 *   ...                                    // every thread records
 *   const data = tr.stop();                // TraceData; chromeTrace(data) for JSON
 *
 * Contract:
 * - Off, a trace point costs one plain load of CTL_TRACE_MASK and one
 *   predictable branch (on(cat)): no atomic, no call into here.
 * - On, each thread writes only its own chunks (user-memory blocks it
 *   claimed): no word written by two threads per event. An event is
 *   EVENT_BYTES of plain stores, then Atomics.store of the chunk's count
 *   (the publish point: a collector that loads the count sees the event's
 *   words). Nothing lab-global is written per event.
 * - A thread notices a new session at its first event (CTL_TRACE_SESSION
 *   differs from the one its chunks were set for) and resets its chunks
 *   then; only it ever writes them, so a late event of the last session can
 *   never land in another thread's buffer.
 * - Chunks are linked once into a lab-wide list (CTL_TRACE_CHUNKS, pushed
 *   with compareExchange) and never freed while the lab lives: a thread's
 *   chunks are reused in its later sessions, and release() (Lab.close())
 *   or releaseContext() (a reaped device's, from the host) hands them to
 *   new threads, once their events are no longer the current session's. A thread that fills CTL_TRACE_CHUNK_LIMIT
 *   chunks in a session counts further events as dropped.
 * - start() and stop() may run in any thread; one session at a time
 *   (CTL_TRACE_STATE: EBUSY while one records, EINVAL when none does).
 */
import { DmaBufError } from "../errno.js";
import type { Arena } from "../memory/arena.js";
import {
  CTL_TRACE_CHUNK_LIMIT, CTL_TRACE_CHUNKS, CTL_TRACE_IDS, CTL_TRACE_MASK, CTL_TRACE_SESSION, CTL_TRACE_START_NS,
  CTL_TRACE_STATE,
} from "../memory/layout.js";
import {
  ALL_CATEGORIES, CATEGORIES, EVENT_BYTES, EV_NARGS, EV_T0, EV_T1, EV_TYPE,
  type RawEvent, type TraceCategory, type TraceData, type TraceThread,
} from "./events.js";

/** Chunk header words (byte offsets in a chunk). */
export const CH_NEXT = 0; // u32: the next chunk in the lab-wide list
export const CH_OWNER = 4; // u32: the owning tracer's id (0: free for any thread to claim)
export const CH_SESSION = 8; // u32: the session its events belong to
export const CH_SEQ = 12; // u32: its place in the owner's chunks of that session
export const CH_COUNT = 16; // u32: events published (Atomics.store by the owner)
export const CH_DROPPED = 20; // u32: events lost once the owner's chunks were full
export const CH_CONTEXT = 24; // u32: the owner's device fence context (0: not a device)
export const CH_TRACER = 28; // u32: the id of the tracer whose events it holds (kept when released)
export const CH_NAME = 32; // 32 bytes: the owner's name, UTF-8, NUL-padded
export const CH_HEADER = 64;
export const CHUNK_BYTES = 256 * 1024;
export const CHUNK_EVENTS = (CHUNK_BYTES - CH_HEADER) / EVENT_BYTES;
const NAME_BYTES = 32;
const DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024;

const IDLE = 0;
const RECORDING = 1;
const COLLECTING = 2;

export interface TraceStartOptions {
  /** What to record (default: every category). */
  categories?: TraceCategory[];
  /** The most each thread may record in this session, in bytes (default 8 MiB: 131k events). */
  bufferBytes?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Tracer {
  private readonly u32: Uint32Array;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly maskIndex: number;
  private readonly sessionIndex: number;
  private id = 0;
  /** The session this thread's chunks are set up for. */
  private session = 0;
  /** This thread's chunks, claimed once and reused every session. */
  private readonly chunks: number[] = [];
  private used = 0;
  private chunk = 0;
  private count = 0;
  private dropped = 0;
  private threadName = "";
  private context = 0;
  /** read(): how far this thread has read each chunk. */
  private readonly cursors = new Map<number, number>();
  /** read(): the session the cursors belong to. */
  private cursorSession = 0;

  /** onThread: told each setThread() (the sanitizer names its agent the same way). */
  constructor(private readonly arena: Arena, readonly now: () => number,
    private readonly onThread: (name: string, context: number) => void = () => {}) {
    this.u32 = arena.u32;
    this.i32 = arena.i32;
    this.f64 = new Float64Array(arena.buffer);
    this.maskIndex = arena.control(CTL_TRACE_MASK) >>> 2;
    this.sessionIndex = arena.control(CTL_TRACE_SESSION) >>> 2;
  }

  /**
   * Whether category `cat` is being recorded: the one check on every trace
   * point. A plain load: a thread may record a few events after stop() or
   * miss a few after start(), never a torn one (each event is published).
   */
  on(cat: number): boolean {
    return (this.u32[this.maskIndex] & cat) !== 0;
  }

  /** Names this thread's track (a device passes its fence context). */
  setThread(name: string, context = 0): void {
    this.threadName = name;
    this.context = context;
    this.onThread(name, context);
    if (this.chunk !== 0) this.writeIdentity(this.chunk);
  }

  get recording(): boolean {
    return Atomics.load(this.i32, this.arena.control(CTL_TRACE_STATE) >>> 2) === RECORDING;
  }

  // ---- recording (this thread only) ----------------------------------------

  /**
   * Appends one event. `args` beyond EV_NARGS are ignored; missing ones are 0.
   * Callers check on(cat) first.
   */
  record(type: number, code: number, t0: number, t1: number,
    a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0, i = 0, j = 0, k = 0): void {
    if (this.u32[this.sessionIndex] !== this.session) this.beginSession();
    if (this.count === CHUNK_EVENTS && !this.nextChunk()) {
      this.dropped++;
      if (this.chunk !== 0) this.u32[(this.chunk + CH_DROPPED) >>> 2] = this.dropped;
      return;
    }
    const at = this.chunk + CH_HEADER + this.count * EVENT_BYTES;
    const f64 = this.f64;
    const u32 = this.u32;
    f64[(at + EV_T0) >>> 3] = t0;
    f64[(at + EV_T1) >>> 3] = t1;
    const w = (at + EV_TYPE) >>> 2;
    u32[w] = type | (code << 8);
    u32[w + 1] = a; u32[w + 2] = b; u32[w + 3] = c; u32[w + 4] = d; u32[w + 5] = e;
    u32[w + 6] = f; u32[w + 7] = g; u32[w + 8] = h; u32[w + 9] = i; u32[w + 10] = j; u32[w + 11] = k;
    this.count++;
    // Publish: the event's words above are ordered before the new count.
    Atomics.store(u32, (this.chunk + CH_COUNT) >>> 2, this.count);
  }

  /** First event of a session: this thread's chunks start over. */
  private beginSession(): void {
    this.session = Atomics.load(this.u32, this.sessionIndex);
    this.used = 0;
    this.chunk = 0;
    this.count = 0;
    this.dropped = 0;
    // Not even one chunk (memory is short): every event of the session is
    // dropped, with no chunk to count them in; count = CHUNK_EVENTS makes
    // each event try for a chunk again.
    if (!this.nextChunk()) this.count = CHUNK_EVENTS;
  }

  /** Moves to the next chunk (claiming or making one); false when none may be had. */
  private nextChunk(): boolean {
    const limit = this.u32[this.arena.control(CTL_TRACE_CHUNK_LIMIT) >>> 2];
    if (this.used >= limit) return false;
    let chunk = this.chunks[this.used];
    if (chunk === undefined) {
      chunk = this.claimChunk();
      if (chunk === 0) return false;
      this.chunks.push(chunk);
    }
    const u32 = this.u32;
    Atomics.store(u32, (chunk + CH_COUNT) >>> 2, 0);
    u32[(chunk + CH_SEQ) >>> 2] = this.used;
    u32[(chunk + CH_DROPPED) >>> 2] = this.dropped;
    this.writeIdentity(chunk);
    // The session last: a collector that sees it sees the reset count.
    Atomics.store(u32, (chunk + CH_SESSION) >>> 2, this.session);
    this.used++;
    this.chunk = chunk;
    this.count = 0;
    return true;
  }

  private writeIdentity(chunk: number): void {
    const u32 = this.u32;
    u32[(chunk + CH_OWNER) >>> 2] = this.tracerId();
    u32[(chunk + CH_TRACER) >>> 2] = this.tracerId();
    u32[(chunk + CH_CONTEXT) >>> 2] = this.context;
    const name = encoder.encode(this.threadName || `thread ${this.tracerId()}`).subarray(0, NAME_BYTES - 1);
    const u8 = this.arena.u8;
    u8.fill(0, chunk + CH_NAME, chunk + CH_NAME + NAME_BYTES);
    u8.set(name, chunk + CH_NAME);
  }

  private tracerId(): number {
    if (this.id === 0) this.id = Atomics.add(this.u32, this.arena.control(CTL_TRACE_IDS) >>> 2, 1) + 1;
    return this.id;
  }

  /** A free chunk of the lab-wide list (owner 0), or a new one linked into it; 0 when memory is short. */
  private claimChunk(): number {
    const id = this.tracerId();
    const head = this.arena.control(CTL_TRACE_CHUNKS) >>> 2;
    for (let c = Atomics.load(this.u32, head); c !== 0; c = Atomics.load(this.u32, (c + CH_NEXT) >>> 2)) {
      // A free chunk still holding this session's events (its thread ended
      // mid-session) is kept for the collector.
      if (Atomics.load(this.u32, (c + CH_SESSION) >>> 2) === this.session) continue;
      if (Atomics.compareExchange(this.u32, (c + CH_OWNER) >>> 2, 0, id) === 0) return c;
    }
    let chunk: number;
    try {
      chunk = this.arena.user.alloc(this.arena.user.orderFor(CHUNK_BYTES, 64), "trace_chunk");
    } catch (e) {
      if (e instanceof DmaBufError && e.code === "ENOMEM") return 0;
      throw e;
    }
    this.u32.fill(0, chunk >>> 2, (chunk + CH_HEADER) >>> 2);
    this.u32[(chunk + CH_OWNER) >>> 2] = id;
    // Publish: the header is written before the chunk is reachable from the list.
    for (;;) {
      const first = Atomics.load(this.u32, head);
      Atomics.store(this.u32, (chunk + CH_NEXT) >>> 2, first);
      if (Atomics.compareExchange(this.u32, head, first, chunk) === first) return chunk;
    }
  }

  /**
   * Hands back the chunks of a device thread that is gone (its worker
   * terminated, so it writes nothing any more), found by its fence context.
   */
  releaseContext(context: number): void {
    if (context === 0) return;
    const u32 = this.u32;
    for (let c = Atomics.load(u32, this.arena.control(CTL_TRACE_CHUNKS) >>> 2); c !== 0; c = Atomics.load(u32, (c + CH_NEXT) >>> 2)) {
      if (u32[(c + CH_CONTEXT) >>> 2] === context) Atomics.store(u32, (c + CH_OWNER) >>> 2, 0);
    }
  }

  /** Hands this thread's chunks back for other threads to claim (its lab view is closing). */
  release(): void {
    for (const c of this.chunks) Atomics.store(this.u32, (c + CH_OWNER) >>> 2, 0);
    this.chunks.length = 0;
    this.used = 0;
    this.chunk = 0;
    this.session = 0;
  }

  // ---- sessions (any thread) ----------------------------------------------

  /** Starts recording in every thread of the lab. EBUSY while a session records. */
  start(options: TraceStartOptions = {}): void {
    const mask = categoryMask(options.categories);
    const bufferBytes = options.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    if (!Number.isSafeInteger(bufferBytes) || bufferBytes < CHUNK_BYTES) {
      throw new DmaBufError("EINVAL", "trace_start", `bufferBytes ${bufferBytes} must be an integer of at least ${CHUNK_BYTES}`);
    }
    const state = this.arena.control(CTL_TRACE_STATE) >>> 2;
    if (Atomics.compareExchange(this.i32, state, IDLE, RECORDING) !== IDLE) {
      throw new DmaBufError("EBUSY", "trace_start", "a trace session is already recording in this lab (stop() it first)");
    }
    this.u32[this.arena.control(CTL_TRACE_CHUNK_LIMIT) >>> 2] = Math.floor(bufferBytes / CHUNK_BYTES);
    Atomics.add(this.u32, this.sessionIndex, 1);
    this.f64[this.arena.control(CTL_TRACE_START_NS) >>> 3] = this.now();
    // Publish: the session number is stored before the mask that turns recording on.
    Atomics.store(this.u32, this.maskIndex, mask);
  }

  /**
   * Stops recording and collects every thread's events of the session.
   * EINVAL when no session records. Events a thread records while this
   * collects (it read the mask just before) may or may not be included.
   */
  stop(): TraceData {
    const state = this.arena.control(CTL_TRACE_STATE) >>> 2;
    if (Atomics.compareExchange(this.i32, state, RECORDING, COLLECTING) !== RECORDING) {
      throw new DmaBufError("EINVAL", "trace_stop", "no trace session is recording in this lab");
    }
    const mask = Atomics.exchange(this.u32, this.maskIndex, 0);
    const stopNs = this.now();
    try {
      const session = Atomics.load(this.u32, this.sessionIndex);
      return {
        session,
        categories: categoryNames(mask),
        startNs: this.f64[this.arena.control(CTL_TRACE_START_NS) >>> 3],
        stopNs,
        threads: this.collect(session, false),
      };
    } finally {
      Atomics.store(this.i32, state, IDLE);
    }
  }

  /**
   * The events recorded since this thread's last read() (all of them at
   * the first), without stopping: for live views such as the web page.
   * Empty when no session records.
   */
  read(): TraceThread[] {
    if (!this.recording) return [];
    const session = Atomics.load(this.u32, this.sessionIndex);
    if (session !== this.cursorSession) {
      this.cursors.clear();
      this.cursorSession = session;
    }
    return this.collect(session, true);
  }

  private collect(session: number, incremental: boolean): TraceThread[] {
    const u32 = this.u32;
    const byOwner = new Map<number, { thread: TraceThread; parts: { seq: number; events: RawEvent[] }[] }>();
    const head = this.arena.control(CTL_TRACE_CHUNKS) >>> 2;
    for (let c = Atomics.load(u32, head); c !== 0; c = Atomics.load(u32, (c + CH_NEXT) >>> 2)) {
      if (Atomics.load(u32, (c + CH_SESSION) >>> 2) !== session) continue;
      const count = Atomics.load(u32, (c + CH_COUNT) >>> 2);
      const from = incremental ? this.cursors.get(c) ?? 0 : 0;
      if (incremental) this.cursors.set(c, count);
      // By the tracer whose events it holds: a released chunk (its thread ended) still names it.
      const tracer = u32[(c + CH_TRACER) >>> 2];
      let entry = byOwner.get(tracer);
      if (entry === undefined) {
        const name = readName(this.arena.u8, c + CH_NAME);
        entry = { thread: { id: tracer, name, context: u32[(c + CH_CONTEXT) >>> 2], dropped: 0, events: [] }, parts: [] };
        byOwner.set(tracer, entry);
      }
      entry.thread.dropped = Math.max(entry.thread.dropped, u32[(c + CH_DROPPED) >>> 2]);
      entry.parts.push({ seq: u32[(c + CH_SEQ) >>> 2], events: this.decode(c, from, count) });
    }
    const threads: TraceThread[] = [];
    for (const { thread, parts } of byOwner.values()) {
      parts.sort((x, y) => x.seq - y.seq);
      for (const p of parts) for (const e of p.events) thread.events.push(e);
      threads.push(thread);
    }
    return threads.sort((x, y) => x.id - y.id);
  }

  private decode(chunk: number, from: number, count: number): RawEvent[] {
    const out: RawEvent[] = [];
    for (let n = from; n < count; n++) {
      const at = chunk + CH_HEADER + n * EVENT_BYTES;
      const w = (at + EV_TYPE) >>> 2;
      const word = this.u32[w];
      out.push({
        type: word & 0xff,
        code: word >>> 8,
        t0: this.f64[(at + EV_T0) >>> 3],
        t1: this.f64[(at + EV_T1) >>> 3],
        args: this.argsAt(w + 1),
      });
    }
    return out;
  }

  private argsAt(w: number): number[] {
    const u32 = this.u32;
    const args = new Array<number>(EV_NARGS);
    for (let i = 0; i < EV_NARGS; i++) args[i] = u32[w + i];
    return args;
  }
}

function readName(u8: Uint8Array, at: number): string {
  let end = at;
  while (end < at + NAME_BYTES && u8[end] !== 0) end++;
  return decoder.decode(u8.slice(at, end));
}

/** The mask for a list of category names (EINVAL naming an unknown one); all when none is given. */
export function categoryMask(categories: readonly string[] | undefined): number {
  if (categories === undefined) return ALL_CATEGORIES;
  if (!Array.isArray(categories) || categories.length === 0) {
    throw new DmaBufError("EINVAL", "trace_start", `categories ${JSON.stringify(categories)} must be a non-empty list of ${Object.keys(CATEGORIES).join(", ")}`);
  }
  let mask = 0;
  for (const c of categories) {
    const bit = (CATEGORIES as Record<string, number>)[c];
    if (typeof c !== "string" || !Object.hasOwn(CATEGORIES, c)) {
      throw new DmaBufError("EINVAL", "trace_start", `category ${JSON.stringify(c)} is unknown (categories: ${Object.keys(CATEGORIES).join(", ")})`);
    }
    mask |= bit;
  }
  return mask;
}

export function categoryNames(mask: number): TraceCategory[] {
  return (Object.keys(CATEGORIES) as TraceCategory[]).filter((c) => (mask & CATEGORIES[c]) !== 0);
}

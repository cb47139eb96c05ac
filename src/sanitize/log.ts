/*
 * The sanitizer's log: the words one thread appends to its own chunks of
 * user memory, and the reader that walks every thread's chunks.
 *
 * Contract:
 * - A chunk (CHUNK_BYTES, from user memory) belongs to one agent (a
 *   thread's lab view) for the lab's whole life: only that thread appends to
 *   it, with plain stores, then publishes with Atomics.store of LG_USED (the
 *   words used). A reader that loads LG_USED sees every record below it.
 * - Records are variable-length runs of u32 words, never split across
 *   chunks; the first word is tag | length << 8 (the words after it):
 *     REC_CLOCK   c[0..n): the agent's vector clock at that point (c[i] is
 *                 agent i+1's component). Immutable once written: fences
 *                 and jobs point at it (agent.ts), so chunks are never
 *                 reused while the lab lives.
 *     REC_ACCESS  ACC_* below: one access to a dma-buf's bytes.
 * - Chunks are linked once into a lab-wide list (CTL_SAN_CHUNKS, pushed with
 *   compareExchange): the only lab-global write, once per chunk.
 * - A thread that would pass CTL_SAN_CHUNK_LIMIT chunks, or finds user memory
 *   short, counts what it could not write in LG_DROPPED: the report then
 *   says it is incomplete.
 */
import { DmaBufError } from "../errno.js";
import type { Arena } from "../memory/arena.js";
import { CTL_SAN_CHUNK_LIMIT, CTL_SAN_CHUNKS } from "../memory/layout.js";

/** Chunk header (byte offsets). */
export const LG_NEXT = 0; // u32: the next chunk in the lab-wide list
export const LG_AGENT = 4; // u32: the owning agent's id
export const LG_SEQ = 8; // u32: its place among the agent's chunks
export const LG_USED = 12; // u32: words of records published (Atomics.store by the owner)
export const LG_DROPPED = 16; // u32: records the owner could not write (chunks full or memory short)
export const LG_CONTEXT = 20; // u32: the owner's device fence context, low word (0: not a device)
export const LG_NAME = 32; // 32 bytes: the owner's name, UTF-8, NUL-padded
export const LG_HEADER = 64;
export const CHUNK_BYTES = 64 * 1024;
const CHUNK_WORDS = (CHUNK_BYTES - LG_HEADER) >>> 2;
const NAME_BYTES = 32;
/** The default per-thread limit: 8 MiB of log (about 100k accesses). */
export const DEFAULT_LOG_BYTES = 8 * 1024 * 1024;

export const REC_CLOCK = 1;
export const REC_ACCESS = 2;

/** Access record words, after the tag word (indices in words). */
export const ACC_BUFFER = 1; // the dma-buf record's offset
export const ACC_GENERATION = 2; // its generation when accessed
export const ACC_OFFSET = 3; // range start in the buffer
export const ACC_LENGTH = 4; // range length
export const ACC_FLAGS = 5; // AF_* below
export const ACC_KIND = 6; // what made it: AK_* (low byte) | code << 8 (syscall or job kind)
export const ACC_CLOCK = 7; // the REC_CLOCK of the agent when the access began
export const ACC_EPOCH = 8; // the agent's own component when it ended
export const ACC_FENCE_CTX = 9; // the fence that stands for it (rw own fence, job fence), low words
export const ACC_FENCE_SEQNO = 10;
export const ACC_T0 = 11; // f64 over two words: lab clock ns when it began (for timelines)
export const ACC_T1 = 13; // f64: when it ended
export const ACC_WORDS = 15;

export const AF_WRITE = 1;
/** Through an mmap of the buffer (a declared access: DmaBufMapping.access). */
export const AF_MMAP = 2;
/** An mmap access outside a SYNC START/END bracket of this thread that allows it. */
export const AF_UNBRACKETED = 4;
/** The agent had lost an edge before (a record it needed was dropped): no race is reported from it. */
export const AF_UNSURE = 8;

/** AK_*: the kind of access; the code (ACC_KIND >> 8) says more. */
export const AK_RW = 1; // the read/write path; code: RW_SYSCALLS index
export const AK_CPU = 2; // between DMA_BUF_IOCTL_SYNC START and END; code 0
export const AK_MMAP = 3; // declared mmap access; code 0
export const AK_JOB = 4; // a device job's DMA range; code: JOB_KINDS index
export const AK_IO = 5; // a file transfer into or out of the buffer (copy_file_range, DMA_BUF_IOCTL_RW_FILE); code 0

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One thread's log: appends records to its own chunks. */
export class LogWriter {
  private chunk = 0;
  private used = 0;
  private chunks = 0;
  private dropped = 0;
  private name = "";
  private context = 0;

  constructor(private readonly arena: Arena, private readonly agent: () => number) {}

  /** Names the owner (the trace's thread name; a device's context). */
  setOwner(name: string, context: number): void {
    this.name = name;
    this.context = context;
    if (this.chunk !== 0) this.writeOwner(this.chunk);
  }

  /**
   * Room for a record of `words` words (tag included): the word index of its
   * first word, or -1 when it cannot be written (counted as dropped).
   * Then write the words and publish().
   */
  reserve(words: number): number {
    if (this.chunk === 0 || this.used + words > CHUNK_WORDS) {
      if (!this.nextChunk()) {
        this.dropped++;
        if (this.chunk !== 0) Atomics.store(this.arena.u32, (this.chunk + LG_DROPPED) >>> 2, this.dropped);
        return -1;
      }
    }
    return ((this.chunk + LG_HEADER) >>> 2) + this.used;
  }

  /** Publishes the record reserve() placed: its words were written before this store. */
  publish(words: number): void {
    this.used += words;
    Atomics.store(this.arena.u32, (this.chunk + LG_USED) >>> 2, this.used);
  }

  /** Whether records were lost. */
  get lossy(): boolean {
    return this.dropped > 0;
  }

  private nextChunk(): boolean {
    const u32 = this.arena.u32;
    if (this.chunks >= u32[this.arena.control(CTL_SAN_CHUNK_LIMIT) >>> 2]) return false;
    let chunk: number;
    try {
      chunk = this.arena.user.alloc(this.arena.user.orderFor(CHUNK_BYTES, 64), "sanitize_log");
    } catch (e) {
      if (e instanceof DmaBufError && e.code === "ENOMEM") return false;
      throw e;
    }
    u32.fill(0, chunk >>> 2, (chunk + LG_HEADER) >>> 2);
    u32[(chunk + LG_AGENT) >>> 2] = this.agent();
    u32[(chunk + LG_SEQ) >>> 2] = this.chunks;
    u32[(chunk + LG_DROPPED) >>> 2] = this.dropped;
    this.writeOwner(chunk);
    const head = this.arena.control(CTL_SAN_CHUNKS) >>> 2;
    // Publish: the header is written before the chunk is reachable from the list.
    for (;;) {
      const first = Atomics.load(u32, head);
      Atomics.store(u32, (chunk + LG_NEXT) >>> 2, first);
      if (Atomics.compareExchange(u32, head, first, chunk) === first) break;
    }
    this.chunks++;
    this.chunk = chunk;
    this.used = 0;
    return true;
  }

  private writeOwner(chunk: number): void {
    this.arena.u32[(chunk + LG_CONTEXT) >>> 2] = this.context;
    const name = encoder.encode(this.name || `thread ${this.agent()}`).subarray(0, NAME_BYTES - 1);
    const u8 = this.arena.u8;
    u8.fill(0, chunk + LG_NAME, chunk + LG_NAME + NAME_BYTES);
    u8.set(name, chunk + LG_NAME);
  }
}

/** One agent's published chunks, in order. */
export interface AgentLog {
  agent: number;
  name: string;
  context: number;
  dropped: number;
  /** Word ranges [from, to) of its records, chunk after chunk. */
  ranges: [number, number][];
}

/** Every agent's published log (any thread, any time). */
export function readLogs(arena: Arena): AgentLog[] {
  const u32 = arena.u32;
  const byAgent = new Map<number, { log: AgentLog; parts: { seq: number; range: [number, number] }[] }>();
  for (let c = Atomics.load(u32, arena.control(CTL_SAN_CHUNKS) >>> 2); c !== 0; c = Atomics.load(u32, (c + LG_NEXT) >>> 2)) {
    const agent = u32[(c + LG_AGENT) >>> 2];
    const used = Atomics.load(u32, (c + LG_USED) >>> 2);
    let entry = byAgent.get(agent);
    if (entry === undefined) {
      entry = { log: { agent, name: "", context: 0, dropped: 0, ranges: [] }, parts: [] };
      byAgent.set(agent, entry);
    }
    entry.log.dropped = Math.max(entry.log.dropped, Atomics.load(u32, (c + LG_DROPPED) >>> 2));
    const seq = u32[(c + LG_SEQ) >>> 2];
    // The newest chunk names the owner as it last called itself.
    if (entry.parts.every((p) => p.seq < seq)) {
      entry.log.name = readName(arena.u8, c + LG_NAME);
      entry.log.context = u32[(c + LG_CONTEXT) >>> 2];
    }
    const from = (c + LG_HEADER) >>> 2;
    entry.parts.push({ seq, range: [from, from + used] });
  }
  const logs: AgentLog[] = [];
  for (const { log, parts } of byAgent.values()) {
    parts.sort((a, b) => a.seq - b.seq);
    log.ranges = parts.map((p) => p.range);
    logs.push(log);
  }
  return logs.sort((a, b) => a.agent - b.agent);
}

function readName(u8: Uint8Array, at: number): string {
  let end = at;
  while (end < at + NAME_BYTES && u8[end] !== 0) end++;
  return decoder.decode(u8.slice(at, end));
}

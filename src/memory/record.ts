/*
 * Records: the typed view of the arena's records, and the one place that
 * checks what an offset from another thread names.
 *
 * Every record in the sync heap (fences, timelines, reservation objects,
 * dma-bufs, memfds, IOMMUs, attachments, devices, rings, jobs and the blocks
 * they own) has a TYPE and a GENERATION, kept outside the record in a side
 * table of the allocator's metadata (layout.syncTags: one u32 per sync-heap
 * granule, `generation << 8 | type`, at the block's first granule). Outside,
 * because the buddy allocator writes its free-list links into a freed
 * block's first 8 bytes and the wasm engine reads fence records at fixed
 * offsets (FENCE_* in assembly/abi.ts): a tag word inside the record would
 * be overwritten on free, or move the engine's ABI.
 *
 *   stamp(offset, type)   a fresh block becomes a live record of `type`
 *                         (Atomics.store: the record's birth; the creator
 *                         publishes its refcount with a store of its own,
 *                         and views taken from offsets count references
 *                         only while that refcount is above zero)
 *   retire(offset, type)  the record's life ends: type FREE and the
 *                         generation + 1, in one compareExchange from the
 *                         live word (EINVAL, nothing changed, when the block
 *                         is not a live record of that type: a double free).
 *                         Every free retires first, and so does parking a
 *                         fence record in the fence-record cache.
 *   check(offset, type, syscall, errno, generation?)
 *                         the generation of the live record of `type` at
 *                         `offset`; anything else (not a number, outside the
 *                         sync heap, not a block start, another type, a freed
 *                         record, a generation that differs) is `errno` with
 *                         nothing touched.
 *
 * Interior granules of a block are always FREE (only a block's first
 * granule is ever stamped, and retire clears it), so an offset inside a
 * record never passes check(). The generation is 24 bits: a token that
 * carries one (an fd token, a share() token) is refused once its record
 * has been freed, until the same granule has been freed 2^24 times more.
 *
 * RecordView: named word, atomic and f64 accessors over (arena, offset), the
 * one set of accessors every record type uses (fields are byte offsets,
 * named by each record's module: DMABUF_SIZE, RESV_COUNT, ...).
 *
 * Name fields (readName/writeName): NAME_BYTES of UTF-8, NUL-padded, as
 * timelines, dma-bufs, memfds and devices keep their names.
 */
import { describe } from "../args.js";
import { DmaBufError, hex, type ErrnoCode } from "../errno.js";
import type { Layout } from "./layout.js";

/** Record types, as stored in the low byte of a record's tag word. 0 is a free (or never stamped) block. */
export const RecordType = {
  free: 0,
  fence: 1,
  fenceArrayBlock: 2,
  fenceChainBlock: 3,
  timeline: 4,
  resv: 5,
  resvSlots: 6,
  dmaBuf: 7,
  dmaBufPieces: 8,
  dmaBufBacking: 9,
  memfd: 10,
  iommu: 11,
  attachment: 12,
  device: 13,
  ring: 14,
  job: 15,
  storage: 16,
  ioUringFiles: 17,
  ioUringBuffers: 18,
  dmaToken: 19,
  dmaMap: 20,
  flight: 21,
  bufferQueue: 22,
} as const;
export type RecordTypeName = keyof typeof RecordType;
export type RecordTypeId = (typeof RecordType)[RecordTypeName];

const TYPE_MASK = 0xff;
const GENERATION_SHIFT = 8;
const GENERATION_MASK = 0xffffff;

/** The name of a record type id ("fence", "dmaBuf", ...; "unknown(n)" for an id no module has). */
export function recordTypeName(type: number): string {
  for (const [name, id] of Object.entries(RecordType)) if (id === type) return name;
  return `unknown(${type})`;
}

/** A structured-clonable reference to one record's one life: what tokens carry. */
export interface RecordRef {
  offset: number;
  generation: number;
}

export class RecordTable {
  private readonly i32: Int32Array;
  /** First word of the tag table (an Int32Array index). */
  private readonly first: number;
  private readonly base: number;
  private readonly end: number;
  private readonly shift: number;

  /** The table of the arena whose memory `i32` views, with `layout`; the sync heap's granules are 2^granuleShift bytes. */
  constructor(i32: Int32Array, layout: Layout, granuleShift: number) {
    this.i32 = i32;
    this.first = layout.syncTags >>> 2;
    this.base = layout.syncBase;
    this.end = layout.syncBase + layout.syncBytes;
    this.shift = granuleShift;
  }

  /** The tag word's index for a block start, or -1 for anything that is not a granule of the sync heap. */
  private index(offset: unknown): number {
    if (typeof offset !== "number" || !Number.isInteger(offset) || offset < this.base || offset >= this.end) return -1;
    const rel = offset - this.base;
    if ((rel & ((1 << this.shift) - 1)) !== 0) return -1;
    return this.first + (rel >>> this.shift);
  }

  /** The raw tag word at `offset` (0 for an offset that is no granule). */
  private tag(offset: unknown): number {
    const i = this.index(offset);
    return i < 0 ? 0 : Atomics.load(this.i32, i);
  }

  typeAt(offset: unknown): number {
    return this.tag(offset) & TYPE_MASK;
  }

  generationAt(offset: unknown): number {
    return (this.tag(offset) >>> GENERATION_SHIFT) & GENERATION_MASK;
  }

  /**
   * Marks the fresh block at `offset` (just allocated, or taken from a
   * record cache) as a live record of `type`; returns its generation.
   */
  stamp(offset: number, type: RecordTypeId): number {
    const i = this.index(offset);
    if (i < 0 || type === RecordType.free) throw new DmaBufError("EINVAL", "record_stamp", `cannot stamp ${hex(offset)} as type ${type}`);
    const generation = (Atomics.load(this.i32, i) >>> GENERATION_SHIFT) & GENERATION_MASK;
    // The record's birth: a seq-cst store after the creator zeroed the block.
    Atomics.store(this.i32, i, (generation << GENERATION_SHIFT) | type);
    return generation;
  }

  /** Ends the life of the live record of `type` at `offset` (before its block is freed or parked). */
  retire(offset: number, type: RecordTypeId, syscall: string): void {
    const i = this.index(offset);
    const live = i < 0 ? 0 : Atomics.load(this.i32, i);
    if (i < 0 || (live & TYPE_MASK) !== type ||
        Atomics.compareExchange(this.i32, i, live, nextGeneration(live)) !== live) {
      throw new DmaBufError("EINVAL", syscall,
        `${hex(offset)} is not a live ${recordTypeName(type)} record (it holds ${describeTag(live)}; double free?)`);
    }
  }

  /**
   * The generation of the live record of `type` at `offset`; `errno` with
   * nothing touched when there is none, or when `generation` is given and
   * differs (the record was freed and its block reused).
   */
  check(offset: unknown, type: RecordTypeId, syscall: string, errno: ErrnoCode = "EINVAL", generation?: unknown): number {
    const t = this.tag(offset);
    const g = (t >>> GENERATION_SHIFT) & GENERATION_MASK;
    if ((t & TYPE_MASK) !== type || type === RecordType.free) {
      throw new DmaBufError(errno, syscall,
        `${describeOffset(offset)} is not a ${recordTypeName(type)} record (it holds ${describeTag(t)})`);
    }
    if (generation !== undefined && generation !== g) {
      throw new DmaBufError(errno, syscall,
        `the ${recordTypeName(type)} record at ${hex(offset as number)} is generation ${g}, not ${describeOffset(generation)}: ` +
        "the record it named was freed");
    }
    return g;
  }

  /** A RecordRef for the live record of `type` at `offset` (what a token carries). */
  ref(offset: number, type: RecordTypeId): RecordRef {
    return { offset, generation: this.check(offset, type, "record_ref") };
  }
}

const nextGeneration = (tag: number): number =>
  ((((tag >>> GENERATION_SHIFT) + 1) & GENERATION_MASK) << GENERATION_SHIFT) | RecordType.free;

function describeTag(tag: number): string {
  const type = tag & TYPE_MASK;
  return type === RecordType.free ? "no live record" : `a ${recordTypeName(type)} record`;
}

function describeOffset(v: unknown): string {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 ? hex(v) : describe(v);
}

/**
 * Takes a reference on a record whose refcount word is at `index` (an
 * Int32Array index) only while that count is above zero (kref_get_unless_zero):
 * false when it is zero (the record is being released).
 */
export function refUnlessZero(i32: Int32Array, index: number): boolean {
  for (let n = Atomics.load(i32, index); n > 0; n = Atomics.load(i32, index)) {
    if (Atomics.compareExchange(i32, index, n, n + 1) === n) return true;
  }
  return false;
}

/**
 * Takes a reference on the live record of `type` at `offset` that another
 * thread named (an offset, a token, a handle): check(), then a reference on
 * its refcount field unless it is zero (the record is being released: `errno`),
 * then check() again, as the record may have died and been reborn at the
 * same offset in between; then `put` drops the reference just taken on the
 * new life before `errno`. Returns the generation. Nothing is changed when
 * it fails.
 */
export function getRecord(arena: { readonly i32: Int32Array; readonly records: RecordTable }, offset: unknown, type: RecordTypeId, refcountField: number, syscall: string,
  errno: ErrnoCode, generation: unknown, put: () => void): number {
  const life = arena.records.check(offset, type, syscall, errno, generation);
  const at = offset as number;
  if (!refUnlessZero(arena.i32, (at + refcountField) >>> 2)) {
    throw new DmaBufError(errno, syscall, `the ${recordTypeName(type)} record at ${hex(at)} is being released`);
  }
  try {
    arena.records.check(at, type, syscall, errno, life);
  } catch (e) {
    put();
    throw e;
  }
  return life;
}

/** The typed views of the arena's memory a RecordView reads through (an Arena, a Sync). */
export interface RecordMemory {
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
}

/** Named accessors over one record: fields are byte offsets from the record's start. */
export class RecordView {
  constructor(readonly memory: RecordMemory, readonly offset: number) {}

  /** The Int32Array index of a field (for Atomics.wait/notify). */
  index(field: number): number {
    return (this.offset + field) >>> 2;
  }

  word(field: number): number {
    return this.memory.u32[(this.offset + field) >>> 2];
  }

  setWord(field: number, value: number): void {
    this.memory.u32[(this.offset + field) >>> 2] = value;
  }

  /** Atomics.load of an i32 field. */
  load(field: number): number {
    return Atomics.load(this.memory.i32, (this.offset + field) >>> 2);
  }

  /** Atomics.store of an i32 field (a publish point: say so where it is called). */
  store(field: number, value: number): void {
    Atomics.store(this.memory.i32, (this.offset + field) >>> 2, value);
  }

  /** Atomics.add; returns the old value. */
  add(field: number, delta: number): number {
    return Atomics.add(this.memory.i32, (this.offset + field) >>> 2, delta);
  }

  /** Atomics.sub; returns the old value. */
  sub(field: number, delta: number): number {
    return Atomics.sub(this.memory.i32, (this.offset + field) >>> 2, delta);
  }

  f64(field: number): number {
    return this.memory.f64[(this.offset + field) >>> 3];
  }

  setF64(field: number, value: number): void {
    this.memory.f64[(this.offset + field) >>> 3] = value;
  }
}

/** A name field's size: at most NAME_BYTES - 1 bytes of UTF-8, NUL-padded. */
export const NAME_BYTES = 32;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes a name field; EINVAL from `syscall`, the field unchanged, when `name` (the record's `what`) is too long. */
export function writeName(u8: Uint8Array, at: number, name: string, what: string, syscall: string): void {
  const bytes = encoder.encode(name);
  if (bytes.length > NAME_BYTES - 1) {
    throw new DmaBufError("EINVAL", syscall, `${what} '${name}' is longer than ${NAME_BYTES - 1} bytes`);
  }
  u8.fill(0, at, at + NAME_BYTES);
  u8.set(bytes, at);
}

export function readName(u8: Uint8Array, at: number): string {
  const raw = u8.slice(at, at + NAME_BYTES);
  const end = raw.indexOf(0);
  return decoder.decode(end < 0 ? raw : raw.subarray(0, end));
}

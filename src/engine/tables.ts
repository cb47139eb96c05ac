/*
 * Scatter-gather tables in the arena, built by TypeScript and walked by the
 * engine in one call.
 *
 *   SgTable      copy descriptors {dst, src, len} (SG_DESC_*, 12 bytes)
 *   SegmentList  segments {addr, len} (SG_SEG_*, 8 bytes), for gather,
 *                scatter and checksums
 *
 * Storage-first: the entries live in user memory at `offset`, so a table can
 * be handed to another thread as (offset, count). A table grows by doubling
 * as entries are pushed; free() returns its storage.
 */
import type { Arena } from "../memory/arena.js";
import { DmaBufError } from "../errno.js";
import { SG_DESC_DST, SG_DESC_LEN, SG_DESC_SIZE, SG_DESC_SRC, SG_SEG_ADDR, SG_SEG_LEN, SG_SEG_SIZE } from "./abi.js";

/**
 * A segment list the engine can walk: SG_SEG entries at `offset`. A
 * SegmentList is one; so is a dma-buf's scatter list (DmaBufRecord.segmentTable).
 */
export interface SegmentSource {
  readonly offset: number;
  readonly count: number;
  entry(i: number): { addr: number; len: number };
}

abstract class ArenaTable {
  offset: number;
  capacity: number;
  count = 0;

  protected constructor(protected readonly arena: Arena, capacity: number, readonly entryBytes: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new DmaBufError("EINVAL", "table_alloc", `capacity ${capacity} must be a positive integer`);
    }
    this.capacity = capacity;
    this.offset = this.allocate(capacity);
  }

  private allocate(capacity: number): number {
    const user = this.arena.user;
    return user.alloc(user.orderFor(capacity * this.entryBytes), "table_alloc");
  }

  /** Index of the next entry's first u32 word, growing the storage if full. */
  protected slot(): number {
    if (this.count === this.capacity) {
      const bigger = this.allocate(this.capacity * 2);
      this.arena.u8.copyWithin(bigger, this.offset, this.offset + this.count * this.entryBytes);
      this.arena.user.free(this.offset, undefined, "table_alloc");
      this.offset = bigger;
      this.capacity *= 2;
    }
    return (this.offset + this.count++ * this.entryBytes) >>> 2;
  }

  protected word(entry: number, field: number): number {
    return this.arena.u32[(this.offset + entry * this.entryBytes + field) >>> 2];
  }

  clear(): this {
    this.count = 0;
    return this;
  }

  free(): void {
    this.arena.user.free(this.offset, undefined, "table_free");
    this.count = this.capacity = 0;
  }
}

export class SgTable extends ArenaTable {
  constructor(arena: Arena, capacity = 64) {
    super(arena, capacity, SG_DESC_SIZE);
  }

  /** Appends a copy of len bytes from src to dst (arena offsets). */
  push(dst: number, src: number, len: number): this {
    const i = this.slot();
    const u32 = this.arena.u32;
    u32[i + (SG_DESC_DST >>> 2)] = dst;
    u32[i + (SG_DESC_SRC >>> 2)] = src;
    u32[i + (SG_DESC_LEN >>> 2)] = len;
    return this;
  }

  entry(i: number): { dst: number; src: number; len: number } {
    return { dst: this.word(i, SG_DESC_DST), src: this.word(i, SG_DESC_SRC), len: this.word(i, SG_DESC_LEN) };
  }
}

export class SegmentList extends ArenaTable {
  constructor(arena: Arena, capacity = 64) {
    super(arena, capacity, SG_SEG_SIZE);
  }

  /** Appends the segment [addr, addr + len). */
  push(addr: number, len: number): this {
    const i = this.slot();
    this.arena.u32[i + (SG_SEG_ADDR >>> 2)] = addr;
    this.arena.u32[i + (SG_SEG_LEN >>> 2)] = len;
    return this;
  }

  entry(i: number): { addr: number; len: number } {
    return { addr: this.word(i, SG_SEG_ADDR), len: this.word(i, SG_SEG_LEN) };
  }

  /** The sum of the segment lengths. */
  get totalBytes(): number {
    let total = 0;
    for (let i = 0; i < this.count; i++) total += this.word(i, SG_SEG_LEN);
    return total;
  }
}

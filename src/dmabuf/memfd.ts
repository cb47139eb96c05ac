/*
 * memfd: an anonymous shared-memory file (memfd_create), the page source of
 * udmabuf. Its pages come from the page pool one at a time (shmem pages are
 * order 0), zeroed; its record lives in the arena, so a udmabuf made from it
 * can keep its pages alive from any thread after the memfd is closed.
 *
 * Record (MEMFD_*, 128 bytes in the sync heap):
 *   MEMFD_REFCOUNT  i32: the file's references plus one per udmabuf using it;
 *                   the pages go with the last
 *   MEMFD_SIZE      u32: bytes (ftruncate)
 *   MEMFD_SEALS     u32: F_SEAL_* bits
 *   MEMFD_PAGES     u32: page list, u32 page offsets (in user memory)
 *   MEMFD_CAPACITY  u32: entries the page list has room for
 *   MEMFD_LOCK      a Mutex (32 bytes): guards size, seals and the page list
 *   MEMFD_NAME      32 bytes
 *
 * Rules (memfd_create(2), fcntl(2) F_ADD_SEALS): without MFD_ALLOW_SEALING
 * the file starts sealed with F_SEAL_SEAL. addSeals: F_SEAL_SEAL set: EPERM;
 * unknown bits: EINVAL. truncate: shrinking under F_SEAL_SHRINK or growing
 * under F_SEAL_GROW: EPERM. Out of pages: ENOMEM, nothing changed.
 */
import { RecordType, RecordView, readName, writeName } from "../memory/record.js";
import { DmaBufError, hex } from "../errno.js";
import { describe, flagsArg, stringArg } from "../args.js";
import type { Engine } from "../engine/engine.js";
import { Mutex } from "../memory/mutex.js";
import { PAGE_SIZE } from "../memory/layout.js";
import type { Sync } from "../sync/sync.js";

export const MEMFD_REFCOUNT = 0;
export const MEMFD_SIZE = 4;
export const MEMFD_SEALS = 8;
export const MEMFD_PAGES = 12;
export const MEMFD_CAPACITY = 16;
export const MEMFD_LOCK = 24;
export const MEMFD_NAME = 56;
export const MEMFD_RECORD_SIZE = 88;

export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;
const ALL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

/** Drops a reference on the memfd record at `offset`; the last frees its pages. */
export function memfdUnref(sync: Sync, offset: number): void {
  if (Atomics.sub(sync.i32, (offset + MEMFD_REFCOUNT) >>> 2, 1) !== 1) return;
  const list = sync.u32[(offset + MEMFD_PAGES) >>> 2];
  const pages = Math.ceil(sync.u32[(offset + MEMFD_SIZE) >>> 2] / PAGE_SIZE);
  for (let i = 0; i < pages; i++) sync.arena.pages.free(sync.u32[(list >>> 2) + i], 0, "memfd_release");
  if (list !== 0) sync.arena.user.free(list, undefined, "memfd_release");
  sync.freeRecord(offset, RecordType.memfd);
}

export class Memfd {
  private owned: boolean;
  private readonly lock: Mutex;

  private readonly rec: RecordView;

  private constructor(readonly sync: Sync, readonly engine: Engine, readonly offset: number, owned: boolean) {
    this.owned = owned;
    this.rec = new RecordView(sync, offset);
    this.lock = new Mutex(sync.arena.buffer, offset + MEMFD_LOCK);
  }

  /** memfd_create: an empty file. flags: MFD_CLOEXEC, MFD_ALLOW_SEALING (others EINVAL). */
  static create(sync: Sync, engine: Engine, name: string, flags = 0): Memfd {
    stringArg(name, "memfd_create", "name");
    flagsArg(flags, "memfd_create");
    if ((flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING)) !== 0) {
      throw new DmaBufError("EINVAL", "memfd_create", `flags ${hex(flags)} has unknown bits`);
    }
    const offset = sync.allocRecord(RecordType.memfd, MEMFD_RECORD_SIZE, "memfd_create");
    try {
      writeName(sync.u8, offset + MEMFD_NAME, name, "memfd name", "memfd_create");
    } catch (e) {
      sync.freeRecord(offset, RecordType.memfd);
      throw new DmaBufError("EINVAL", "memfd_create", `name '${name}' is longer than 31 bytes`, { cause: e });
    }
    new Mutex(sync.arena.buffer, offset + MEMFD_LOCK).init();
    sync.u32[(offset + MEMFD_SEALS) >>> 2] = (flags & MFD_ALLOW_SEALING) !== 0 ? 0 : F_SEAL_SEAL;
    Atomics.store(sync.i32, (offset + MEMFD_REFCOUNT) >>> 2, 1);
    return new Memfd(sync, engine, offset, true);
  }

  get name(): string {
    return readName(this.sync.u8, this.offset + MEMFD_NAME);
  }

  get size(): number {
    return this.rec.word(MEMFD_SIZE);
  }

  get seals(): number {
    return this.rec.word(MEMFD_SEALS);
  }

  /** The page offsets backing [0, size), in file order. */
  pages(): number[] {
    const list = this.rec.word(MEMFD_PAGES);
    return Array.from(this.sync.u32.subarray(list >>> 2, (list >>> 2) + Math.ceil(this.size / PAGE_SIZE)));
  }

  /** A view of page `index` of the file (its memory, not a copy). */
  page(index: number): Uint8Array {
    const pages = this.pages();
    if (!Number.isInteger(index) || index < 0 || index >= pages.length) {
      throw new DmaBufError("EINVAL", "memfd_page", `page ${index} is outside the file's ${pages.length} pages`);
    }
    return this.sync.arena.view(pages[index], PAGE_SIZE);
  }

  /** F_ADD_SEALS. */
  addSeals(seals: number): void {
    flagsArg(seals, "F_ADD_SEALS", "seals");
    if ((seals & ~ALL_SEALS) !== 0) {
      throw new DmaBufError("EINVAL", "F_ADD_SEALS", `seals ${hex(seals)} has unknown bits`);
    }
    this.lock.with(() => {
      if ((this.seals & F_SEAL_SEAL) !== 0) {
        throw new DmaBufError("EPERM", "F_ADD_SEALS", "the file is sealed against new seals (F_SEAL_SEAL)");
      }
      this.rec.setWord(MEMFD_SEALS, this.seals | seals);
    });
  }

  /** ftruncate: new pages are zeroed; pages past the new size go back to the pool. */
  truncate(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > 0xffff_f000) {
      throw new DmaBufError("EINVAL", "ftruncate", `size ${describe(size)} is not a valid length`);
    }
    this.lock.with(() => {
      const old = this.size;
      if (size < old && (this.seals & F_SEAL_SHRINK) !== 0) {
        throw new DmaBufError("EPERM", "ftruncate", `shrinking to ${size} bytes is sealed (F_SEAL_SHRINK)`);
      }
      if (size > old && (this.seals & F_SEAL_GROW) !== 0) {
        throw new DmaBufError("EPERM", "ftruncate", `growing to ${size} bytes is sealed (F_SEAL_GROW)`);
      }
      const have = Math.ceil(old / PAGE_SIZE);
      const want = Math.ceil(size / PAGE_SIZE);
      if (want > have) this.grow(have, want);
      else this.pages().slice(want).forEach((p) => this.sync.arena.pages.free(p, 0, "ftruncate"));
      // Bytes past the new end of a kept last page read as zero again.
      if (size < old && size % PAGE_SIZE !== 0) {
        const last = this.sync.u32[(this.rec.word(MEMFD_PAGES) >>> 2) + want - 1];
        this.engine.fill(last + (size % PAGE_SIZE), 0, PAGE_SIZE - (size % PAGE_SIZE));
      }
      this.rec.setWord(MEMFD_SIZE, size);
    });
  }

  /** Under the lock: pages have..want-1, zeroed; all or nothing. */
  private grow(have: number, want: number): void {
    const { sync } = this;
    const user = sync.arena.user;
    let list = this.rec.word(MEMFD_PAGES);
    let fresh = 0;
    if (want > this.rec.word(MEMFD_CAPACITY)) {
      const capacity = Math.max(16, 2 ** Math.ceil(Math.log2(want)));
      fresh = user.alloc(user.orderFor(capacity * 4), "ftruncate");
      sync.u32.copyWithin(fresh >>> 2, list >>> 2, (list >>> 2) + have);
    }
    const taken: number[] = [];
    try {
      for (let i = have; i < want; i++) taken.push(sync.arena.pages.alloc(0, "ftruncate"));
    } catch (e) {
      taken.forEach((p) => sync.arena.pages.free(p, 0, "ftruncate"));
      if (fresh !== 0) user.free(fresh, undefined, "ftruncate");
      throw e;
    }
    if (fresh !== 0) {
      if (list !== 0) user.free(list, undefined, "ftruncate");
      list = fresh;
      this.rec.setWord(MEMFD_PAGES, list);
      this.rec.setWord(MEMFD_CAPACITY, (user.granuleBytes * 2 ** user.orderAt(fresh)) / 4);
    }
    taken.forEach((p, i) => {
      this.engine.fill(p, 0, PAGE_SIZE);
      sync.u32[(list >>> 2) + have + i] = p;
    });
  }

  /** A reference for a user of the pages (udmabuf); dropped with memfdUnref. */
  ref(): void {
    Atomics.add(this.sync.i32, (this.offset + MEMFD_REFCOUNT) >>> 2, 1);
  }

  /** close(2) of the file: the same as put(). */
  close(): void {
    this.put();
  }

  /** close(): the pages live on while a udmabuf uses them. */
  put(): void {
    if (!this.owned) throw new DmaBufError("EBADF", "close", "this memfd is closed");
    this.owned = false;
    memfdUnref(this.sync, this.offset);
  }

  [Symbol.dispose](): void {
    if (this.owned) this.put();
  }

  get closed(): boolean {
    return !this.owned;
  }
}

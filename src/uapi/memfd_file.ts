/*
 * The file operations of a memfd (memfd_create(2)): ftruncate, the seal
 * fcntls and mmap over Memfd (src/dmabuf/memfd.ts), the page source of
 * udmabuf.
 *
 * Contract: ftruncate grows with zeroed pages or shrinks (EPERM under
 * F_SEAL_GROW / F_SEAL_SHRINK); F_ADD_SEALS adds seals (EPERM once
 * F_SEAL_SEAL is set, EINVAL for unknown bits); F_GET_SEALS answers them.
 * mmap (MAP_SHARED; Process.mmap checked the access mode) maps the file's
 * own pages, one view per run of physically adjacent pages: offset page
 * aligned, length > 0 and the page-rounded range within the file, else
 * EINVAL; PROT_WRITE under F_SEAL_WRITE or F_SEAL_FUTURE_WRITE EPERM
 * (memfd_check_seals_mmap). While a writable mapping exists, adding
 * F_SEAL_WRITE is EBUSY (mapping_deny_writable). Shrinking a mapped file is
 * EBUSY too, where the kernel would let it and SIGBUS a later access: the
 * freed pages would go back to the pool under the views.
 * The last reference closes the memfd; its pages live on while a udmabuf
 * holds them.
 */
import { DmaBufError } from "../errno.js";
import { F_SEAL_FUTURE_WRITE, F_SEAL_WRITE, type Memfd } from "../dmabuf/memfd.js";
import { PAGE_SIZE } from "../memory/layout.js";
import { ObjectFile } from "./file.js";
import { DmaBufMapping } from "./mapping.js";
import { PROT_WRITE } from "./uapi.js";

export class MemfdFile extends ObjectFile<Memfd> {
  readonly kind = "memfd";
  /** Mappings of this file, and how many of them are writable. */
  private maps = 0;
  private writableMaps = 0;

  get memfd(): Memfd {
    return this.object;
  }

  truncate(size: number): void {
    if (this.maps > 0 && size < this.object.size) {
      throw new DmaBufError("EBUSY", "ftruncate", `shrinking to ${size} bytes while ${this.maps} mapping(s) of the file exist`);
    }
    this.object.truncate(size);
  }

  addSeals(seals: number): void {
    if ((seals & F_SEAL_WRITE) !== 0 && this.writableMaps > 0) {
      throw new DmaBufError("EBUSY", "F_ADD_SEALS", `F_SEAL_WRITE while ${this.writableMaps} writable shared mapping(s) exist`);
    }
    this.object.addSeals(seals);
  }

  get seals(): number {
    return this.object.seals;
  }

  override mmap(offset: number, length: number, prot: number): DmaBufMapping {
    const memfd = this.object;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) {
      throw new DmaBufError("EINVAL", "mmap", `offset ${offset} is not a multiple of the page size ${PAGE_SIZE}`);
    }
    if (!Number.isSafeInteger(length) || length <= 0) throw new DmaBufError("EINVAL", "mmap", `length ${length} must be positive`);
    const writable = (prot & PROT_WRITE) !== 0;
    if (writable && (memfd.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) !== 0) {
      throw new DmaBufError("EPERM", "mmap", `memfd '${memfd.name}' is sealed against writing (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE)`);
    }
    const first = offset / PAGE_SIZE;
    const count = Math.ceil(length / PAGE_SIZE);
    const pages = memfd.pages();
    if (first + count > pages.length) {
      throw new DmaBufError("EINVAL", "mmap", `pages [${first}, ${first + count}) are past the file's ${pages.length} pages`);
    }
    const views: Uint8Array[] = [];
    for (let i = first; i < first + count;) {
      let j = i + 1;
      while (j < first + count && pages[j] === pages[j - 1] + PAGE_SIZE) j++;
      views.push(memfd.sync.arena.view(pages[i], (j - i) * PAGE_SIZE));
      i = j;
    }
    this.maps++;
    if (writable) this.writableMaps++;
    return new DmaBufMapping(this, offset, count * PAGE_SIZE, views, prot, () => {
      this.maps--;
      if (writable) this.writableMaps--;
    });
  }
}

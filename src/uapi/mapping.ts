/*
 * DmaBufMapping: what mmap() of a dma-buf or memfd fd gives, the lab's
 * vm_area (MAP_SHARED).
 *
 * Contract: `views` are Uint8Arrays over the shared memory, one per
 * physically contiguous chunk of the buffer that the mapped range touches, in
 * buffer order, together covering exactly [offset, offset + length) (length
 * is the requested length rounded up to whole pages). The mapping holds a
 * reference on the file (as vma->vm_file does), so the pages stay while it
 * exists even after every fd is closed, and fdinfo's count includes it.
 * unmap() (process.munmap) drops it; a second unmap is EINVAL. CPU access
 * through the views must be bracketed by DMA_BUF_IOCTL_SYNC START/END.
 * `prot` is what was asked; without an MMU the views of a PROT_READ mapping
 * can still be written, which a real process could not do (SIGSEGV).
 * `onUnmap` lets the file keep count of its mappings (a memfd's seals).
 * access() declares a CPU access through the views, which the lab cannot
 * see by itself (a typed array's stores are not intercepted): a sanitizing
 * lab records it (`onAccess`, src/sanitize) and reports it when no
 * SYNC START/END bracket of this thread allows it; elsewhere it only checks
 * its arguments.
 */
import { DmaBufError } from "../errno.js";
import { describe } from "../args.js";

/**
 * What a mapping holds of its file: one reference, taken with get() and
 * given back at unmap. An OpenFile (file.ts) is one; named here so that
 * this module sits below file.ts, whose mmap() makes mappings.
 */
export interface MappedFile {
  get(): MappedFile;
  put(): void;
}

export class DmaBufMapping {
  private file: MappedFile | null;

  constructor(
    file: MappedFile, readonly offset: number, readonly length: number, readonly views: Uint8Array[],
    readonly prot: number, private readonly onUnmap?: () => void,
    private readonly onAccess?: (offset: number, length: number, write: boolean) => void,
  ) {
    this.file = file.get();
  }

  /**
   * The mapping as one view when the mapped range is physically contiguous
   * (a cma buffer, a range inside one chunk, a non-coherent lab's CPU view);
   * EINVAL otherwise (use `views`).
   */
  get view(): Uint8Array {
    if (this.views.length !== 1) {
      throw new DmaBufError("EINVAL", "mmap", `the mapping spans ${this.views.length} physically separate chunks; use views`);
    }
    return this.views[0];
  }

  /**
   * Declares that this thread reads (write false) or writes [offset,
   * offset + length) of the mapping (offsets within the mapping; default:
   * all of it) by means the lab cannot see. EINVAL for a range outside the
   * mapping or an unmapped mapping.
   */
  access(write: boolean, offset = 0, length = this.length - offset): void {
    if (this.file === null) throw new DmaBufError("EINVAL", "mmap_access", "this mapping is unmapped");
    if (typeof write !== "boolean") throw new DmaBufError("EINVAL", "mmap_access", `write ${describe(write)} is not a boolean`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      throw new DmaBufError("EINVAL", "mmap_access", `range ${describe(offset)}+${describe(length)} is outside the ${this.length}-byte mapping`);
    }
    this.onAccess?.(this.offset + offset, length, write);
  }

  get mapped(): boolean {
    return this.file !== null;
  }

  unmap(): void {
    if (this.file === null) throw new DmaBufError("EINVAL", "munmap", "this mapping is already unmapped");
    const file = this.file;
    this.file = null;
    this.onUnmap?.();
    file.put();
  }
}

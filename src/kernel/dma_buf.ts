/*
 * dma_buf_get / dma_buf_put and sync_file_get_fence: from an fd of this
 * thread's Process (lab.process of the lab set with use_lab) to the kernel
 * objects behind it.
 *
 * Contract:
 *   dma_buf_get(fd)  the struct dma_buf of a dma-buf fd, holding one more
 *                    file reference (fdinfo's count shows it, as get_file
 *                    does); ERR_PTR(-EBADF) for an fd that is not open,
 *                    ERR_PTR(-EINVAL) for one that is not a dma-buf.
 *   get_dma_buf / dma_buf_put  one more / one less such reference.
 *   A dma_buf value is one per buffer (core.ts); its `resv` is the buffer's
 *   dma_resv value, `size`, `exp_name` and `name` are the buffer's.
 *   sync_file_get_fence(fd)  the sync_file's fence with a reference, or null
 *                    when fd is not an open sync_file.
 */
import { DmaBufError, DmaBufFile, SyncFileFile, type DmaBufRecord, type Fence } from "../index.js";
import { adoptFence, currentLab, EBADF, EINVAL, ERR_PTR, intern, type ErrPtr } from "./core.js";
import { kresv, type dma_resv } from "./dma_resv.js";

/** struct dma_buf. */
export class dma_buf {
  /** One view per reference taken through dma_buf_get/get_dma_buf (each an open file of the record). */
  private readonly held: DmaBufRecord[] = [];

  /** The buffer record (valid while a reference is held). */
  record: DmaBufRecord;

  constructor(first: DmaBufRecord) {
    this.record = first;
  }

  get size(): number {
    return this.record.size;
  }

  get exp_name(): string {
    return this.record.exporter;
  }

  get name(): string {
    return this.record.name;
  }

  get resv(): dma_resv {
    return kresv(this.record.resv);
  }

  /** @internal get_dma_buf's step. */
  take(from: DmaBufRecord): void {
    this.record = from.openFile();
    this.held.push(this.record);
  }

  /** @internal dma_buf_put's step; false when no reference was held here. */
  drop(): boolean {
    const view = this.held.pop();
    view?.closeFile();
    this.record = this.held.at(-1) ?? this.record;
    return view !== undefined;
  }
}

/** The dma_buf of an fd, with a reference, or ERR_PTR(-EBADF / -EINVAL). */
export function dma_buf_get(fd: number): dma_buf | ErrPtr {
  const file = currentLab("dma_buf_get").process.lookup(fd);
  if (file === undefined) return ERR_PTR(-EBADF);
  if (!(file instanceof DmaBufFile)) return ERR_PTR(-EINVAL);
  const rec = file.buf;
  const k = intern(rec.sync, rec.offset, dma_buf, () => new dma_buf(rec));
  k.take(rec);
  return k;
}

/** One more reference on a dma_buf got from dma_buf_get. */
export function get_dma_buf(dmabuf: dma_buf): void {
  dmabuf.take(dmabuf.record);
}

/** Drops a reference taken by dma_buf_get or get_dma_buf (EINVAL, thrown, when none is held). */
export function dma_buf_put(dmabuf: dma_buf): void {
  if (!dmabuf.drop()) throw new DmaBufError("EINVAL", "dma_buf_put", "no reference of dma_buf_get is held on this dma_buf");
}

/** The fence of a sync_file fd, with a reference, or null. */
export function sync_file_get_fence(fd: number): Fence | null {
  const file = currentLab("sync_file_get_fence").process.lookup(fd);
  if (!(file instanceof SyncFileFile) || file.syncFile.closed) return null;
  return adoptFence(file.syncFile.fence.get());
}

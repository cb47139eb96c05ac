/*
 * Registered dma-bufs (Pavel Begunkov's "io_uring dma-buf read/write"
 * series): a dma-buf registered into a buffer slot together with the file
 * it will be read from or written to (IORING_REGISTER_BUFFERS_UPDATE with
 * IORING_RSRC_F_EXTENDED_UPDATE and struct io_uring_reg_buffer { iov_uaddr,
 * target_fd, dmabuf_fd }). Fixed I/O then names an address iov_uaddr +
 * offset into the buffer.
 *
 * The token (dma_token, record TOK_*): a dynamic attachment of the dma-buf
 * to the target storage device's IOMMU, made at registration. It has at
 * most one active map (io_dmabuf_map, record MAP_*):
 *   - the first I/O maps it (dma_buf_map_attachment under the resv lock,
 *     after waiting for the buffer's KERNEL-usage fences only); later I/O
 *     reuses it: no IOMMU work per request;
 *   - every request holds a reference on the map it used; the token holds
 *     one on its active map;
 *   - exporter invalidation (dmaBufInvalidateMappings: move_notify without
 *     revoke) drops the token's reference: the map goes when its last
 *     in-flight request completes (the IOMMU mapping stays until then), and
 *     the next request maps again, through a fresh attachment;
 *   - revoke (dmaBufRevoke, permanent) tears the IOMMU mapping down at once
 *     (the lab's revoke does, see attachment.ts): a request whose DMA had not
 *     yet been translated faults (-EFAULT) and no byte lands after the
 *     unmap; every later request is -ENODEV;
 *   - fixed I/O against another file than the registered target is -EINVAL;
 *     a zero-length request completes with 0 and maps nothing;
 *   - the I/O adds no fence to the buffer's reservation object.
 * Token and map words change under the buffer's resv lock, from whichever
 * thread runs the ring's kernel side (the submitter or the SQ thread).
 */
import { DmaBufError, hex } from "../errno.js";
import type { LabCore } from "../lab.js";
import { RecordType } from "../memory/record.js";
import { DmaBufAttachment, dmaBufDynamicAttach, DMA_BIDIRECTIONAL } from "../dmabuf/attachment.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { DMA_RESV_USAGE_KERNEL } from "../sync/resv.js";
import { clipToDevice, pushRanges, settle, StorageRecord, storageRef, storageUnref, type BlockPending } from "../devices/block_io.js";

export const TOK_BUFFER = 0;
export const TOK_STORAGE = 4;
export const TOK_ATTACH = 8;
export const TOK_MAP = 12;
export const TOK_BYTES = 16;
export const TOK_MAPS = 20;
export const TOK_RECORD_SIZE = 24;

export const MAP_REFS = 0;
export const MAP_ATTACH = 4;
export const MAP_IOVA = 8;
export const MAP_BYTES = 12;
export const MAP_RECORD_SIZE = 16;

/** How long a map waits for the buffer's KERNEL-usage fences (a fence of the exporter, a migration). */
const KERNEL_FENCE_WAIT_MS = 5000;

const noMoveNotify = (): void => {};

function w(lab: LabCore, rec: number, off: number): number {
  return lab.sync.u32[(rec + off) >>> 2];
}

function setW(lab: LabCore, rec: number, off: number, v: number): void {
  lab.sync.u32[(rec + off) >>> 2] = v;
}

/** io_register_dmabuf: the token of `buf` for the storage device at `storage`. */
export function dmaTokenCreate(lab: LabCore, buf: DmaBufRecord, storage: number, syscall: string): number {
  const st = new StorageRecord(lab, storage, syscall);
  const token = lab.sync.allocRecord(RecordType.dmaToken, TOK_RECORD_SIZE, syscall);
  try {
    const att = dmaBufDynamicAttach(buf, st.iommu, { moveNotify: noMoveNotify });
    setW(lab, token, TOK_BUFFER, buf.offset);
    setW(lab, token, TOK_STORAGE, storage);
    setW(lab, token, TOK_ATTACH, att.offset);
    setW(lab, token, TOK_BYTES, buf.size);
    storageRef(lab, storage);
  } catch (e) {
    lab.sync.freeRecord(token, RecordType.dmaToken);
    throw e;
  }
  return token;
}

/** How many maps the token has made (first I/O and every remap after an invalidation). */
export function dmaTokenMaps(lab: LabCore, token: number): number {
  lab.arena.records.check(token, RecordType.dmaToken, "io_dmabuf_maps");
  return w(lab, token, TOK_MAPS);
}

/** Drops a reference on a map; the last unmaps it and, for a replaced attachment, detaches that. */
function mapPut(lab: LabCore, map: number, resvHeld: boolean): void {
  const refs = w(lab, map, MAP_REFS) - 1;
  setW(lab, map, MAP_REFS, refs);
  if (refs > 0) return;
  const att = DmaBufAttachment.at(lab.sync, w(lab, map, MAP_ATTACH));
  const unmap = () => { if (att.mapping !== null && att.mapping.iova === w(lab, map, MAP_IOVA)) att.unmap(); };
  if (resvHeld) unmap();
  else att.resv.withLock(unmap);
  lab.sync.freeRecord(map, RecordType.dmaMap);
}

/**
 * The token's map for one request, with a reference for it: maps on first
 * use or after an invalidation. ENODEV for a revoked buffer.
 */
function mapGet(lab: LabCore, token: number): { map: number; stale: DmaBufAttachment | null } {
  const syscall = "io_dmabuf_map";
  const buf = DmaBufRecord.attach(lab.sync, w(lab, token, TOK_BUFFER));
  try {
    // The map waits for KERNEL-usage fences only (the series' rule): not for readers or writers.
    if (buf.resv.wait(DMA_RESV_USAGE_KERNEL, KERNEL_FENCE_WAIT_MS) === 0) {
      throw new DmaBufError("EAGAIN", syscall, `the dma-buf's KERNEL fences did not signal within ${KERNEL_FENCE_WAIT_MS} ms`);
    }
    // move_notify seen: the token drops its map (requests in flight keep theirs) ...
    const stale = buf.resv.withLock(() => {
      if (buf.revoked) throw new DmaBufError("ENODEV", syscall, `dma-buf ${hex(buf.offset)} was revoked by its exporter`);
      const att = DmaBufAttachment.at(lab.sync, w(lab, token, TOK_ATTACH));
      if (!att.invalidated) return null;
      const old = w(lab, token, TOK_MAP);
      setW(lab, token, TOK_MAP, 0);
      if (old !== 0) mapPut(lab, old, true);
      return att;
    });
    // ... and attaches afresh (attach takes the resv lock itself), to be told of the next move.
    if (stale !== null) {
      const st = new StorageRecord(lab, w(lab, token, TOK_STORAGE), syscall);
      setW(lab, token, TOK_ATTACH, dmaBufDynamicAttach(buf, st.iommu, { moveNotify: noMoveNotify }).offset);
    }
    const map = buf.resv.withLock(() => {
      if (buf.revoked) throw new DmaBufError("ENODEV", syscall, `dma-buf ${hex(buf.offset)} was revoked by its exporter`);
      let m = w(lab, token, TOK_MAP);
      if (m === 0) {
        const att = DmaBufAttachment.at(lab.sync, w(lab, token, TOK_ATTACH));
        const sg = att.map(DMA_BIDIRECTIONAL);
        m = lab.sync.allocRecord(RecordType.dmaMap, MAP_RECORD_SIZE, syscall);
        setW(lab, m, MAP_REFS, 1); // the token's
        setW(lab, m, MAP_ATTACH, att.offset);
        setW(lab, m, MAP_IOVA, sg.iova);
        setW(lab, m, MAP_BYTES, sg.bytes);
        setW(lab, token, TOK_MAP, m);
        setW(lab, token, TOK_MAPS, w(lab, token, TOK_MAPS) + 1);
      }
      setW(lab, m, MAP_REFS, w(lab, m, MAP_REFS) + 1); // the request's
      return m;
    });
    return { map, stale };
  } finally {
    buf.put();
  }
}

/** A stale attachment goes once no map uses it. */
function detachIfUnused(stale: DmaBufAttachment | null): void {
  if (stale !== null && stale.mapping === null) stale.detach();
}

/**
 * Fixed I/O of `len` bytes at `offset` into the registered dma-buf, at
 * `pos` of the storage device `storage` (the request's file).
 */
export function dmaTokenIo(lab: LabCore, token: number, storage: number, write: boolean, pos: number, offset: number, len: number): BlockPending {
  const syscall = write ? "io_write_fixed" : "io_read_fixed";
  lab.arena.records.check(token, RecordType.dmaToken, syscall);
  if (w(lab, token, TOK_STORAGE) !== storage) {
    throw new DmaBufError("EINVAL", syscall, "the dma-buf was registered for another file than the request's");
  }
  const st = new StorageRecord(lab, storage, syscall);
  const n = clipToDevice(st, write, pos, len);
  if (n === 0) return { fences: [], finish: () => 0 };
  const { map, stale } = mapGet(lab, token);
  detachIfUnused(stale);
  let fences;
  try {
    fences = pushRanges(st, write, pos, [{ iova: w(lab, map, MAP_IOVA) + offset, len: n, buffer: w(lab, token, TOK_BUFFER), offset }]);
  } catch (e) {
    mapPut(lab, map, false);
    throw e;
  }
  return {
    fences,
    finish: () => {
      const res = settle(fences, n);
      const att = w(lab, map, MAP_ATTACH);
      mapPut(lab, map, false);
      if (att !== w(lab, token, TOK_ATTACH)) detachIfUnused(DmaBufAttachment.at(lab.sync, att));
      return res;
    },
  };
}

/** Unregistration: drops the token's map and attachment and frees it (nothing may be in flight). */
export function dmaTokenDestroy(lab: LabCore, token: number): void {
  lab.arena.records.check(token, RecordType.dmaToken, "io_unregister_dmabuf");
  const map = w(lab, token, TOK_MAP);
  if (map !== 0) mapPut(lab, map, false);
  DmaBufAttachment.at(lab.sync, w(lab, token, TOK_ATTACH)).detach();
  storageUnref(lab, w(lab, token, TOK_STORAGE));
  lab.sync.freeRecord(token, RecordType.dmaToken);
}

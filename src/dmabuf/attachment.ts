/*
 * dma-buf attachments: an importer's (a device's) link to a buffer, and the
 * exporter's revoke. These are the kernel's dma_buf_attach,
 * dma_buf_dynamic_attach, dma_buf_map_attachment, dma_buf_unmap_attachment,
 * dma_buf_detach and dma_buf_move_notify. The device addresses come from the
 * importer's IOMMU (src/dmabuf/iommu.ts). That module sits below this
 * layer, as the kernel's DMA API sits below dma-buf: it imports only the
 * memory and sync layers.
 *
 *   static   dmaBufAttach(buf, iommu, direction): the buffer is pinned and
 *            mapped into the IOMMU at attach. map() returns that mapping (the
 *            kernel's cached sg table); unmap() leaves it in place, and
 *            detach() removes it.
 *   dynamic  dmaBufDynamicAttach(buf, iommu, { moveNotify }): map() and
 *            unmap() run with the buffer's resv lock held by this thread
 *            (attachment.resv.withLock), else EPERM (the kernel's
 *            dma_resv_assert_held). moveNotify(attachment) is called when
 *            the exporter revokes the buffer.
 *
 * map(direction) returns an sg table of device addresses, {iova, bytes,
 * entries: {dmaAddress, length}[]}: one entry per segment of the buffer,
 * consecutive in IOVA space. A mapping serves one direction:
 * DMA_TO_DEVICE (the device reads: IOMMU_READ), DMA_FROM_DEVICE (it writes:
 * IOMMU_WRITE) or DMA_BIDIRECTIONAL. Asking for another direction while the
 * mapping exists is EBUSY, unless the mapping is bidirectional (the kernel's
 * rule for a cached mapping). A revoked buffer gives ENODEV.
 *
 * Revoke (dmaBufRevoke(buf), the exporter's call) takes the resv lock,
 * marks the buffer revoked, unmaps every attachment's mapping from its IOMMU
 * (a later DMA through it faults), then tells every dynamic importer
 * (move_notify). A second revoke does nothing and returns false. Then,
 * without the lock, it waits for the DMA that each importer's device had
 * translated before the unmap and is still moving (the IOMMU's DMA
 * seqcount, src/dmabuf/iommu.ts), bounded by options.timeoutMs (ETIMEDOUT:
 * the buffer is revoked all the same). When it returns, no DMA changes the
 * buffer's bytes.
 *
 * Delivery of move_notify: it runs once, in the importer's thread, with the
 * buffer's resv lock held, as the kernel calls it:
 *   - inside revoke, when the revoking thread is the importer's;
 *   - otherwise from the importer's event loop, or earlier if the importer's
 *     map() finds the notification pending.
 * The carrier is the attachment's notify fence, a private fence that revoke
 * signals. The importer's thread holds a callback on it, so the per-thread
 * callback machinery of src/sync/callbacks.ts (an Atomics.waitAsync watch)
 * delivers it. Detach signals the fence with -ENOENT, which each watch reads
 * as "no notification", and the watch ends. moveNotify must not detach,
 * because the lock is held; detach afterwards.
 *
 * Record (ATTACH_*, 36 bytes: a 64-byte block of the sync heap). The words
 * change under the buffer's resv lock:
 *   ATTACH_MAGIC      u32: ATTACH_MAGIC_VALUE while attached, 0 after
 *                     detach; stored last at attach (the publish point for
 *                     DmaBufAttachment.at in other threads)
 *   ATTACH_BUFFER     u32: the dma-buf record; the attachment holds a reference
 *   ATTACH_IOMMU      u32: the importer's IOMMU header; the attachment is one
 *                     of its users (Iommu.addUser)
 *   ATTACH_FLAGS      u32: ATTACH_DYNAMIC, ATTACH_REVOKED
 *   ATTACH_DIRECTION  u32: the direction of the current mapping (DMA_*)
 *   ATTACH_IOVA       u32: the mapping's first device address, 0 when unmapped
 *   ATTACH_BYTES      u32: its length (the buffer's size)
 *   ATTACH_NOTIFY     u32: dynamic only: the notify fence (the attachment
 *                     holds a reference); 0 for a static attachment
 *   ATTACH_NEXT       u32: the buffer's next attachment; 0 ends the list,
 *                     whose head is DMABUF_ATTACH (beside the revoked bit)
 *
 * Lifetime: an attachment holds a reference on its buffer, so the pages stay
 * until the last fd, mapping and attachment are gone. It also counts as a
 * user of its IOMMU, which therefore cannot be destroyed first. detach()
 * unmaps, unlinks and drops both. Attach and detach take the resv lock
 * themselves, so EDEADLK when this thread already holds it. Detaching an
 * attachment that is not attached (a second time, or a foreign offset) is
 * EINVAL. Every error changes nothing. Like an fd, an offset names the
 * attachment that lives there now.
 */
import { RecordType, RecordView } from "../memory/record.js";
import { DmaBufError, errnoNumbers, hex } from "../errno.js";
import { finiteTimeoutArg, objectArg } from "../args.js";
import { FENCE_KIND_PLAIN } from "../engine/abi.js";
import { IOMMU_READ, IOMMU_WRITE, Iommu } from "./iommu.js";
import type { Fence } from "../sync/fence.js";
import type { Resv } from "../sync/resv.js";
import type { Sync } from "../sync/sync.js";
import { DMABUF_ATTACH, DMABUF_ATTACH_REVOKED, DmaBufRecord } from "./dma_buf.js";

export const ATTACH_MAGIC = 0;
export const ATTACH_BUFFER = 4;
export const ATTACH_IOMMU = 8;
export const ATTACH_FLAGS = 12;
export const ATTACH_DIRECTION = 16;
export const ATTACH_IOVA = 20;
export const ATTACH_BYTES = 24;
export const ATTACH_NOTIFY = 28;
export const ATTACH_NEXT = 32;
export const ATTACH_RECORD_SIZE = 36;
export const ATTACH_MAGIC_VALUE = 0x48435441; // the bytes "ATCH"
export const ATTACH_DYNAMIC = 1;
export const ATTACH_REVOKED = 2;

/** enum dma_data_direction. */
export const DMA_BIDIRECTIONAL = 0;
export const DMA_TO_DEVICE = 1;
export const DMA_FROM_DEVICE = 2;
export type DmaDirection = typeof DMA_BIDIRECTIONAL | typeof DMA_TO_DEVICE | typeof DMA_FROM_DEVICE;
const directionNames = ["DMA_BIDIRECTIONAL", "DMA_TO_DEVICE", "DMA_FROM_DEVICE"];
/** The IOMMU permissions of a direction (the kernel's dma_info_to_prot). */
const directionProt = [IOMMU_READ | IOMMU_WRITE, IOMMU_READ, IOMMU_WRITE];

/** struct dma_buf_attach_ops: what a dynamic importer provides. */
export interface DmaBufAttachOps {
  /** The exporter took the buffer back: the mapping is gone (called with the resv lock held). */
  moveNotify(attachment: DmaBufAttachment): void;
}

export interface DmaSgEntry {
  dmaAddress: number;
  length: number;
}

/** An sg table of device addresses: one entry per segment of the buffer, consecutive from `iova`. */
export interface DmaSgTable {
  iova: number;
  bytes: number;
  entries: DmaSgEntry[];
}

function checkDirection(direction: number, syscall: string): asserts direction is DmaDirection {
  if (direction !== DMA_BIDIRECTIONAL && direction !== DMA_TO_DEVICE && direction !== DMA_FROM_DEVICE) {
    throw new DmaBufError("EINVAL", syscall, `direction ${direction} is not DMA_BIDIRECTIONAL (0), DMA_TO_DEVICE (1) or DMA_FROM_DEVICE (2)`);
  }
}

/** The named accessors over the record at `offset` (an attachment, or the buffer's record for DMABUF_ATTACH). */
const recordAt = (sync: Sync, offset: number): RecordView => new RecordView(sync, offset);

/** Under the resv lock: the buffer's first attachment record (DMABUF_ATTACH without the revoked bit), 0 for none. */
const firstOf = (buf: DmaBufRecord): number => (recordAt(buf.sync, buf.offset).word(DMABUF_ATTACH) & ~DMABUF_ATTACH_REVOKED) >>> 0;

/** Under the resv lock: the buffer's attachment records, in list order. */
function listOf(buf: DmaBufRecord): number[] {
  const out: number[] = [];
  for (let a = firstOf(buf); a !== 0; a = recordAt(buf.sync, a).word(ATTACH_NEXT)) out.push(a);
  return out;
}

/** Under the resv lock: tears down the attachment's mapping, if it has one. */
function unmapLocked(sync: Sync, iommu: Iommu, record: number): void {
  const iova = recordAt(sync, record).word(ATTACH_IOVA);
  if (iova === 0) return;
  iommu.unmap(iova, recordAt(sync, record).word(ATTACH_BYTES));
  recordAt(sync, record).setWord(ATTACH_IOVA, 0);
  recordAt(sync, record).setWord(ATTACH_BYTES, 0);
}

export class DmaBufAttachment {
  private detached = false;

  /**
   * buf: a view owning the attachment's reference on the buffer; notify:
   * the notify fence, borrowed from the record (null for a static one).
   */
  private constructor(readonly sync: Sync, readonly offset: number, private readonly buf: DmaBufRecord,
    readonly iommu: Iommu, private readonly notify: Fence | null) {}

  /** The view of the attachment at `offset` in any thread (without the importer's ops); EINVAL when none lives there. */
  static at(sync: Sync, offset: number): DmaBufAttachment {
    sync.arena.records.check(offset, RecordType.attachment, "dma_buf_attachment");
    if (Atomics.load(sync.u32, (offset + ATTACH_MAGIC) >>> 2) !== ATTACH_MAGIC_VALUE) {
      throw new DmaBufError("EINVAL", "dma_buf_attachment", `no attachment at ${hex(offset)}`);
    }
    const notify = recordAt(sync, offset).word(ATTACH_NOTIFY);
    return new DmaBufAttachment(sync, offset, DmaBufRecord.adopt(sync, recordAt(sync, offset).word(ATTACH_BUFFER)),
      new Iommu(sync, recordAt(sync, offset).word(ATTACH_IOMMU)), notify === 0 ? null : sync.view(notify, false));
  }

  /**
   * The attach of dmaBufAttach (ops null) and dmaBufDynamicAttach: under the
   * buffer's resv lock, a complete record linked at the list's head.
   */
  static create(buf: DmaBufRecord, iommu: Iommu, ops: DmaBufAttachOps | null, direction: DmaDirection, syscall: string): DmaBufAttachment {
    const { sync } = buf;
    const held = buf.get();
    try {
      return buf.resv.withLock(() => {
        if (buf.revoked) throw new DmaBufError("ENODEV", syscall, `dma-buf ${hex(buf.offset)} was revoked by its exporter`);
        iommu.addUser(syscall);
        let record = 0;
        let iova = 0;
        let notify = 0;
        try {
          record = sync.allocRecord(RecordType.attachment, ATTACH_RECORD_SIZE, syscall);
          if (ops === null) iova = iommu.map(buf.segments(), directionProt[direction]);
          else notify = sync.allocFenceRecord(FENCE_KIND_PLAIN, 0, sync.allocContext(), 1n, syscall);
        } catch (e) {
          if (iova !== 0) iommu.unmap(iova, buf.size);
          if (record !== 0) sync.freeRecord(record, RecordType.attachment);
          iommu.dropUser(syscall);
          throw e;
        }
        recordAt(sync, record).setWord(ATTACH_BUFFER, buf.offset);
        recordAt(sync, record).setWord(ATTACH_IOMMU, iommu.offset);
        recordAt(sync, record).setWord(ATTACH_FLAGS, ops === null ? 0 : ATTACH_DYNAMIC);
        recordAt(sync, record).setWord(ATTACH_DIRECTION, direction);
        recordAt(sync, record).setWord(ATTACH_IOVA, iova);
        recordAt(sync, record).setWord(ATTACH_BYTES, iova === 0 ? 0 : buf.size);
        recordAt(sync, record).setWord(ATTACH_NOTIFY, notify);
        recordAt(sync, record).setWord(ATTACH_NEXT, firstOf(buf));
        // Publishes the record to DmaBufAttachment.at(); the list itself is
        // read under the lock.
        Atomics.store(sync.u32, (record + ATTACH_MAGIC) >>> 2, ATTACH_MAGIC_VALUE);
        recordAt(sync, buf.offset).setWord(DMABUF_ATTACH, record); // the revoked bit is clear (checked above)
        const att = new DmaBufAttachment(sync, record, held, iommu, notify === 0 ? null : sync.view(notify, false));
        // Under the lock, so that no revoke can signal the fence before the callback is on it.
        if (ops !== null) att.notify!.addCallback((f) => att.deliver(ops, f));
        return att;
      });
    } catch (e) {
      held.put();
      throw e;
    }
  }

  /**
   * The notify fence's callback, in the importer's thread: move_notify, under
   * the resv lock. Status -ENOENT: detached, nothing to tell. The watch holds
   * the fence, so no other record can have it as ATTACH_NOTIFY meanwhile:
   * that check (made again under the lock) tells whether another view (another
   * thread's) detached this attachment while the notification was in flight.
   */
  private deliver(ops: DmaBufAttachOps, fence: Fence): void {
    const live = () => !this.detached && Atomics.load(this.sync.u32, (this.offset + ATTACH_MAGIC) >>> 2) === ATTACH_MAGIC_VALUE &&
      recordAt(this.sync, this.offset).word(ATTACH_NOTIFY) === fence.offset;
    if (fence.status !== 1 || !live()) return;
    const resv = this.resv;
    if (resv.mutex.heldByMe()) ops.moveNotify(this);
    else resv.withLock(() => { if (live()) ops.moveNotify(this); });
  }

  private flags(): number {
    return Atomics.load(this.sync.u32, (this.offset + ATTACH_FLAGS) >>> 2);
  }

  /** A dynamic attachment whose move_notify was sent (dmaBufRevoke or dmaBufInvalidateMappings). */
  get invalidated(): boolean {
    return this.notify !== null && this.notify.isSignaled();
  }

  get dynamic(): boolean {
    return (this.flags() & ATTACH_DYNAMIC) !== 0;
  }

  /** The exporter revoked the buffer: the mapping is gone, map() gives ENODEV. */
  get revoked(): boolean {
    return (this.flags() & ATTACH_REVOKED) !== 0;
  }

  /** The buffer's reservation object (borrowed): a dynamic importer maps under its lock. */
  get resv(): Resv {
    return this.buf.resv;
  }

  get bufferOffset(): number {
    return this.buf.offset;
  }

  /** The current mapping, or null. Exact under the resv lock, a snapshot without it. */
  get mapping(): { iova: number; bytes: number; direction: DmaDirection } | null {
    const iova = recordAt(this.sync, this.offset).word(ATTACH_IOVA);
    return iova === 0 ? null : {
      iova, bytes: recordAt(this.sync, this.offset).word(ATTACH_BYTES), direction: recordAt(this.sync, this.offset).word(ATTACH_DIRECTION) as DmaDirection,
    };
  }

  /** Runs fn under the resv lock: a dynamic attachment's caller must hold it, a static one's may. */
  private underLock<T>(syscall: string, fn: () => T): T {
    const resv = this.resv;
    if (resv.mutex.heldByMe()) return fn();
    if (this.dynamic) {
      throw new DmaBufError("EPERM", syscall,
        `a dynamic attachment of dma-buf ${hex(this.buf.offset)} maps and unmaps with the buffer's resv lock held (attachment.resv.withLock)`);
    }
    return resv.withLock(fn);
  }

  /** Under the lock: EINVAL unless this attachment is still attached. */
  private checkAttached(syscall: string): void {
    if (this.detached || Atomics.load(this.sync.u32, (this.offset + ATTACH_MAGIC) >>> 2) !== ATTACH_MAGIC_VALUE) {
      throw new DmaBufError("EINVAL", syscall, `the attachment at ${hex(this.offset)} is detached`);
    }
  }

  /** dma_buf_map_attachment: the sg table of device addresses. */
  map(direction: DmaDirection = DMA_BIDIRECTIONAL): DmaSgTable {
    const syscall = "dma_buf_map_attachment";
    checkDirection(direction, syscall);
    return this.underLock(syscall, () => {
      this.checkAttached(syscall);
      // The importer learns of a pending move_notify before it uses a mapping.
      if (this.notify?.isSignaled()) this.sync.callbacks.dispatch(this.notify);
      if (this.revoked) throw new DmaBufError("ENODEV", syscall, `dma-buf ${hex(this.buf.offset)} was revoked by its exporter`);
      let iova = recordAt(this.sync, this.offset).word(ATTACH_IOVA);
      if (iova !== 0) {
        const mapped = recordAt(this.sync, this.offset).word(ATTACH_DIRECTION);
        if (mapped !== direction && mapped !== DMA_BIDIRECTIONAL) {
          throw new DmaBufError("EBUSY", syscall,
            `the attachment at ${hex(this.offset)} is mapped ${directionNames[mapped]}, not ${directionNames[direction]}`);
        }
      } else {
        iova = this.iommu.map(this.buf.segments(), directionProt[direction]);
        recordAt(this.sync, this.offset).setWord(ATTACH_IOVA, iova);
        recordAt(this.sync, this.offset).setWord(ATTACH_BYTES, this.buf.size);
        recordAt(this.sync, this.offset).setWord(ATTACH_DIRECTION, direction);
      }
      const entries: DmaSgEntry[] = [];
      let at = iova;
      for (const s of this.buf.segments()) {
        entries.push({ dmaAddress: at, length: s.len });
        at += s.len;
      }
      return { iova, bytes: at - iova, entries };
    });
  }

  /**
   * dma_buf_unmap_attachment: tears down a dynamic attachment's mapping (none
   * left, as after a revoke, is fine). A static mapping stays until detach.
   */
  unmap(): void {
    const syscall = "dma_buf_unmap_attachment";
    this.underLock(syscall, () => {
      this.checkAttached(syscall);
      if (this.dynamic) unmapLocked(this.sync, this.iommu, this.offset);
    });
  }

  /** dma_buf_detach: unmaps, unlinks, drops the buffer reference and the IOMMU use. */
  detach(): void {
    const syscall = "dma_buf_detach";
    const { sync, offset, buf } = this;
    buf.resv.withLock(() => {
      this.checkAttached(syscall);
      // The record before this one, 0 when this one is the list's head.
      const list = listOf(buf);
      const at = list.indexOf(offset);
      if (at < 0) {
        throw new DmaBufError("EINVAL", syscall, `the attachment at ${hex(offset)} is not on dma-buf ${hex(buf.offset)}'s list`);
      }
      unmapLocked(sync, this.iommu, offset);
      const next = recordAt(sync, offset).word(ATTACH_NEXT);
      if (at > 0) recordAt(sync, list[at - 1]).setWord(ATTACH_NEXT, next);
      else recordAt(sync, buf.offset).setWord(DMABUF_ATTACH, next | (recordAt(sync, buf.offset).word(DMABUF_ATTACH) & DMABUF_ATTACH_REVOKED));
      Atomics.store(sync.u32, (offset + ATTACH_MAGIC) >>> 2, 0);
    });
    this.detached = true;
    if (this.notify !== null) {
      this.notify.checkAndSignal(-errnoNumbers.ENOENT);
      sync.unref(this.notify.offset);
    }
    this.iommu.dropUser(syscall);
    sync.freeRecord(offset, RecordType.attachment);
    buf.put();
  }
}

/** dma_buf_attach: a static attachment, mapped for `direction` from now until detach. */
export function dmaBufAttach(buf: DmaBufRecord, iommu: Iommu, direction: DmaDirection = DMA_BIDIRECTIONAL): DmaBufAttachment {
  checkDirection(direction, "dma_buf_attach");
  return DmaBufAttachment.create(buf, iommu, null, direction, "dma_buf_attach");
}

/** dma_buf_dynamic_attach: mapped on demand under the resv lock; ops.moveNotify on revoke. */
export function dmaBufDynamicAttach(buf: DmaBufRecord, iommu: Iommu, ops: DmaBufAttachOps): DmaBufAttachment {
  if (typeof ops?.moveNotify !== "function") {
    throw new DmaBufError("EINVAL", "dma_buf_dynamic_attach", "a dynamic importer must provide ops.moveNotify");
  }
  return DmaBufAttachment.create(buf, iommu, ops, DMA_BIDIRECTIONAL, "dma_buf_dynamic_attach");
}

/** The offsets of the buffer's attachments, newest first (a snapshot, under the resv lock). */
export function dmaBufAttachments(buf: DmaBufRecord): number[] {
  return buf.resv.withLock(() => listOf(buf));
}

/** What another thread needs of an attachment to name it in a device job. */
export interface AttachmentRef {
  readonly attachment: number;
  readonly iova: number;
  readonly bytes: number;
  readonly dynamic: boolean;
}

/**
 * The buffer's attachment through the IOMMU at `iommu` that is mapped now
 * (under the resv lock), or undefined: how a device's other threads find
 * what its driver attached.
 */
export function dmaBufAttachmentVia(buf: DmaBufRecord, iommu: number): AttachmentRef | undefined {
  return buf.resv.withLock(() => {
    for (const a of listOf(buf)) {
      const r = recordAt(buf.sync, a);
      if (r.word(ATTACH_IOMMU) !== iommu || r.word(ATTACH_IOVA) === 0) continue;
      return { attachment: a, iova: r.word(ATTACH_IOVA), bytes: r.word(ATTACH_BYTES), dynamic: (r.word(ATTACH_FLAGS) & ATTACH_DYNAMIC) !== 0 };
    }
    return undefined;
  });
}

/**
 * Whether `ref` still names a live attachment of `buf` through `iommu`,
 * mapped at the same device address (no lock: the check of a submission;
 * a detach after it is the driver's race, as in the kernel).
 */
export function isAttachmentOf(sync: Sync, ref: AttachmentRef, buf: DmaBufRecord, iommu: number): boolean {
  if (sync.arena.records.typeAt(ref.attachment) !== RecordType.attachment) return false;
  const r = recordAt(sync, ref.attachment);
  return Atomics.load(sync.u32, (ref.attachment + ATTACH_MAGIC) >>> 2) === ATTACH_MAGIC_VALUE
    && r.word(ATTACH_BUFFER) === buf.offset && r.word(ATTACH_IOMMU) === iommu && r.word(ATTACH_IOVA) === ref.iova;
}

/**
 * dma_buf_invalidate_mappings (move_notify without revoke): every dynamic
 * importer is told, under the resv lock, that its mapping must go; the
 * mappings stay until the importers unmap them (after their DMA in flight),
 * and the buffer stays usable. Each attachment is told once (its notify
 * fence): an importer that wants later notices attaches again. Returns how
 * many were told.
 */
export function dmaBufInvalidateMappings(buf: DmaBufRecord): number {
  const { sync } = buf;
  return buf.resv.withLock(() => {
    const notify: Fence[] = [];
    for (const a of listOf(buf)) {
      const n = recordAt(sync, a).word(ATTACH_NOTIFY);
      if (n !== 0) notify.push(sync.view(n, false));
    }
    let told = 0;
    for (const f of notify) if (!f.checkAndSignal()) told++;
    return told;
  });
}

/** dmaBufRevoke's options. */
export interface RevokeOptions {
  /**
   * How long to wait for the importers' DMA in flight (ms, finite, >= 0;
   * default REVOKE_DMA_TIMEOUT_MS). Past it: ETIMEDOUT, the buffer revoked.
   */
  timeoutMs?: number;
}

/** The default bound of dmaBufRevoke's wait for DMA in flight, ms. */
export const REVOKE_DMA_TIMEOUT_MS = 10_000;

/**
 * The exporter's revoke: marks the buffer revoked, unmaps every attachment
 * from its IOMMU, signals each dynamic attachment's notify fence
 * (move_notify), then waits until the DMA that the importers' devices had in
 * flight through those IOMMUs has stopped, as the kernel's revoke waits for
 * its importers (at most options.timeoutMs: ETIMEDOUT). After it returns no
 * byte of the buffer changes by DMA. Returns false when the buffer was
 * revoked already.
 */
export function dmaBufRevoke(buf: DmaBufRecord, options: RevokeOptions = {}): boolean {
  const syscall = "dma_buf_revoke";
  const o = objectArg<RevokeOptions>(options, syscall, "the options");
  const timeoutMs = o.timeoutMs === undefined ? REVOKE_DMA_TIMEOUT_MS : finiteTimeoutArg(o.timeoutMs, syscall, "timeoutMs");
  const { sync } = buf;
  const iommus: Iommu[] = [];
  const revoked = buf.resv.withLock(() => {
    if (buf.revoked) return false;
    // Read without the lock by buf.revoked (attach and map check it again under the lock).
    Atomics.or(sync.u32, (buf.offset + DMABUF_ATTACH) >>> 2, DMABUF_ATTACH_REVOKED);
    const notify: Fence[] = [];
    for (const a of listOf(buf)) {
      const iommu = new Iommu(sync, recordAt(sync, a).word(ATTACH_IOMMU));
      unmapLocked(sync, iommu, a);
      iommus.push(iommu);
      Atomics.or(sync.u32, (a + ATTACH_FLAGS) >>> 2, ATTACH_REVOKED);
      const n = recordAt(sync, a).word(ATTACH_NOTIFY);
      if (n !== 0) notify.push(sync.view(n, false));
    }
    // The importers learn once every mapping is gone. An importer in this
    // thread runs its move_notify inside signal(), under this lock.
    for (const f of notify) f.checkAndSignal();
    return true;
  });
  // Every later DMA through these IOMMUs faults; the DMA that translated
  // before the unmap is waited for, without the lock (the device may need it).
  if (revoked) Iommu.dmaQuiesce(sync, iommus, timeoutMs, syscall);
  return revoked;
}

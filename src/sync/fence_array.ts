/*
 * dma_fence_array: a fence that stands for N fences and is signalled when
 * all of them are (or, with signalOnAny, when any one is).
 *
 * The array is evaluated from its children, never signalled itself: its
 * status is 0 while it waits, else the first error among its children in
 * array order (for signal-on-any, the status of the child signalled first),
 * else 1; its timestamp is the last child's (first child's for any). So any
 * thread sees the same answer with no propagation step, and an array needs
 * no callbacks on its children.
 *
 * Record: FENCE_KIND_ARRAY (| ARRAY_SIGNAL_ANY << 8), its own context and
 * seqno; FENCE_AUX points to a block {ARRAY_COUNT u32, ARRAY_FLAGS u32,
 * children u32[count]} in the sync heap. The array holds a reference on each
 * child; children must be leaves (unwrap or merge containers first: EINVAL).
 */
import { RecordType } from "../memory/record.js";
import { DmaBufError } from "../errno.js";
import { FENCE_AUX, FENCE_KIND, FENCE_KIND_ARRAY, FENCE_KIND_CHAIN } from "../engine/abi.js";
import { Fence } from "./fence.js";
import { registerContainer, type SyncRecords } from "./records.js";

export const ARRAY_COUNT = 0;
export const ARRAY_FLAGS = 4;
export const ARRAY_CHILDREN = 8;
export const ARRAY_SIGNAL_ANY = 1;

/** The children offsets of an array block (for release). */
export function arrayChildren(sync: SyncRecords, block: number): number[] {
  const n = sync.u32[(block + ARRAY_COUNT) >>> 2];
  const first = (block + ARRAY_CHILDREN) >>> 2;
  return Array.from(sync.u32.subarray(first, first + n));
}

export class FenceArray extends Fence {
  /**
   * dma_fence_array_create. Takes a new reference on every child (the
   * caller keeps its own). EINVAL for no fences or a container child.
   */
  static create(sync: SyncRecords, fences: Fence[], context: bigint, seqno: bigint, signalOnAny = false): FenceArray {
    if (fences.length === 0) throw new DmaBufError("EINVAL", "dma_fence_array_create", "an array needs at least one fence");
    const bad = fences.findIndex((f) => f.kind === FENCE_KIND_ARRAY || f.kind === FENCE_KIND_CHAIN);
    if (bad >= 0) {
      throw new DmaBufError("EINVAL", "dma_fence_array_create",
        `fence ${bad} (${fences[bad].describe()}) is a container; unwrap it first`);
    }
    const block = sync.allocRecord(RecordType.fenceArrayBlock, ARRAY_CHILDREN + 4 * fences.length, "dma_fence_array_create");
    let f: number;
    try {
      f = sync.allocFenceRecord(FENCE_KIND_ARRAY | (signalOnAny ? ARRAY_SIGNAL_ANY << 8 : 0), 0, context, seqno,
        "dma_fence_array_create");
    } catch (e) {
      sync.freeRecord(block, RecordType.fenceArrayBlock);
      throw e;
    }
    sync.u32[(block + ARRAY_COUNT) >>> 2] = fences.length;
    sync.u32[(block + ARRAY_FLAGS) >>> 2] = signalOnAny ? ARRAY_SIGNAL_ANY : 0;
    fences.forEach((child, i) => {
      sync.ref(child.offset);
      sync.u32[((block + ARRAY_CHILDREN) >>> 2) + i] = child.offset;
    });
    sync.u32[(f + FENCE_AUX) >>> 2] = block;
    return new FenceArray(sync, f, true);
  }

  get signalOnAny(): boolean {
    return ((this.sync.u32[(this.offset + FENCE_KIND) >>> 2] >>> 8) & ARRAY_SIGNAL_ANY) !== 0;
  }

  /** The children, borrowed (valid while the array is held). */
  children(): Fence[] {
    const block = this.sync.u32[(this.offset + FENCE_AUX) >>> 2];
    return arrayChildren(this.sync, block).map((c) => Fence.view(this.sync, c, false));
  }

  override leaves(): Fence[] {
    return this.children();
  }

  override get status(): number {
    const children = this.children();
    if (this.signalOnAny) {
      const first = firstSignaled(children);
      return first === undefined ? 0 : first.status;
    }
    let error = 0;
    for (const c of children) {
      const s = c.status;
      if (s === 0) return 0;
      if (s < 0 && error === 0) error = s;
    }
    return error !== 0 ? error : 1;
  }

  override get timestampNs(): number {
    const children = this.children();
    if (this.signalOnAny) return firstSignaled(children)?.timestampNs ?? 0;
    if (children.some((c) => !c.isSignaled())) return 0;
    return Math.max(...children.map((c) => c.timestampNs));
  }

  /** The deadline hint goes to every child. */
  override setDeadline(ns: number): void {
    for (const c of this.children()) c.setDeadline(ns);
  }

  protected override blockUntilSignaled(deadline: number): boolean {
    const children = this.children();
    if (this.signalOnAny) return this.sync.blockUntilSignal(() => children.some((c) => c.isSignaled()), deadline, "dma_fence_wait_any");
    return children.every((c) => c.blockOnStatus(deadline));
  }

  override async untilSignaled(deadline: number): Promise<boolean> {
    const children = this.children();
    if (this.signalOnAny) return this.sync.untilSignalAsync(() => children.some((c) => c.isSignaled()), deadline);
    for (const c of children) if (!(await c.waitStatusAsync(deadline))) return false;
    return true;
  }
}

Fence.register(FENCE_KIND_ARRAY, FenceArray);
registerContainer(FENCE_KIND_ARRAY, { block: RecordType.fenceArrayBlock, children: arrayChildren });

function firstSignaled(fences: Fence[]): Fence | undefined {
  let first: Fence | undefined;
  for (const f of fences) {
    if (f.isSignaled() && (first === undefined || f.timestampNs < first.timestampNs)) first = f;
  }
  return first;
}

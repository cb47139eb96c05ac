/*
 * dma_fence_chain: a node of a timeline (a syncobj point). A node holds a
 * fence and links to the previous node; it is signalled when its fence and
 * every earlier node's fence are. Like arrays, nodes are evaluated from what
 * they hold, never signalled themselves: a node's status is 1 once all its
 * fences back to the start are signalled (the kernel's chain carries no
 * error of its own; errors stay visible on the fences), its timestamp the
 * latest of theirs.
 *
 * alloc + init (dma_fence_chain_alloc, dma_fence_chain_init; create() does
 * both): a node after a chain node with an earlier
 * seqno shares its context and records prev_seqno; otherwise it takes a new
 * context, prev_seqno 0, and its seqno is never below the previous node's.
 * Seqnos of chains compare as 64-bit numbers.
 *
 * walk: from a node, the previous node whose fence is still pending, skipping
 * signalled ones (the kernel also prunes them from the chain; here the links
 * stay, and every walk skips the same nodes, so the answers are the same).
 * findSeqno follows the kernel's dma_fence_chain_find_seqno.
 *
 * Record: FENCE_KIND_CHAIN; FENCE_AUX points to a block {CHAIN_PREV u32,
 * CHAIN_FENCE u32, CHAIN_PREV_SEQNO u64}. The node holds references on its
 * previous node (or fence) and its fence.
 */
import { RecordType } from "../memory/record.js";
import { DmaBufError } from "../errno.js";
import { FENCE_AUX, FENCE_CONTEXT, FENCE_KIND_ARRAY, FENCE_KIND_CHAIN, FENCE_SEQNO } from "../engine/abi.js";
import { Fence } from "./fence.js";
import { registerContainer, type SyncRecords } from "./records.js";

export const CHAIN_PREV = 0;
export const CHAIN_FENCE = 4;
export const CHAIN_PREV_SEQNO = 8;
export const CHAIN_BLOCK_SIZE = 16;

/** The fences a chain block references (for release; none before init). */
export function chainLinks(sync: SyncRecords, block: number): number[] {
  const prev = sync.u32[(block + CHAIN_PREV) >>> 2];
  const fence = sync.u32[(block + CHAIN_FENCE) >>> 2];
  return [prev, fence].filter((f) => f !== 0);
}

export class FenceChain extends Fence {
  /** dma_fence_chain_init; takes new references on prev and fence. */
  static create(sync: SyncRecords, prev: Fence | null, fence: Fence, seqno: bigint): FenceChain {
    FenceChain.checkLink(fence);
    const chain = FenceChain.alloc(sync);
    chain.init(prev, fence, seqno);
    return chain;
  }

  /**
   * dma_fence_chain_alloc: the records of a node, owned, not yet linked (a
   * put() before init() frees them); ENOMEM with nothing taken.
   */
  static alloc(sync: SyncRecords): FenceChain {
    const block = sync.allocRecord(RecordType.fenceChainBlock, CHAIN_BLOCK_SIZE, "dma_fence_chain_alloc");
    let f: number;
    try {
      f = sync.allocFenceRecord(FENCE_KIND_CHAIN, 0, 0n, 0n, "dma_fence_chain_alloc");
    } catch (e) {
      sync.freeRecord(block, RecordType.fenceChainBlock);
      throw e;
    }
    sync.u32[(f + FENCE_AUX) >>> 2] = block;
    return new FenceChain(sync, f, true);
  }

  private static checkLink(fence: Fence): void {
    if (fence.kind === FENCE_KIND_CHAIN) {
      throw new DmaBufError("EINVAL", "dma_fence_chain_init", `fence ${fence.describe()} is a chain; link chains through prev`);
    }
  }

  /** dma_fence_chain_init of an alloc()ed node, once: takes new references on prev and fence. */
  init(prev: Fence | null, fence: Fence, seqno: bigint): void {
    FenceChain.checkLink(fence);
    const { sync } = this;
    if (this.context !== 0n || sync.u32[(this.block + CHAIN_FENCE) >>> 2] !== 0) {
      throw new DmaBufError("EINVAL", "dma_fence_chain_init", `chain node ${this.describe()} is initialised already`);
    }
    let context: bigint;
    let prevSeqno = 0n;
    if (prev instanceof FenceChain && seqno > prev.seqno) {
      context = prev.context;
      prevSeqno = prev.seqno;
    } else {
      context = sync.allocContext();
      if (prev instanceof FenceChain && prev.seqno > seqno) seqno = prev.seqno;
    }
    if (prev !== null) sync.ref(prev.offset);
    sync.ref(fence.offset);
    const block = this.block;
    sync.u32[(block + CHAIN_PREV) >>> 2] = prev?.offset ?? 0;
    sync.u32[(block + CHAIN_FENCE) >>> 2] = fence.offset;
    sync.u64[(block + CHAIN_PREV_SEQNO) >>> 3] = prevSeqno;
    sync.u64[(this.offset + FENCE_CONTEXT) >>> 3] = context;
    sync.u64[(this.offset + FENCE_SEQNO) >>> 3] = seqno;
  }

  private get block(): number {
    return this.sync.u32[(this.offset + FENCE_AUX) >>> 2];
  }

  /** The previous node or fence, borrowed; null at the start. */
  get prev(): Fence | null {
    const p = this.sync.u32[(this.block + CHAIN_PREV) >>> 2];
    return p === 0 ? null : Fence.view(this.sync, p, false);
  }

  /** The contained fence (dma_fence_chain_contained), borrowed. */
  get fence(): Fence {
    return Fence.view(this.sync, this.sync.u32[(this.block + CHAIN_FENCE) >>> 2], false);
  }

  get prevSeqno(): bigint {
    return this.sync.u64[(this.block + CHAIN_PREV_SEQNO) >>> 3];
  }

  /**
   * dma_fence_chain_walk: the previous node (or plain fence) that is still
   * pending, or null when everything before this node is signalled.
   */
  walk(): Fence | null {
    let p = this.prev;
    while (p !== null) {
      if (p instanceof FenceChain) {
        if (!p.fence.isSignaled()) return p;
        p = p.prev;
      } else {
        return p.isSignaled() ? null : p;
      }
    }
    return null;
  }

  /** Every fence this node waits for: its own, then each earlier node's. */
  private pending(): Fence[] {
    const out: Fence[] = [];
    for (let node: Fence | null = this; node !== null;) {
      if (node instanceof FenceChain) {
        out.push(node.fence);
        node = node.prev;
      } else {
        out.push(node);
        node = null;
      }
    }
    return out;
  }

  override get status(): number {
    for (let node: Fence | null = this; node !== null;) {
      if (node instanceof FenceChain) {
        if (!node.fence.isSignaled()) return 0;
        node = node.prev;
      } else {
        return node.isSignaled() ? 1 : 0;
      }
    }
    return 1;
  }

  override get timestampNs(): number {
    if (this.status === 0) return 0;
    return Math.max(...this.pending().map((f) => f.timestampNs));
  }

  override setDeadline(ns: number): void {
    for (const f of this.pending()) f.setDeadline(ns);
  }

  /** The unwrapped fences: see fence_unwrap.ts. */
  override leaves(): Fence[] {
    const out: Fence[] = [];
    for (let node: Fence | null = this; node !== null;) {
      if (node instanceof FenceChain) {
        out.push(...node.fence.leaves());
        node = node.walk();
      } else {
        out.push(...node.leaves());
        node = null;
      }
    }
    return out;
  }

  protected override blockUntilSignaled(deadline: number): boolean {
    return this.pending().every((f) => waitLeaf(f, deadline));
  }

  override async untilSignaled(deadline: number): Promise<boolean> {
    for (const f of this.pending()) if (!(await f.untilSignaled(deadline))) return false;
    return true;
  }

  /**
   * dma_fence_chain_find_seqno: the node to wait on for timeline point
   * `seqno`. 0 returns `from` itself; a point after `from` is EINVAL; null
   * means every node up to that point is signalled already.
   */
  static findSeqno(from: Fence, seqno: bigint): Fence | null {
    if (seqno === 0n) return Fence.view(from.sync, from.offset, false);
    if (!(from instanceof FenceChain) || from.seqno < seqno) {
      throw new DmaBufError("EINVAL", "dma_fence_chain_find_seqno",
        `point ${seqno} is not on or before ${from.describe()}`);
    }
    const context = from.context;
    let node: Fence | null = from;
    while (node instanceof FenceChain) {
      if (node.context !== context || node.prevSeqno < seqno) return node;
      node = node.walk();
    }
    return node;
  }
}

Fence.register(FENCE_KIND_CHAIN, FenceChain);
registerContainer(FENCE_KIND_CHAIN, { block: RecordType.fenceChainBlock, children: chainLinks });

function waitLeaf(f: Fence, deadline: number): boolean {
  if (f.kind === FENCE_KIND_ARRAY) return f.wait(Math.max(0, deadline - performance.now())) > 0;
  return f.blockOnStatus(deadline);
}

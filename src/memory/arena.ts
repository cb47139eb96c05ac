/*
 * The arena: one shared WebAssembly.Memory that plays the DMA memory, its
 * layout (layout.ts), its allocators (buddy.ts: the page pool, user memory
 * and the sync heap) and the sync heap's record tags (record.ts).
 *
 * Contract: Arena.create() sizes the memory once (it never grows), writes
 * the control block and initialises the allocators; Arena.attach(memory)
 * rebuilds the same views in any other thread from the control block alone.
 * Only the memory crosses threads; every Arena object is a view.
 */
import { DmaBufError, hex } from "../errno.js";
import { BuddyAllocator } from "./buddy.js";
import { RecordTable } from "./record.js";
import {
  CONTROL_BASE, PAGE_SHIFT, SYNC_GRANULE_SHIFT, USER_GRANULE_SHIFT, WASM_PAGE, computeLayout, readLayout, writeLayout,
  type Layout, type LayoutOptions,
} from "./layout.js";

export class Arena {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly u64: BigUint64Array;
  readonly f64: Float64Array;
  /** The page pool: 4 KiB pages, orders 0..maxOrder. */
  readonly pages: BuddyAllocator;
  /** User memory: 64-byte granules, for lab.alloc(). */
  readonly user: BuddyAllocator;
  /** The sync heap: 64-byte granules, for fence records and other sync objects. */
  readonly syncHeap: BuddyAllocator;
  /** The type and generation of every record in the sync heap (record.ts). */
  readonly records: RecordTable;

  /** The memory's buffer, read once: the memory never grows (initial = maximum). */
  readonly buffer: SharedArrayBuffer;

  private constructor(readonly memory: WebAssembly.Memory, readonly layout: Layout) {
    const buffer = memory.buffer as unknown as SharedArrayBuffer;
    this.buffer = buffer;
    this.u8 = new Uint8Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.i32 = new Int32Array(buffer);
    this.u64 = new BigUint64Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.pages = new BuddyAllocator(buffer, layout.poolAllocator, "page pool");
    this.user = new BuddyAllocator(buffer, layout.userAllocator, "user memory");
    this.syncHeap = new BuddyAllocator(buffer, layout.syncAllocator, "sync heap");
    this.records = new RecordTable(this.i32, layout, this.syncHeap.shift);
  }

  static create(options: LayoutOptions = {}): Arena {
    const layout = computeLayout(options, BuddyAllocator.stateBytes);
    const pages = layout.memoryBytes / WASM_PAGE;
    let memory: WebAssembly.Memory;
    try {
      memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    } catch (cause) {
      throw new DmaBufError("ENOMEM", "lab_create", `cannot reserve a shared memory of ${layout.memoryBytes} bytes`, { cause });
    }
    const buffer = memory.buffer;
    BuddyAllocator.init(buffer, layout.poolAllocator, layout.poolBase, layout.poolBytes, PAGE_SHIFT);
    BuddyAllocator.init(buffer, layout.userAllocator, layout.userBase, layout.userBytes, USER_GRANULE_SHIFT);
    BuddyAllocator.init(buffer, layout.syncAllocator, layout.syncBase, layout.syncBytes, SYNC_GRANULE_SHIFT);
    writeLayout(new Uint32Array(buffer), layout);
    return new Arena(memory, layout);
  }

  static attach(memory: WebAssembly.Memory): Arena {
    if (!(memory instanceof WebAssembly.Memory) || !(memory.buffer instanceof SharedArrayBuffer)) {
      throw new DmaBufError("EINVAL", "lab_attach", "expected the lab's shared WebAssembly.Memory");
    }
    return new Arena(memory, readLayout(new Uint32Array(memory.buffer)));
  }


  /** Byte offset of a control block word. */
  control(word: number): number {
    return CONTROL_BASE + word;
  }

  /** The range engine copies may touch: the page pool and user memory. */
  get dmaLo(): number {
    return this.layout.poolBase;
  }

  get dmaHi(): number {
    return this.layout.memoryBytes;
  }

  /** True when a view lies in this arena's memory. */
  owns(view: ArrayBufferView): boolean {
    return view.buffer === this.buffer;
  }

  /** The arena offset of a view; EFAULT for a view of other memory. */
  offsetOf(view: ArrayBufferView, syscall: string): number {
    if (!this.owns(view)) {
      throw new DmaBufError("EFAULT", syscall, `a view of ${view.byteLength} bytes is not in this lab's arena`);
    }
    return view.byteOffset;
  }

  /** A Uint8Array over [offset, offset + len), checked against the memory. */
  view(offset: number, len: number): Uint8Array {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len < 0 ||
        offset + len > this.layout.memoryBytes) {
      throw new DmaBufError("EFAULT", "view", `range ${hex(offset)}+${len} is outside the arena`);
    }
    return new Uint8Array(this.buffer, offset, len);
  }
}

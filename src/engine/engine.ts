/*
 * Engine: one thread's instance of the copy engine over the lab's memory.
 *
 * Contract: construct one per thread (instantiation is cheap, the module is
 * shared); every method takes arena offsets, runs in one wasm call, and
 * either completes or throws a DmaBufError having moved no byte:
 * EFAULT for a range outside the DMA range [pool base, end of memory) or
 * wrapping around, EINVAL for a bad strategy or an overlap the strategy
 * cannot honour (reference copies forward only). Segments run in order.
 */
import { DmaBufError, hex } from "../errno.js";
import type { Arena } from "../memory/arena.js";
import { CTL_AUTO_TABLE } from "../memory/layout.js";
import { SG_SEG_SIZE, XXH_RESULT, XXH_STATE_SIZE, type EngineExports } from "./abi.js";
import { instantiateEngine } from "./module.js";
import { strategyId, type StrategyName } from "./strategy.js";
import { SegmentList, type SegmentSource, type SgTable } from "./tables.js";

export class Engine {
  readonly wasm: EngineExports;
  private scratch: SegmentList | undefined;

  constructor(readonly arena: Arena, readonly module: WebAssembly.Module) {
    this.wasm = instantiateEngine(module, arena.memory);
    const { syncBase, syncBytes } = arena.layout;
    this.wasm.engine_init(arena.dmaLo, arena.dmaHi, arena.control(CTL_AUTO_TABLE), syncBase, syncBase + syncBytes,
      arena.control(0));
  }

  /** Copies len bytes from src to dst (memmove semantics but for reference). */
  copy(dst: number, src: number, len: number, strategy: StrategyName = "auto"): void {
    const rc = this.wasm.copy(strategyId(strategy, "copy"), dst, src, len);
    if (rc !== 0) this.fail(rc, "copy", () => `{dst=${hex(dst)}, src=${hex(src)}, len=${len}}`, strategy);
  }

  /** Runs every descriptor of the table, in order, in one call. */
  sgCopy(table: SgTable, strategy: StrategyName = "auto"): void {
    const rc = this.wasm.sg_copy(table.offset, table.count, strategyId(strategy, "sg_copy"));
    if (rc !== 0) {
      this.fail(rc, "sg_copy", (i) => {
        if (i < 0) return `the descriptor table {offset=${hex(table.offset)}, count=${table.count}}`;
        const d = table.entry(i);
        return `descriptor ${i} {dst=${hex(d.dst)}, src=${hex(d.src)}, len=${d.len}}`;
      }, strategy);
    }
  }

  /** Gathers the list's segments, in order, into [dst, dst + total). */
  gather(list: SegmentSource, dst: number, strategy: StrategyName = "auto"): void {
    const rc = this.wasm.sg_gather(list.offset, list.count, dst, strategyId(strategy, "sg_gather"));
    if (rc !== 0) this.fail(rc, "sg_gather", (i) => this.describeSegment(list, i, "dst", dst), strategy);
  }

  /** Scatters [src, src + total) into the list's segments, in order. */
  scatter(list: SegmentSource, src: number, strategy: StrategyName = "auto"): void {
    const rc = this.wasm.sg_scatter(list.offset, list.count, src, strategyId(strategy, "sg_scatter"));
    if (rc !== 0) this.fail(rc, "sg_scatter", (i) => this.describeSegment(list, i, "src", src), strategy);
  }

  /** xxHash32 of the list's segments, concatenated. */
  checksum(list: SegmentSource, seed = 0): number {
    const state = this.scratchState();
    const rc = this.wasm.sg_checksum(list.offset, list.count, state, seed >>> 0);
    if (rc !== 0) this.fail(rc, "sg_checksum", (i) => this.describeSegment(list, i), "auto");
    return this.arena.u32[(state + XXH_RESULT) >>> 2];
  }

  /** xxHash32 of [offset, offset + len). */
  checksumRange(offset: number, len: number, seed = 0): number {
    const list = this.scratchList();
    return this.checksum(list.clear().push(offset, len), seed);
  }

  /** Fills [dst, dst + len) with a byte value. */
  fill(dst: number, value: number, len: number): void {
    const rc = this.wasm.fill(dst, value & 0xff, len);
    if (rc !== 0) this.fail(rc, "fill", () => `range {dst=${hex(dst)}, len=${len}}`, "auto");
  }

  /** Frees this engine's scratch storage. */
  dispose(): void {
    this.scratch?.free();
    this.scratch = undefined;
  }

  private scratchList(): SegmentList {
    // One segment entry, then the xxHash state, 16-byte aligned, in one block.
    this.scratch ??= new SegmentList(this.arena, 1 + XXH_STATE_SIZE / 8);
    return this.scratch;
  }

  private scratchState(): number {
    return this.scratchList().offset + 16;
  }

  private describeSegment(list: SegmentSource, i: number, side?: string, linear?: number): string {
    if (i < 0) {
      // The list itself, or (gather, scatter) the linear range it maps to.
      const { dmaLo, dmaHi } = this.arena;
      const end = list.offset + list.count * SG_SEG_SIZE;
      if (side === undefined || list.offset < dmaLo || end > dmaHi) {
        return `the segment list {offset=${hex(list.offset)}, count=${list.count}}`;
      }
      let total = 0;
      for (let k = 0; k < list.count; k++) total += list.entry(k).len;
      return `the linear range {${side}=${hex(linear!)}, len=${total}}`;
    }
    const s = list.entry(i);
    const segment = `segment ${i} {addr=${hex(s.addr)}, len=${s.len}}`;
    return side === undefined ? segment : `${segment} (linear ${side}=${hex(linear!)})`;
  }

  private fail(rc: number, syscall: string, describe: (index: number) => string, strategy: StrategyName): never {
    const index = this.wasm.last_fault_index();
    const code = DmaBufError.codeOf(rc);
    const range = `the DMA range [${hex(this.arena.dmaLo)}, ${hex(this.arena.dmaHi)})`;
    let what: string;
    if (index < 0) {
      what = code === "EFAULT"
        ? `${describe(index)} is outside ${range} or wraps around`
        : `bad argument (strategy '${strategy}')`;
    } else if (code === "EFAULT") {
      what = `${describe(index)} is outside ${range} or wraps around`;
    } else {
      what = `${describe(index)} overlaps its source with dst > src, and the '${strategy}' strategy copies forward only`;
    }
    throw new DmaBufError(code, syscall, what);
  }
}

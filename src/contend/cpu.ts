/*
 * A CPU thread of the contention experiment (run by workers/contend-cpu.ts):
 * a writer or a reader looping over the shared buffers, buffer
 * (index + k) mod n at its k-th operation; with sharing < 1, the
 * operations that sharedAt() does not send to the shared buffers go to the
 * thread's own buffer.
 *
 *   writer  takes the run's next generation, stamps its own image (arena
 *           memory; stamp.ts) and writes it whole into the buffer
 *   reader  reads the whole buffer into its own view and counts a tear when
 *           what it read is not whole (stamp.ts)
 *
 * With fences: one pwritev / preadv per operation (src/dmabuf/rw.ts), the
 * writer's iovecs being its `chunks` pieces; the path's implicit sync makes
 * the call exclusive against every other writer, reader and device job, and
 * its waits go through the run's WaitStep (timed). The postMessage strategy
 * uses the async twins.
 * Bypassed: the buffer is mmap()ed (the CPU view: the pages, or the CPU
 * cache of a non-coherent lab) and used without DMA_BUF_IOCTL_SYNC and
 * without the rw path: a reader copies the mapping in one engine call, a
 * writer copies its chunks one engine call each and pauses between them
 * (PAUSE_MS in Atomics.wait: a writer preempted mid-update), so that a
 * reader running meanwhile sees two generations. Nothing else is different,
 * and a tear is counted only when a reader really saw one.
 *
 * Contract: one run() per CpuThread (it waits for START, then loops until
 * STOP or its iterations, at least one operation unless STOP came first),
 * close() in every case.
 * Errors (ETIMEDOUT from a wait) end run() with the error.
 */
import { DmaBufError } from "../errno.js";
import type { Lab } from "../api/lab.js";
import { DmaBufRecord } from "../dmabuf/dma_buf.js";
import { iovRuns, zipRuns } from "../dmabuf/runs.js";
import { preadv, preadvAsync, pwritev, pwritevAsync } from "../dmabuf/rw.js";
import type { SgTable } from "../engine/tables.js";
import { DmaBufFile } from "../uapi/dma_buf_file.js";
import type { DmaBufMapping } from "../uapi/mapping.js";
import { O_RDWR, PROT_READ, PROT_WRITE } from "../uapi/uapi.js";
import { Control, type CpuRunResult, type CpuThreadData } from "./protocol.js";
import { sharedAt } from "./options.js";
import { isWhole, stamp } from "./stamp.js";
import { waitStep, type TimedWait } from "./wait.js";

/** A bypassing writer's pause between chunks. */
export const PAUSE_MS = 0.05;

/** One buffer as this thread uses it; `mapped` only when fences are bypassed. */
interface Target {
  buf: DmaBufRecord;
  mapped?: { file: DmaBufFile; mapping: DmaBufMapping; plans: number[][] };
}

export class CpuThread {
  private readonly control: Control;
  private readonly targets: Target[] = [];
  /** The thread's own buffer (sharing < 1). */
  private readonly own: Target[] = [];
  /** The writer's image or the reader's destination. */
  private readonly mine: Uint8Array;
  private readonly chunks: Uint8Array[] = [];
  private readonly table: SgTable;
  private readonly samples: number[] = [];
  private readonly wait: TimedWait;
  private readonly pause = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly lab: Lab, private readonly data: CpuThreadData) {
    this.control = new Control(lab.sync, data.control);
    this.mine = lab.alloc(data.size);
    this.table = lab.sgTable();
    const step = Math.ceil(data.size / data.chunks / 64) * 64;
    for (let at = 0; at < data.size; at += step) this.chunks.push(this.mine.subarray(at, Math.min(data.size, at + step)));
    this.wait = waitStep(data.wait, (ns) => {
      this.samples.push(ns);
      this.control.countWait(data.slot);
    });
    for (const [list, offsets] of [[this.targets, data.buffers], [this.own, data.own]] as const) {
      for (const offset of offsets) {
        const buf = DmaBufRecord.attach(lab.sync, offset);
        list.push({ buf, mapped: data.bypassFences ? this.map(buf) : undefined });
      }
    }
  }

  /**
   * mmap of the whole buffer and the copy plans against it: {dst, src, len}
   * triples, per chunk for a writer (image -> mapping), one for a reader.
   */
  private map(buf: DmaBufRecord): NonNullable<Target["mapped"]> {
    const file = new DmaBufFile(buf, O_RDWR);
    const mapping = file.mmap(0, this.data.size, PROT_READ | PROT_WRITE);
    const views = iovRuns(mapping.views);
    const writer = this.data.role === "writer";
    const sources = writer ? iovRuns(this.chunks) : iovRuns([this.mine]);
    const plans: number[][] = sources.map(() => []);
    zipRuns(views, sources, (v, vOff, s, sOff, n) => {
      const plan = plans[sources.indexOf(s)];
      if (writer) plan.push(v.addr + vOff, s.addr + sOff, n);
      else plan.push(s.addr + sOff, v.addr + vOff, n);
    });
    return { file, mapping, plans };
  }

  private copy(plan: number[]): void {
    const table = this.table.clear();
    for (let i = 0; i < plan.length; i += 3) table.push(plan[i], plan[i + 1], plan[i + 2]);
    this.lab.engine.sgCopy(table);
  }

  async run(): Promise<CpuRunResult> {
    const { data, control } = this;
    if (!control.waitStart(data.timeoutMs)) {
      throw new DmaBufError("ETIMEDOUT", "contend", `${data.role} ${data.index} was not started within ${data.timeoutMs} ms`);
    }
    // Stopped before it started: the run failed during set-up.
    if (control.aborted) return { waitsNs: new Float64Array(0) };
    const { wait } = this;
    const { timeoutMs } = data;
    for (let k = 0; data.iterations === null ? k === 0 || !control.stopped : k < data.iterations; k++) {
      const list = sharedAt(data.sharing, k) ? this.targets : this.own;
      const t = list[(data.index + k) % list.length];
      if (data.role === "writer") {
        stamp(this.mine, control.nextGeneration(), data.index, this.lab.engine);
        if (t.mapped) {
          const { mapping, plans } = t.mapped;
          plans.forEach((plan, i) => {
            if (i > 0) Atomics.wait(this.pause, 0, 0, PAUSE_MS);
            this.copy(plan);
            // The copy went by address: declared, so that a sanitizing lab sees it (DmaBufMapping.access).
            const chunk = this.chunks[i];
            mapping.access(true, chunk.byteOffset - this.mine.byteOffset, chunk.byteLength);
          });
        } else if (wait.blocking) {
          pwritev(t.buf, this.chunks, 0, { timeoutMs, wait: wait.step });
        } else {
          await pwritevAsync(t.buf, this.chunks, 0, { timeoutMs, wait: wait.step });
        }
        control.count(data.slot, data.size, false);
      } else {
        if (t.mapped) {
          this.copy(t.mapped.plans[0]);
          t.mapped.mapping.access(false);
        }
        else if (wait.blocking) preadv(t.buf, [this.mine], 0, { timeoutMs, wait: wait.step });
        else await preadvAsync(t.buf, [this.mine], 0, { timeoutMs, wait: wait.step });
        control.count(data.slot, data.size, !isWhole(this.mine, this.lab.engine));
      }
    }
    return { waitsNs: Float64Array.from(this.samples) };
  }

  close(): void {
    for (const t of [...this.targets.splice(0), ...this.own.splice(0)]) {
      if (t.mapped) {
        t.mapped.mapping.unmap();
        t.mapped.file.put();
      }
      t.buf.put();
    }
    this.table.free();
    this.lab.free(this.mine);
  }
}

/*
 * A test worker (bundled to build/test-workers/sanitize-agent.mjs) for
 * test/sanitize.test.ts: one agent of a generated protocol. It takes its
 * steps in the protocol's global order (a shared turn word, which is no
 * fence: the sanitizer does not see it), and for each: waits for the step
 * fences it was told to (Fence.wait, polling isSignaled, or one wait on a
 * merge of them), accesses the buffer (a DMA_BUF_IOCTL_SYNC START/END
 * bracket, or a declared mmap access of a range outside any bracket),
 * signals the step's own fence, passes the turn on. Reports each step's
 * lab-clock window, so that the test can name a race's sides by step.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { DmaBufRecord } from "../../src/dmabuf/dma_buf.js";
import { DmaBufFile } from "../../src/uapi/dma_buf_file.js";
import { DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE, O_RDWR, PROT_READ, PROT_WRITE } from "../../src/uapi/uapi.js";
import type { Fence } from "../../src/sync/fence.js";
import { runWorker } from "./protocol.js";

export type WaitHow = "wait" | "poll" | "merge";

export interface ProtocolStep {
  agent: number;
  buffer: number;
  write: boolean;
  /** bracket: SYNC START..END (the whole buffer); mmap: a declared access of [offset, offset + length). */
  kind: "bracket" | "mmap";
  offset: number;
  length: number;
  /** The earlier steps whose fences it waits for. */
  waits: number[];
  how: WaitHow;
}

export interface SanitizeAgentData {
  handle: LabHandle;
  agent: number;
  steps: ProtocolStep[];
  /** The step fences' records (one per step; the main thread holds them). */
  fences: number[];
  /** The buffers' records. */
  buffers: number[];
  /** Word 0: the next step to run. */
  turn: Int32Array;
  timeoutMs: number;
}

export interface SanitizeAgentReport {
  type: "done";
  /** [step, startNs, endNs] of each of its steps. */
  windows: [number, number, number][];
}

runWorker<SanitizeAgentData, SanitizeAgentReport>(async (data) => {
  const lab = await Lab.attach(data.handle);
  lab.trace.setThread(`agent ${data.agent}`);
  const files = data.buffers.map((b) => {
    const buf = DmaBufRecord.attach(lab.sync, b);
    const file = new DmaBufFile(buf, O_RDWR);
    buf.put();
    return { file, map: file.mmap(0, file.buf.size, PROT_READ | PROT_WRITE) };
  });
  const windows: [number, number, number][] = [];
  try {
    for (let j = 0; j < data.steps.length; j++) {
      const step = data.steps[j];
      if (step.agent !== data.agent) continue;
      const deadline = performance.now() + data.timeoutMs;
      for (let t = Atomics.load(data.turn, 0); t !== j; t = Atomics.load(data.turn, 0)) {
        if (performance.now() > deadline) throw new Error(`agent ${data.agent}: turn ${j} never came (at ${t})`);
        Atomics.wait(data.turn, 0, t, 100);
      }
      const deps: Fence[] = step.waits.map((k) => lab.sync.fenceAt(data.fences[k]));
      try {
        if (step.how === "merge" && deps.length > 0) {
          const merged = lab.sync.merge(...deps);
          if (merged.wait(data.timeoutMs) === 0) throw new Error(`step ${j}: merged fences did not signal`);
          merged.put();
        } else {
          for (const d of deps) {
            if (step.how === "poll") {
              while (!d.isSignaled()) if (performance.now() > deadline) throw new Error(`step ${j}: a fence did not signal`);
            } else if (d.wait(data.timeoutMs) === 0) {
              throw new Error(`step ${j}: a fence did not signal`);
            }
          }
        }
      } finally {
        for (const d of deps) d.put();
      }
      const { file, map } = files[step.buffer];
      const start = lab.sync.clock.nowNs();
      if (step.kind === "bracket") {
        const dir = step.write ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_READ;
        file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | dir });
        if (step.write) map.views[0][0] = j & 0xff;
        file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | dir });
      } else {
        map.access(step.write, step.offset, step.length);
      }
      windows.push([j, start, lab.sync.clock.nowNs()]);
      const own = lab.sync.fenceAt(data.fences[j]);
      own.signal();
      own.put();
      Atomics.store(data.turn, 0, j + 1);
      Atomics.notify(data.turn, 0);
    }
  } finally {
    for (const { file, map } of files) {
      map.unmap();
      file.put();
    }
    lab.close();
  }
  return { type: "done", windows };
});

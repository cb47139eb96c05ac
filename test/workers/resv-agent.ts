/*
 * A test worker (bundled to build/test-workers/resv-agent.mjs) for
 * test/sync-resv.test.ts: another thread working on one reservation object
 * through Resv.attach(), under its lock in shared memory.
 *
 * Modes:
 *   add        says "ready", waits for the shared start flag, then `steps`
 *              times: lock, reserveFences(1), addFence() of a new fence on
 *              one of its `contexts` timelines (round robin, seqnos rising,
 *              usage = context index % 4), unlock; every 8th step also
 *              getFences(BOOKKEEP) and checks the list has no fence twice.
 *              Reports the last fence of each of its contexts (which the
 *              object must hold at the end) and how many times it took the
 *              lock.
 *   lock-once  says "ready", then takes the lock once (blocking while the
 *              main thread holds it), adds one WRITE fence, unlocks.
 *   signal     says "ready", then signals the fence at `fence`.
 * Every fence and timeline it made is put before it reports; the object
 * keeps its own references.
 */
import { parentPort } from "node:worker_threads";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_WRITE, Resv, type ResvUsage } from "../../src/sync/resv.js";
import type { Fence } from "../../src/sync/fence.js";
import type { Timeline } from "../../src/sync/timeline.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface ResvAgentData {
  handle: LabHandle;
  mode: "add" | "lock-once" | "signal";
  index: number;
  /** The reservation object's offset (add, lock-once). */
  resv: number;
  /** The fence to signal (signal). */
  fence: number;
  steps: number;
  contexts: number;
  /** Word 0 becomes non-zero when the workers may start (add). */
  start: Int32Array;
  timeoutMs: number;
}

export interface ResvAgentReport {
  type: "done";
  index: number;
  /** The fences the object must hold at the end (offset, usage). */
  last: { fence: number; usage: number }[];
  /** Lock acquisitions this worker made on the object. */
  acquisitions: number;
  problems: string[];
}

async function main(data: ResvAgentData): Promise<ResvAgentReport> {
  const lab = await Lab.attach(data.handle);
  const sync = lab.sync;
  const report: ResvAgentReport = { type: "done", index: data.index, last: [], acquisitions: 0, problems: [] };

  if (data.mode === "signal") {
    parentPort!.postMessage({ type: "ready" });
    sync.view(data.fence, false).signal();
    lab.close();
    return report;
  }

  const resv = Resv.attach(sync, data.resv);
  const timelines: Timeline[] = [];
  /** Takes the lock (bounded, counted), reserves a slot, adds f, unlocks. */
  const addLocked = (f: Fence, usage: ResvUsage): void => {
    resv.lock(data.timeoutMs);
    report.acquisitions++;
    try {
      resv.reserveFences(1);
      resv.addFence(f, usage);
    } finally {
      resv.unlock();
    }
  };
  try {
    if (data.mode === "lock-once") {
      const t = sync.timeline({ driver: "mock", name: `agent-${data.index}` });
      timelines.push(t);
      const f = t.createFence(1n);
      parentPort!.postMessage({ type: "ready" });
      addLocked(f, DMA_RESV_USAGE_WRITE);
      report.last.push({ fence: f.offset, usage: DMA_RESV_USAGE_WRITE });
      f.put();
      return report;
    }

    for (let c = 0; c < data.contexts; c++) timelines.push(sync.timeline({ driver: "mock", name: `agent-${data.index}-${c}` }));
    const last = new Map<number, { fence: number; usage: number }>();
    readyThenAwaitStart(data.start, data.timeoutMs, `worker ${data.index}`);
    for (let step = 0; step < data.steps; step++) {
      const c = step % data.contexts;
      const usage = (c % 4) as ResvUsage;
      const f = timelines[c].createFence(BigInt(Math.floor(step / data.contexts) + 1));
      addLocked(f, usage);
      last.set(c, { fence: f.offset, usage });
      f.put();
      if (step % 8 === 7) {
        const fences = resv.getFences(DMA_RESV_USAGE_BOOKKEEP);
        report.acquisitions++;
        const offsets = new Set(fences.map((x) => x.offset));
        if (offsets.size !== fences.length && report.problems.length < 20) {
          report.problems.push(`step ${step}: getFences gave a fence twice`);
        }
        fences.forEach((x) => x.put());
      }
    }
    report.last = [...last.values()];
    return report;
  } finally {
    for (const t of timelines) t.unref();
    resv.put();
    lab.close();
  }
}

runWorker(main);

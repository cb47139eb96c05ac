/*
 * A device thread probing an IOMMU (bundled to build/test-workers/attach-iommu-prober.mjs)
 * while the main thread maps and unmaps through it, for
 * test/devices-iommu.test.ts: translate() takes no lock, so this checks what
 * the module comment's ordering promises.
 *
 * It attaches to the lab, builds its view of the IOMMU from its offset, says
 * "ready" and waits for the start flag. Then, round after round until the
 * stop flag (at least minRounds rounds):
 *   - the stable mapping, which the main thread never touches, must translate
 *     to exactly `stable.runs`;
 *   - a random range of the IOVA space is probed. It may fault (EFAULT), but
 *     whatever it emits must lie inside the pages the main thread maps
 *     (`pages`), in whole-range order, and add up to the length asked.
 * Problems are reported, not thrown (at most 20).
 */
import { Iommu, IOMMU_READ, type PhysRun } from "../../src/dmabuf/iommu.js";
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { PAGE_SIZE } from "../../src/memory/layout.js";
import { prng } from "../helpers/prng.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface ProberData {
  handle: LabHandle;
  iommu: number;
  stable: { iova: number; len: number; runs: PhysRun[] };
  /** Arena offsets of every page the main thread may map. */
  pages: number[];
  seed: number;
  minRounds: number;
  start: Int32Array;
  stop: Int32Array;
  timeoutMs: number;
}

export interface ProberReport {
  type: "done";
  rounds: number;
  /** Probes that emitted runs, and probes that faulted. */
  hits: number;
  faults: number;
  problems: string[];
}

runWorker<ProberData, ProberReport>(async (data) => {
  const lab = await Lab.attach(data.handle);
  const iommu = new Iommu(lab.sync, data.iommu);
  const rng = prng(data.seed);
  const allowed = new Set(data.pages);
  const report: ProberReport = { type: "done", rounds: 0, hits: 0, faults: 0, problems: [] };
  const problem = (msg: string) => {
    if (report.problems.length < 20) report.problems.push(`round ${report.rounds}: ${msg}`);
  };
  const runs: PhysRun[] = [];
  const collect = (addr: number, len: number) => { runs.push({ addr, len }); };
  try {
    readyThenAwaitStart(data.start, data.timeoutMs, "prober");
    do {
      runs.length = 0;
      iommu.translate(data.stable.iova, data.stable.len, IOMMU_READ, collect);
      if (JSON.stringify(runs) !== JSON.stringify(data.stable.runs)) problem(`the stable mapping gave ${JSON.stringify(runs)}`);
      runs.length = 0;
      const iova = rng.int(PAGE_SIZE, iommu.iovaBytes - PAGE_SIZE);
      const len = rng.int(1, Math.min(8 * PAGE_SIZE, iommu.iovaBytes - iova));
      try {
        iommu.translate(iova, len, IOMMU_READ, collect);
        report.hits++;
        if (runs.reduce((n, r) => n + r.len, 0) !== len) problem(`[${iova}, +${len}) emitted ${JSON.stringify(runs)}`);
        for (const r of runs) {
          for (let a = r.addr - (r.addr % PAGE_SIZE); a < r.addr + r.len; a += PAGE_SIZE) {
            if (!allowed.has(a)) problem(`[${iova}, +${len}) emitted page ${a}, which was never mapped`);
          }
        }
      } catch (e) {
        if (!(e instanceof DmaBufError) || e.code !== "EFAULT") throw e;
        report.faults++;
        if (runs.length > 0) problem(`[${iova}, +${len}) faulted after emitting ${runs.length} runs`);
      }
      report.rounds++;
    } while (Atomics.load(data.stop, 0) === 0 || report.rounds < data.minRounds);
    return report;
  } finally {
    lab.close();
  }
});

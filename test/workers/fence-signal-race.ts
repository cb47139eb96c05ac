/*
 * A test worker (bundled to build/test-workers/fence-signal-race.mjs) that
 * races other workers to signal the same fences, for test/sync-fence.test.ts.
 *
 * The main thread creates `count` pending fences and holds them; their
 * offsets are in an Int32Array in lab memory (FenceSignalRaceData.offsets),
 * next to a win counter per fence (wins). Every worker posts "ready", waits
 * for the shared start word, then signals every fence in the same order
 * with its own error (-(index + 1)), so that the status names the winner:
 * checkAndSignal() for even fences (false: this worker won), signal() for
 * odd ones (a loser gets EINVAL). A win adds one to the fence's counter.
 * It ends with a FenceSignalRaceReport; any other outcome is an error.
 */
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface FenceSignalRaceData {
  handle: LabHandle;
  index: number;
  count: number;
  /** Arena offset of count Int32 fence offsets. */
  offsets: number;
  /** Arena offset of count Int32 win counters. */
  wins: number;
  /** Word 0 becomes non-zero when the workers may start. */
  start: Int32Array;
  timeoutMs: number;
}

export interface FenceSignalRaceReport {
  type: "done";
  index: number;
  won: number;
  lost: number;
}

async function main(data: FenceSignalRaceData): Promise<FenceSignalRaceReport> {
  const lab = await Lab.attach(data.handle);
  const { sync } = lab;
  const offsets = new Int32Array(lab.memory.buffer, data.offsets, data.count);
  const wins = new Int32Array(lab.memory.buffer, data.wins, data.count);
  // Borrowed views: the main thread holds every fence until all reports are in.
  const fences = Array.from(offsets, (offset) => sync.view(offset, false));
  const error = -(data.index + 1);
  const report: FenceSignalRaceReport = { type: "done", index: data.index, won: 0, lost: 0 };

  readyThenAwaitStart(data.start, data.timeoutMs, `worker ${data.index}`);

  fences.forEach((f, i) => {
    let won: boolean;
    if (i % 2 === 0) {
      won = !f.checkAndSignal(error);
    } else {
      try {
        f.signal(error);
        won = true;
      } catch (e) {
        if (!(e instanceof DmaBufError && e.code === "EINVAL")) throw e;
        won = false;
      }
    }
    if (won) {
      Atomics.add(wins, i, 1);
      report.won++;
    } else {
      report.lost++;
    }
  });
  lab.close();
  return report;
}

runWorker(main);

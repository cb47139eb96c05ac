/*
 * A test worker (bundled to build/test-workers/chain-race.mjs) for
 * test/sync-chain.test.ts: the kernel's find_race thread (st-dma-fence-chain.c
 * __find_race) over a chain the main thread built and holds.
 *
 * It attaches to the lab, says "ready", waits for the shared start flag, then
 * loops until the stop flag is set (at least once): find_seqno from the tail
 * for a random point in [1, n] must not fail; when it finds the node of that
 * very point, finding the point again from there must give that node; then it
 * signals a random fence among the first n - 1 (the last is never signalled
 * here). Every answer is also checked for meaning: null only when every
 * fence up to the point is signalled; otherwise a node of the tail's context
 * whose previous point is before the one asked. It ends with a
 * ChainRaceReport; problems are reported, not thrown, so that the main
 * thread sees all of them.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import type { Fence } from "../../src/sync/fence.js";
import { FenceChain } from "../../src/sync/fence_chain.js";
import { prng } from "../helpers/prng.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface ChainRaceData {
  handle: LabHandle;
  index: number;
  seed: number;
  /** Offset of the chain's last node (held by the main thread). */
  tail: number;
  /** Offsets of the contained fences, fences[i] in node i (seqno i + 1). */
  fences: number[];
  /** Word 0 becomes non-zero when the workers may start. */
  start: Int32Array;
  /** Word 0 becomes non-zero when the workers must stop. */
  stop: Int32Array;
  timeoutMs: number;
}

export interface ChainRaceReport {
  type: "done";
  index: number;
  iterations: number;
  /** Answers that were null (everything up to the point signalled). */
  nulls: number;
  /** find-self checks made. */
  selves: number;
  /** Signals that this worker won. */
  signalled: number;
  problems: string[];
}

async function main(data: ChainRaceData): Promise<ChainRaceReport> {
  const lab = await Lab.attach(data.handle);
  const sync = lab.sync;
  const rng = prng(data.seed);
  const n = data.fences.length;
  const tail = sync.view(data.tail, false);
  const fences = data.fences.map((f) => sync.view(f, false));
  const report: ChainRaceReport = { type: "done", index: data.index, iterations: 0, nulls: 0, selves: 0, signalled: 0, problems: [] };
  const problem = (msg: string) => {
    if (report.problems.length < 20) report.problems.push(`worker ${data.index}, iteration ${report.iterations}: ${msg}`);
  };

  readyThenAwaitStart(data.start, data.timeoutMs, `worker ${data.index}`);

  do {
    const seqno = rng.int(1, n);
    let found: Fence | null;
    try {
      found = FenceChain.findSeqno(tail, BigInt(seqno));
    } catch (e) {
      problem(`find_seqno(tail, ${seqno}) failed: ${String(e)}`);
      break;
    }
    if (found === null) {
      report.nulls++;
      const pending = fences.slice(0, seqno).findIndex((f) => !f.isSignaled());
      if (pending >= 0) problem(`find_seqno(tail, ${seqno}) gave null, but fence ${pending} is pending`);
    } else {
      if (!(found instanceof FenceChain)) problem(`find_seqno(tail, ${seqno}) gave a plain fence`);
      else if (found.context !== tail.context) problem(`find_seqno(tail, ${seqno}) left the tail's context`);
      else if (found.prevSeqno >= BigInt(seqno)) problem(`find_seqno(tail, ${seqno}) gave a node after point ${found.prevSeqno}`);
      if (found.seqno === BigInt(seqno)) {
        report.selves++;
        try {
          const self = FenceChain.findSeqno(found, BigInt(seqno));
          if (self === null || !self.is(found)) problem(`find-self of ${seqno} did not give the node itself`);
        } catch (e) {
          problem(`find-self of ${seqno} failed: ${String(e)}`);
          break;
        }
      }
    }
    report.iterations++;
    const k = rng.int(0, n - 2);
    if (!fences[k].checkAndSignal()) report.signalled++;
  } while (Atomics.load(data.stop, 0) === 0);
  lab.close();
  return report;
}

runWorker(main);

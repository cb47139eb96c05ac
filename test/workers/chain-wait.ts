/*
 * A test worker (bundled to build/test-workers/chain-wait.mjs) for
 * test/sync-chain.test.ts: the kernel's wait thread (st-dma-fence-chain.c
 * __wait_fence_chains): a blocking wait on the chain's last node, with a
 * timeout so that a lost wake-up fails the test instead of hanging it.
 *
 * It attaches to the lab, says "ready", then blocks in wait(timeoutMs) on
 * the node at `fence` (held by the main thread) and reports the time left
 * (0: timed out) and the node's status after the wait.
 */
import { parentPort } from "node:worker_threads";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { runWorker } from "./protocol.js";

export interface ChainWaitData {
  handle: LabHandle;
  /** Offset of the fence to wait on (held by the main thread). */
  fence: number;
  timeoutMs: number;
}

export interface ChainWaitReport {
  type: "done";
  left: number;
  status: number;
}

async function main(data: ChainWaitData): Promise<ChainWaitReport> {
  const lab = await Lab.attach(data.handle);
  const fence = lab.sync.view(data.fence, false);
  parentPort!.postMessage({ type: "ready" });
  const left = fence.wait(data.timeoutMs);
  const report: ChainWaitReport = { type: "done", left, status: fence.status };
  lab.close();
  return report;
}

runWorker(main);

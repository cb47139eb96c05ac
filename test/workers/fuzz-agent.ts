/*
 * A test worker (bundled to build/test-workers/fuzz-agent.mjs) that runs the
 * model-based fuzzer (test/fuzz/uapi-fuzz.ts) on a shared lab from its own
 * thread, with its own Process and seed, while other threads do the same.
 * It attaches to the lab, says "ready", waits for the shared start flag, runs
 * its steps and reports a FuzzAgentReport (the finding, if any, with the
 * operations that led to it).
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { runFuzz, type FuzzResult } from "../fuzz/uapi-fuzz.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface FuzzAgentData {
  handle: LabHandle;
  index: number;
  seed: number;
  steps: number;
  start: Int32Array;
  timeoutMs: number;
}

export interface FuzzAgentReport extends FuzzResult {
  type: "done";
  index: number;
  seed: number;
}

async function main(data: FuzzAgentData): Promise<FuzzAgentReport> {
  const lab = await Lab.attach(data.handle);
  try {
    readyThenAwaitStart(data.start, data.timeoutMs, `fuzz agent ${data.index}`);
    // Other threads allocate meanwhile: the free-space check is the main thread's, after all are done.
    const result = runFuzz(lab, { seed: data.seed, steps: data.steps }, false);
    return { type: "done", index: data.index, seed: data.seed, ...result };
  } finally {
    lab.close();
  }
}

runWorker(main);

/*
 * The fuzzer from several threads at once: `threads` real workers
 * (test/workers/fuzz-agent.ts) fuzz one lab, each with its own Process and
 * seed (seed + index), while this thread fuzzes it too (seed - 1). Each
 * checks its own objects after every step; once all are done and every
 * worker has ended, this thread checks that the arena's free space is what
 * it was before any of them started. Every wait is bounded (timeoutMs) and
 * every worker is terminated, whatever happens. No vitest here: the fuzz
 * command uses it too.
 */
import { Worker } from "node:worker_threads";
import { artifactUrl } from "../../src/engine/artifacts.js";
import type { Lab } from "../../src/api/lab.js";
import type { FuzzAgentData, FuzzAgentReport } from "../workers/fuzz-agent.js";
import { runFuzz, type Finding, type FuzzResult } from "./uapi-fuzz.js";

export interface ThreadsResult {
  /** Steps run by all threads together. */
  steps: number;
  results: (FuzzResult & { seed: number })[];
  /** The first finding, with the seed of the thread that saw it (replay it alone with that seed). */
  finding?: Finding & { seed: number; thread: string };
}

function freeSpace(lab: Lab): string {
  const s = lab.stats();
  return `pages ${s.pages.freeBytes}, user ${s.user.freeBytes}, sync ${s.sync.freeBytes}`;
}

export async function fuzzThreads(lab: Lab, seed: number, steps: number, threads: number, timeoutMs = 600_000): Promise<ThreadsResult> {
  // The main thread's one-time allocations first (its own warm-up), so that they do not count.
  runFuzz(lab, { seed: seed - 1, steps: 1 });
  const before = freeSpace(lab);
  const start = new Int32Array(new SharedArrayBuffer(4));
  const workers: Worker[] = [];
  const done: Promise<FuzzAgentReport>[] = [];
  try {
    for (let i = 0; i < threads; i++) {
      const data: FuzzAgentData = { handle: lab.share(), index: i, seed: seed + i, steps, start, timeoutMs };
      const w = new Worker(artifactUrl("test-workers/fuzz-agent.mjs"), { workerData: data, name: `fuzz-${i}` });
      workers.push(w);
      done.push(new Promise<FuzzAgentReport>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`fuzz worker ${i}: no report within ${timeoutMs} ms`)), timeoutMs);
        w.on("message", (m: { type: string; message?: string }) => {
          if (m.type === "ready") return;
          clearTimeout(timer);
          if (m.type === "done") resolve(m as FuzzAgentReport);
          else reject(new Error(`fuzz worker ${i}: ${m.message}`));
        });
        w.on("error", (e) => { clearTimeout(timer); reject(e); });
        w.on("exit", (code) => { clearTimeout(timer); reject(new Error(`fuzz worker ${i} exited with code ${code}`)); });
      }));
    }
    Atomics.store(start, 0, 1);
    Atomics.notify(start, 0);
    // This thread fuzzes too, concurrently (its free-space check waits for the others).
    const mine = { seed: seed - 1, ...runFuzz(lab, { seed: seed - 1, steps }, false) };
    const theirs = await Promise.all(done);
    const results = [mine, ...theirs];
    const first = results.find((r) => r.finding !== undefined);
    const result: ThreadsResult = { steps: results.reduce((n, r) => n + r.steps, 0), results };
    if (first?.finding !== undefined) {
      result.finding = { ...first.finding, seed: first.seed, thread: first === mine ? "main" : `worker ${(first as FuzzAgentReport).index}` };
    }
    await Promise.all(workers.map((w) => w.terminate()));
    const after = freeSpace(lab);
    if (result.finding === undefined && after !== before) {
      result.finding = { step: result.steps, op: { op: "poll", which: 0 }, message: `the arena's free space after every thread's teardown is ${after}, at the start ${before}`, seed, thread: "all" };
    }
    return result;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/*
 * `npm run fuzz -- --steps N --seed S [--seeds K] [--threads T] [--coherence both|coherent|non-coherent] [--json]`:
 * long runs of the model-based fuzzer (test/fuzz/uapi-fuzz.ts). For each of
 * the K seeds S, S+1, ... and each coherence mode it runs N steps in this
 * thread, then (with --threads T > 0) N steps in each of T workers and this
 * thread at once. Progress goes to stderr; the result table (or one JSON
 * object with --json) to stdout. A finding prints its seed, the operation
 * and the message, then the shrunk sequence that still fails (replay:
 * `npm run fuzz -- --steps <n> --seed <seed>`); the exit code is then 1.
 */
import { parseArgs } from "node:util";
import { Lab } from "../../src/api/lab.js";
import type { LabOptions } from "../../src/lab.js";
import { shrink, runFuzz, type Finding } from "./uapi-fuzz.js";
import { fuzzThreads } from "./threads.js";

interface Row {
  seed: number;
  coherent: boolean;
  threads: number;
  steps: number;
  expectedErrors: number;
  findings: number;
  seconds: number;
  stepsPerSecond: number;
}

const LAB: LabOptions = { memoryBytes: 64 * 1024 * 1024, poolBytes: 16 * 1024 * 1024 };

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: npm run fuzz -- --steps N --seed S [--seeds K] [--threads T] [--coherence both|coherent|non-coherent] [--json]\n`);
  process.exit(2);
}

function integer(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) usage(`--${name} ${value} must be an integer >= ${min}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      steps: { type: "string" }, seed: { type: "string" }, seeds: { type: "string" }, threads: { type: "string" },
      coherence: { type: "string" }, json: { type: "boolean" },
    },
  });
  const steps = integer(values.steps, "steps", 100_000, 1);
  const seed = integer(values.seed, "seed", 0x5eed2026, -(2 ** 31));
  const seeds = integer(values.seeds, "seeds", 1, 1);
  const threads = integer(values.threads, "threads", 0, 0);
  const coherence = values.coherence ?? "both";
  if (!["both", "coherent", "non-coherent"].includes(coherence)) usage(`--coherence ${coherence} is not both, coherent or non-coherent`);
  const modes = coherence === "both" ? [true, false] : [coherence === "coherent"];
  const rows: Row[] = [];
  let failed: (Finding & { seed: number; coherent: boolean; shrunk?: unknown[] }) | undefined;
  for (let k = 0; k < seeds && failed === undefined; k++) {
    for (const coherent of modes) {
      const s = (seed + k) | 0;
      const lab = await Lab.create({ ...LAB, coherent });
      const t0 = performance.now();
      const label = `seed ${s} ${coherent ? "coherent" : "non-coherent"}`;
      const r = runFuzz(lab, { seed: s, steps, every: 10_000, progress: (n) => process.stderr.write(`\r${label}: ${n} steps`) });
      const seconds = (performance.now() - t0) / 1000;
      process.stderr.write(`\r${label}: ${r.steps} steps, ${seconds.toFixed(1)} s\n`);
      rows.push({ seed: s, coherent, threads: 1, steps: r.steps, expectedErrors: r.expectedErrors, findings: r.finding ? 1 : 0, seconds, stepsPerSecond: r.steps / seconds });
      lab.close();
      if (r.finding !== undefined) {
        process.stderr.write(`${label}: FINDING at step ${r.finding.step}: ${r.finding.message}\n${label}: shrinking the ${r.ops!.length} operations (at most 2 minutes)...\n`);
        const small = await shrink(r.ops!, () => Lab.create({ ...LAB, coherent }));
        failed = { ...small.finding, seed: s, coherent, shrunk: small.ops };
        break;
      }
      if (threads > 0) {
        const shared = await Lab.create({ ...LAB, coherent });
        const t1 = performance.now();
        process.stderr.write(`${label}: ${threads} workers and this thread, ${steps} steps each...\n`);
        const m = await fuzzThreads(shared, s, steps, threads);
        const secs = (performance.now() - t1) / 1000;
        rows.push({
          seed: s, coherent, threads: threads + 1, steps: m.steps, expectedErrors: m.results.reduce((n, x) => n + x.expectedErrors, 0),
          findings: m.finding ? 1 : 0, seconds: secs, stepsPerSecond: m.steps / secs,
        });
        shared.close();
        if (m.finding !== undefined) {
          failed = { ...m.finding, coherent };
          break;
        }
      }
    }
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ steps, seeds, threads, rows, finding: failed ?? null })}\n`);
  } else {
    process.stdout.write("seed         coherence     threads  steps      expected errors  findings  seconds  steps/s\n");
    for (const r of rows) {
      process.stdout.write(`${String(r.seed).padEnd(12)} ${(r.coherent ? "coherent" : "non-coherent").padEnd(13)} ${String(r.threads).padEnd(8)} ${String(r.steps).padEnd(10)} ${String(r.expectedErrors).padEnd(16)} ${String(r.findings).padEnd(9)} ${r.seconds.toFixed(1).padEnd(8)} ${r.stepsPerSecond.toFixed(0)}\n`);
    }
    const total = rows.reduce((n, r) => n + r.steps, 0);
    process.stdout.write(`total: ${total} steps, ${rows.reduce((n, r) => n + r.findings, 0)} findings\n`);
    if (failed !== undefined) {
      process.stdout.write(`FINDING with seed ${failed.seed} (${failed.coherent ? "coherent" : "non-coherent"}) at step ${failed.step}: ${failed.message}\n`);
      if (failed.shrunk !== undefined) process.stdout.write(`shrunk sequence (${failed.shrunk.length} operations):\n${JSON.stringify(failed.shrunk)}\n`);
    }
  }
  return failed === undefined ? 0 : 1;
}

process.exitCode = await main();

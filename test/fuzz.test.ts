/*
 * The model-based fuzzer (test/fuzz/uapi-fuzz.ts) in the suite: a bounded
 * number of steps with a fixed seed (DMABUF_SEED chooses another), on a
 * coherent and a non-coherent lab from this thread, and from two real worker
 * threads and this one at once on one lab. Zero findings are expected; a
 * finding fails the test with its seed, step, operation and message (replay
 * and shrink it with `npm run fuzz -- --steps <n> --seed <seed>`). Long runs
 * are `npm run fuzz`.
 */
import { describe, expect, test } from "vitest";
import { fuzzThreads } from "./fuzz/threads.js";
import { runFuzz, type Finding } from "./fuzz/uapi-fuzz.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { testSeed } from "./helpers/prng.js";

const MiB = 1024 * 1024;
// Not sanitized under test:sanitize: the fuzzer checks that teardown gives all the space back, which the sanitizer's logs keep.
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB, sanitize: false });
cleanUpAfterEach({ labs });

const STEPS = 1500;

function report(seed: number, finding: Finding | undefined): string | undefined {
  return finding === undefined ? undefined
    : `seed ${seed}, step ${finding.step}, ${JSON.stringify(finding.op)}: ${finding.message} (replay: npm run fuzz -- --steps ${finding.step + 1} --seed ${seed})`;
}

describe("the uapi and the object API against a plain model", () => {
  for (const coherent of [true, false]) {
    test(`${STEPS} random steps (${coherent ? "coherent" : "non-coherent"} lab): no finding, and the arena's free space returns to its start`, async () => {
      const lab = await labs.create({ coherent });
      const seed = testSeed();
      const r = runFuzz(lab, { seed, steps: STEPS });
      expect(report(seed, r.finding)).toBeUndefined();
      expect(r.steps).toBe(STEPS);
      expect(r.expectedErrors, "calls the model said must fail").toBeGreaterThan(0);
    }, 120_000);
  }

  test("two worker threads and this one fuzz one lab at once: no finding, and every thread's teardown gives all the space back", async () => {
    const lab = await labs.create({ coherent: false });
    const seed = testSeed();
    const r = await fuzzThreads(lab, seed, STEPS / 3, 2, 120_000);
    expect(r.finding === undefined ? undefined : `${r.finding.thread}: ${report(r.finding.seed, r.finding)}`).toBeUndefined();
    expect(r.results).toHaveLength(3);
  }, 180_000);
});

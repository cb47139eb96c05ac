/*
 * The fence benchmark: the sync layer's hot paths, each beside its raw
 * Atomics equivalent measured in the same run, with the ratio.
 *
 * Sections (row.section) and their cases (row.case):
 *   signal         no waiter: a batch of pre-created pending fences is
 *                  signalled; only the signals are timed (creation before,
 *                  put after). fence.signal(), checkAndSignal(), the engine's
 *                  fence_signal called directly, and the lab clock read a
 *                  signal takes, against Atomics.store + Atomics.notify on a
 *                  word per fence that nobody waits on.
 *   signal-waiter  waiter blocked: a worker is blocked in Fence.wait() (raw:
 *                  Atomics.wait) on the fence being signalled; the main
 *                  thread lets it fall asleep (settleUs), then times the one
 *                  signal. The signaller's cost only.
 *   wake           worker -> worker: two workers ping-pong, each blocking on
 *                  a fence the other signals (raw: Atomics.wait / notify on
 *                  two words); worker -> main: a worker blocks in wait(), the
 *                  main thread signals and awaits Fence.waitAsync() (raw:
 *                  Atomics.waitAsync). Figures are round trips (two
 *                  signal-to-wake latencies), timed by the side that starts.
 *                  Worker -> worker also runs the fences through the engine
 *                  (fence_signal / fence_wait) as a reference: the protocol
 *                  without the JavaScript API. Wake rows split round trips
 *                  into quick (< QUICK_WAKE_NS) and slow wake-ups.
 *   resv           add xN: N times (lock, reserveFences(1), addFence, unlock)
 *                  into an empty resv (raw: N times a compareExchange lock,
 *                  the slot and count stores, the unlocking store);
 *                  test, N signalled / N pending: testSignaled(BOOKKEEP) over N
 *                  fences (raw: Atomics.load of the N status words).
 *   lock           uncontended: Mutex lock() + unlock() on the main thread
 *                  (raw: compareExchange + store); contended: two workers
 *                  take one lock in a loop for lockMs (raw: the same
 *                  three-state futex lock without the Mutex's bookkeeping),
 *                  ns per acquisition and acquisitions/s, with the Mutex's
 *                  own statistics.
 *
 * Methods (row.kind): "fence" the product's API, "raw" the bare Atomics peer
 * of the same case, "reference" a component shown to explain a cost.
 *
 * Measurement: main-thread cases run under tinybench, each sample timing
 * `batch` operations (only the timed part: set-up and clean-up of a sample
 * are outside it) and recording the mean per operation; cross-thread cases
 * record one operation per sample (a signal, a round trip) with
 * performance.now(), whose own cost (tens of ns here) is in every such
 * sample, the raw peer's alike. Main-thread cases run in `rounds` rounds,
 * the methods in alternating order; cross-thread cases in many short
 * blocks, the methods taking turns, after untimed warm-up blocks; samples
 * are pooled, so that a drift of the host falls on every method alike.
 * Statistics come from summarize() (src/report/stats.ts): p50, p90, p99,
 * the 95% relative margin of error of the mean.
 * vsRaw is a cost ratio, p50 over the raw peer's p50 (> 1: slower), which
 * is how the targets are stated.
 *
 * Contract: runFenceBench() returns data and prints nothing; progress goes
 * to the onProgress callback. Workers are always terminated, every wait in
 * either thread is bounded (a timeout fails the run with an error naming
 * the wait), and each fence and resv created is put before the lab closes.
 */
import os from "node:os";
import { Lab } from "../src/api/lab.js";
import type { Fence } from "../src/sync/fence.js";
import { DMA_RESV_USAGE_WRITE, type Resv } from "../src/sync/resv.js";
import type { Timeline } from "../src/sync/timeline.js";
import type { BenchMode, PingMode } from "../workers/bench-fence.js";
import { durationLabel, machineInfo } from "../src/report.js";
import {
  addRatios, makeRow, fenceBudgetFor, fenceSections, type FenceBenchOptions, type FenceBenchProgress, type FenceBenchResult, type FenceBenchRow,
} from "./fence_rows.js";
import { Words, runMicro, signalTasks, resvTasks, uncontendedLockTasks } from "./fence_tasks.js";
import {
  BenchWorker, waiterRound, pingPongRound, hammerRound, wakeRegimes, type CrossContext, type HammerRound,
} from "./fence_rounds.js";
import { evaluateFenceTargets, explainMisses, rowNs } from "./fence_targets.js";

// ---------------------------------------------------------------------------
// The run

const MiB = 1024 * 1024;
export const RESV_SIZES = [1, 4, 16, 64] as const;

export async function runFenceBench(
  options: FenceBenchOptions = {},
  onProgress: (event: FenceBenchProgress) => void = () => {},
): Promise<FenceBenchResult> {
  const started = performance.now();
  const loadStart = os.loadavg()[0];
  const quick = options.quick ?? false;
  const budget = fenceBudgetFor(quick);
  BenchWorker.checkBuilt();
  const notes: string[] = [];
  const rows: FenceBenchRow[] = [];

  const steps = ["signal, no waiter", ...RESV_SIZES.map((n) => `resv with ${n} fence${n === 1 ? "" : "s"}`),
    "lock, uncontended", "starting two workers", "signal with a blocked waiter", "wake-up, worker -> worker",
    "wake-up, worker -> main waitAsync", "lock, contended by two workers"];
  let step = 0;
  const progress = () => onProgress({ index: step, total: steps.length, label: steps[step++] });

  const lab = await Lab.create({ memoryBytes: 64 * MiB, syncBytes: 8 * MiB });
  const syncFreeBefore = lab.stats().sync.freeBytes;
  const words = new Words(lab);
  const timelines: Timeline[] = [];
  const resvs: Resv[] = [];
  const fences: Fence[] = [];
  const workers: BenchWorker[] = [];
  try {
    // ---- main thread ------------------------------------------------------
    progress();
    rows.push(...runMicro(signalTasks(lab, words, budget, timelines), budget));

    const maxN = Math.max(...RESV_SIZES);
    const resvTimelines = Array.from({ length: maxN }, (_, i) => lab.sync.timeline({ name: `bench-resv-${i}` }));
    timelines.push(...resvTimelines);
    const pending = resvTimelines.map((t) => t.createFence());
    const signalled = resvTimelines.map((t) => t.createFence());
    fences.push(...pending, ...signalled);
    const resvOf = (list: Fence[], n: number): Resv => {
      const r = lab.sync.resv();
      resvs.push(r);
      r.withLock(() => {
        r.reserveFences(n);
        for (let i = 0; i < n; i++) r.addFence(list[i], DMA_RESV_USAGE_WRITE);
      });
      return r;
    };
    const bySize = RESV_SIZES.map((n) => ({ n, pending: resvOf(pending, n), signalled: resvOf(signalled, n) }));
    for (const f of signalled) f.signal();
    for (const { n, pending: rp, signalled: rs } of bySize) {
      progress();
      rows.push(...runMicro(resvTasks(lab, words, n, pending, rs, rp, signalled), budget));
    }

    progress();
    rows.push(...runMicro(uncontendedLockTasks(lab, words), budget));

    // ---- across threads ---------------------------------------------------
    progress();
    // One at a time, into `workers`, so that a failed start still terminates the first.
    for (const i of [0, 1]) workers.push(await BenchWorker.start(lab, `bench-fence-${i}`, 20_000));
    const line = () => words.lines(1);
    const crossTimeline = lab.sync.timeline({ name: "bench-cross" });
    timelines.push(crossTimeline);
    const listBytes = 4 * Math.max(budget.roundTrips, budget.waiterSamples);
    /** The methods of a block, in turns: reversed every other block. */
    const turns = <M>(modes: M[], block: number): M[] => (block % 2 === 0 ? modes : [...modes].reverse());
    const ctx: CrossContext = {
      lab, budget, workers, timeline: crossTimeline,
      armed: line(), ping: line(), pong: line(), counter: line(), ready: line(), start: line(), stop: line(),
      listA: words.bytes(listBytes), listB: words.bytes(listBytes), waiterWords: words.lines(budget.waiterSamples),
      mutex: words.bytes(64), rawLock: words.bytes(64),
    };

    progress();
    {
      const samples = { fence: [] as number[], raw: [] as number[] };
      const asleep = { fence: 0, raw: 0 };
      for (let block = -Math.min(2, budget.warmupBlocks); block < budget.waiterBlocks; block++) {
        for (const mode of turns<BenchMode>(["fence", "raw"], block)) {
          const r = await waiterRound(ctx, mode);
          if (block < 0) continue;
          samples[mode].push(...r.samples);
          asleep[mode] += r.asleep;
        }
      }
      const spec = { section: "signal-waiter" as const, case: "waiter blocked", batch: 1 };
      rows.push(
        makeRow({ ...spec, method: "fence.signal()", kind: "fence" }, samples.fence,
          { waiterAsleep: asleep.fence / samples.fence.length }),
        makeRow({ ...spec, method: "raw: Atomics.store + notify", kind: "raw" }, samples.raw,
          { waiterAsleep: asleep.raw / samples.raw.length }),
      );
    }

    for (const path of ["worker", "main"] as const) {
      progress();
      const modes: PingMode[] = path === "worker" ? ["fence", "engine", "raw"] : ["fence", "raw"];
      const samples: Record<PingMode, number[]> = { fence: [], engine: [], raw: [] };
      for (let block = -budget.warmupBlocks; block < budget.roundTripBlocks; block++) {
        for (const mode of turns(modes, block)) {
          const got = await pingPongRound(ctx, mode, path);
          if (block >= 0) samples[mode].push(...got);
        }
      }
      const spec = { section: "wake" as const, case: path === "worker" ? "worker -> worker" : "worker -> main", batch: 1 };
      rows.push(
        makeRow({ ...spec, method: path === "worker" ? "fence: signal() / wait()" : "fence: signal() / waitAsync()", kind: "fence" },
          samples.fence, wakeRegimes(samples.fence)),
        ...(path === "worker"
          ? [makeRow({ ...spec, method: "engine: fence_signal / fence_wait (wasm)", kind: "reference" }, samples.engine,
            wakeRegimes(samples.engine))]
          : []),
        makeRow({ ...spec, method: path === "worker" ? "raw: notify / Atomics.wait" : "raw: notify / Atomics.waitAsync", kind: "raw" },
          samples.raw, wakeRegimes(samples.raw)),
      );
    }

    progress();
    {
      const rounds = { fence: [] as HammerRound[], raw: [] as HammerRound[] };
      for (let window = -1; window < budget.lockWindows; window++) {
        for (const mode of turns<BenchMode>(["fence", "raw"], window)) {
          const r = await hammerRound(ctx, mode);
          if (window >= 0) rounds[mode].push(r);
        }
      }
      const spec = { section: "lock" as const, case: "contended, 2 workers", batch: 1 };
      const extra = (rs: HammerRound[]) => {
        const acquisitions = rs.reduce((a, r) => a + r.acquisitions, 0);
        const elapsedMs = rs.reduce((a, r) => a + r.elapsedMs, 0);
        const contended = rs.reduce((a, r) => a + r.contended, 0);
        const waits = rs.map((r) => r.waitMs);
        return {
          acquisitionsPerSec: acquisitions / (elapsedMs / 1000), acquisitions, contended,
          contendedFraction: contended / acquisitions,
          waitMs: waits.every((w) => w !== null) ? waits.reduce((a, w) => a + (w ?? 0), 0) : null,
        };
      };
      rows.push(
        makeRow({ ...spec, method: "Mutex lock() + unlock()", kind: "fence" }, rounds.fence.map((r) => r.nsPerAcquisition),
          extra(rounds.fence)),
        makeRow({ ...spec, method: "raw: three-state futex lock", kind: "raw" }, rounds.raw.map((r) => r.nsPerAcquisition),
          extra(rounds.raw)),
      );
    }
  } finally {
    await Promise.allSettled(workers.map((w) => w.terminate()));
    for (const r of resvs) r.put();
    for (const f of fences) f.put();
    for (const t of timelines) t.unref();
    words.free();
    const syncFreeAfter = lab.stats().sync.freeBytes;
    if (syncFreeAfter !== syncFreeBefore) {
      notes.push(`the sync heap had ${syncFreeBefore} bytes free before the run and ${syncFreeAfter} after: a record leaked`);
    }
    lab.close();
  }

  rows.sort((a, b) => fenceSections.indexOf(a.section) - fenceSections.indexOf(b.section));
  addRatios(rows);
  const targets = evaluateFenceTargets(rows);
  const load = { start: loadStart, end: os.loadavg()[0] };
  const cpus = os.availableParallelism();
  if (load.start > cpus / 2 || load.end > cpus / 2 + 1) {
    notes.push(`the machine was busy during this run (1-minute load average ${load.start.toFixed(1)} at the start, ` +
      `${load.end.toFixed(1)} at the end, on ${cpus} CPUs): cross-thread figures depend on idle CPUs; rerun on an idle machine`);
  }
  if (cpus < 3) {
    notes.push(`${cpus} CPUs: in the worker -> worker and contended cases the main thread sleeps, so each worker has a CPU; ` +
      "a thread that blocks leaves its vCPU idle and the hypervisor must wake it, which dominates every cross-thread figure, " +
      "fence and raw alike (quick wake-ups, a few µs, when the vCPU is still polling; slow ones, tens of µs, when it is not)");
  }
  notes.push(...explainMisses(rows, targets));
  notes.push(
    "vsRaw (×raw) is a cost ratio: p50 over the raw peer's p50 in the same case and run (> 1 = slower); targets use it",
    `main-thread figures are per operation, each sample timing a batch; cross-thread figures are one operation per sample, ` +
      `with one performance.now() pair (about ${durationLabel(rowNs(rows, "signal", "timestamp: sync.clock.nowNs()"))} a read) inside`,
    `signal with a waiter: the main thread waits until the worker has armed, then ${budget.settleUs} µs more so that it sleeps, ` +
      "and times the one signal (the signaller's cost only)",
    `cross-thread cases run in short blocks, the methods taking turns (${budget.waiterBlocks} x ${budget.waiterSamples} signals, ` +
      `${budget.roundTripBlocks} x ${budget.roundTrips} round trips, ${budget.lockWindows} lock windows of ${budget.lockMs} ms per method), ` +
      "so that every method sees the same mix of the host's wake-up regimes",
    `wake-up figures are round trips (two wake-ups); ${budget.warmupBlocks} untimed blocks per method come first (JIT ` +
      `warm-up in both threads), and the first ${budget.warmup} of each block are dropped`,
    "contended lock: p50/p90/p99 are over the windows (ns per acquisition in each), acquisitions/s over all of them",
    "the raw lock is the Mutex's algorithm (three states, the same 64 spins) without its owner word, statistics and deadlines",
    "the VM is shared and noisy: compare ratios within a run, not absolute figures across runs",
  );
  return {
    machine: machineInfo(), date: new Date().toISOString(), quick, budget, load, rows, targets, notes,
    durationMs: Math.round(performance.now() - started),
  };
}


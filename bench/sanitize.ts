/*
 * The sanitizer benchmark: what the race detector costs on `contend`
 * defaults (two writers, two readers, one device on four 64 KiB buffers),
 * sanitizer off against on in the same run. Rounds alternate off and on
 * (each a whole contend run of its own lab), so that load drifts hit both;
 * the median of each side's rounds is reported.
 *
 *   throughput   operations per second of every role together (CPU reads
 *                and writes, device jobs) over the run's wall time
 *   slowdown     off throughput / on throughput (target: at most 3x)
 *   check        the race check after the run (report()), not part of the
 *                run's wall time: reported on its own
 *
 * Contract: runSanitizeBench() returns data and prints nothing; progress
 * goes to onProgress (bench/benchmarks.ts makes it `dmabuf-lab bench
 * sanitize`). A sanitized round with a race fails the benchmark's check.
 */
import { runContend, type ContendResult } from "../src/contend/run.js";
import { defaults } from "../src/contend/options.js";
import type { Progress } from "./harness.js";
import { machineInfo, median, renderTargets, table, type Chart, type MachineInfo, type TargetResult } from "../src/report.js";

export interface SanitizeBenchOptions {
  quick?: boolean;
}

export interface SanitizeRound {
  sanitize: boolean;
  opsPerSec: number;
  elapsedMs: number;
  /** On rounds: accesses checked, races found, the check's time. */
  accesses?: number;
  races?: number;
  checkMs?: number;
}

export interface SanitizeBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  durationMs: number;
  rounds: SanitizeRound[];
  offOpsPerSec: number;
  onOpsPerSec: number;
  /** offOpsPerSec / onOpsPerSec. */
  slowdown: number;
  targets: TargetResult[];
}

const TARGET = 3;

function opsPerSec(r: ContendResult): number {
  return r.roles.reduce((a, x) => a + x.ops, 0) / (r.elapsedMs / 1000);
}

export async function runSanitizeBench(options: SanitizeBenchOptions, onProgress: (p: Progress) => void): Promise<SanitizeBenchResult> {
  const quick = options.quick === true;
  const pairs = quick ? 1 : 3;
  const durationMs = quick ? 1000 : defaults.durationMs;
  const date = new Date().toISOString();
  const rounds: SanitizeRound[] = [];
  for (let i = 0; i < 2 * pairs; i++) {
    // off, on, on, off, off, on: each side runs first as often as second.
    const sanitize = (i % 4 === 1 || i % 4 === 2);
    onProgress({ index: i, total: 2 * pairs, label: `contend, sanitizer ${sanitize ? "on" : "off"}` });
    const r = await runContend({ durationMs, sanitize });
    const s = r.sanitize;
    rounds.push({
      sanitize, opsPerSec: opsPerSec(r), elapsedMs: r.elapsedMs,
      ...(s === undefined ? {} : { accesses: s.accesses, races: s.raceCount, checkMs: s.checkMs }),
    });
  }
  const offOpsPerSec = median(rounds.filter((r) => !r.sanitize).map((r) => r.opsPerSec));
  const onOpsPerSec = median(rounds.filter((r) => r.sanitize).map((r) => r.opsPerSec));
  const slowdown = offOpsPerSec / onOpsPerSec;
  const checkMs = median(rounds.filter((r) => r.sanitize).map((r) => r.checkMs ?? 0));
  const targets: TargetResult[] = [{
    id: "sanitize-0",
    description: "contend defaults: throughput with the sanitizer off against on",
    threshold: `<= ${TARGET}x`,
    measured: slowdown,
    unit: "x",
    met: slowdown <= TARGET,
    detail: `${offOpsPerSec.toFixed(0)} ops/s off, ${onOpsPerSec.toFixed(0)} ops/s on; the race check after a run ${checkMs.toFixed(0)} ms (not in the run)`,
  }];
  return { machine: machineInfo(), date, quick, durationMs, rounds, offOpsPerSec, onOpsPerSec, slowdown, targets };
}

export function renderSanitizeTable(r: SanitizeBenchResult): string {
  return [
    `dmabuf-lab bench sanitize${r.quick ? " --quick" : ""}: ${r.date}`,
    `machine: ${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}`,
    "",
    table(["round", "sanitizer", "ops/s", "wall ms", "accesses", "races", "check ms"], r.rounds.map((x, i) => [
      String(i + 1), x.sanitize ? "on" : "off", x.opsPerSec.toFixed(0), x.elapsedMs.toFixed(0),
      x.accesses === undefined ? "-" : String(x.accesses), x.races === undefined ? "-" : String(x.races),
      x.checkMs === undefined ? "-" : x.checkMs.toFixed(0),
    ])),
    "",
    `slowdown (median off / median on): ${r.slowdown.toFixed(2)}x`,
    ...renderTargets(r.targets, `targets: contend defaults for ${r.durationMs} ms a round, medians of alternating rounds of the same run`),
    "",
    "ops/s: every role's operations (CPU writes and reads, device jobs) over the run's wall time. off: every hook is one",
    "plain load of the lab's sanitize word and a branch. on: every access and fence edge recorded in per-thread logs.",
  ].join("\n") + "\n";
}

export function sanitizeCharts(r: SanitizeBenchResult): Chart[] {
  return [{
    kind: "bars", title: "bench sanitize: contend throughput, sanitizer off and on",
    subtitle: `${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${r.date.slice(0, 10)}; medians of alternating rounds`,
    value: { label: "operations per second", scale: "linear", unit: "count" },
    groups: [{ name: "contend defaults", bars: [{ name: "off", value: r.offOpsPerSec }, { name: "on", value: r.onOpsPerSec }] }],
  }];
}

/*
 * The tracing benchmark: what recording costs, tracing off against tracing
 * on (every category), in the same run, on the paths with the most trace
 * points per operation:
 *
 *   rw 4 KiB       pwritev + preadv of 4 KiB on a system-heap dma-buf from
 *                  arena memory (per pair: two calls, two own fences
 *                  created and signalled, two resv critical sections)
 *   fence          create + signal + wait (signalled) + put on a timeline
 *   device nop     submit an empty job to a device worker and wait for its
 *                  fence (submit, ring push and pop, the job, the fence's
 *                  create, signal and wait, in two threads)
 *
 * Rounds alternate off and on (each round's ns per operation; the median of
 * the rounds is reported), so that load drifts hit both. A round "on" is a
 * whole session: start(), the operations, stop(); stop()'s merge is not
 * timed. Targets: tracing on costs at most 1.5x off on the rw and fence
 * paths, and 1.25x on the device round trip, whose cost is mostly the
 * cross-thread wake-up.
 *
 * Contract: runTraceBench() returns data and prints nothing; progress goes
 * to onProgress (bench/benchmarks.ts makes it `dmabuf-lab bench trace`). Every lab, device and buffer is closed however it ends.
 * With `keepTrace`, the result carries the last traced device round.
 */
import { Lab } from "../src/api/lab.js";
import { preadv, pwritev } from "../src/dmabuf/rw.js";
import { nowMs } from "../src/memory/futex.js";
import type { TraceData } from "../src/trace/events.js";
import type { Progress } from "./harness.js";
import { machineInfo, median, renderTargets, table, type Chart, type MachineInfo, type TargetResult } from "../src/report.js";

export interface TraceBenchOptions {
  quick?: boolean;
  /** Keep the trace of the last "on" round of the device workload. */
  keepTrace?: boolean;
}

export interface TraceBenchRow {
  workload: string;
  /** ns per operation, median over the rounds. */
  offNs: number;
  onNs: number;
  /** onNs / offNs: the cost of recording. */
  ratio: number;
  /** Events recorded per operation (from the last traced round). */
  eventsPerOp: number;
  rounds: number;
  opsPerRound: number;
}

export interface TraceBenchResult {
  machine: MachineInfo;
  date: string;
  quick: boolean;
  rows: TraceBenchRow[];
  targets: TargetResult[];
  trace?: TraceData;
}

const KiB = 1024;

interface Workload {
  name: string;
  ops: number;
  maxRatio: number;
  /** Runs `n` operations; async only where a wait must let the event loop run. */
  run(n: number): void | Promise<void>;
}

async function measureWorkload(lab: Lab, w: Workload, rounds: number, keep: boolean):
  Promise<{ row: TraceBenchRow; trace: TraceData | undefined }> {
  const off: number[] = [];
  const on: number[] = [];
  let trace: TraceData | undefined;
  // Warm-up, untimed, off and on: the on round also faults in the trace
  // chunks' pages, which later sessions reuse (a first session pays for
  // fresh memory once).
  await w.run(Math.ceil(w.ops / 4));
  lab.trace.start({ bufferBytes: 64 * 1024 * KiB });
  await w.run(w.ops);
  lab.trace.stop();
  for (let r = 0; r < rounds; r++) {
    for (const traced of r % 2 === 0 ? [false, true] : [true, false]) {
      if (traced) lab.trace.start({ bufferBytes: 64 * 1024 * KiB });
      const t0 = nowMs();
      await w.run(w.ops);
      const ns = ((nowMs() - t0) * 1e6) / w.ops;
      if (traced) {
        trace = lab.trace.stop();
        on.push(ns);
      } else {
        off.push(ns);
      }
    }
  }
  const events = trace?.threads.reduce((n, t) => n + t.events.length, 0) ?? 0;
  const offNs = median(off);
  const onNs = median(on);
  return {
    row: { workload: w.name, offNs, onNs, ratio: onNs / offNs, eventsPerOp: events / w.ops, rounds, opsPerRound: w.ops },
    trace: keep ? trace : undefined,
  };
}

export async function runTraceBench(options: TraceBenchOptions = {},
  onProgress: (e: Progress) => void = () => {}): Promise<TraceBenchResult> {
  const quick = options.quick ?? false;
  const rounds = quick ? 6 : 14;
  const date = new Date().toISOString();
  const lab = await Lab.create({ memoryBytes: 512 * 1024 * KiB });
  const buf = lab.exporter("system").alloc(4 * KiB);
  const user = lab.alloc(4 * KiB);
  const timeline = lab.sync.timeline({ name: "bench" });
  const device = await lab.spawnDevice({ name: "bench" });
  try {
    const workloads: Workload[] = [
      {
        name: "rw 4 KiB (pwritev + preadv)", ops: quick ? 2000 : 5000, maxRatio: 1.5,
        run: (n) => {
          for (let i = 0; i < n; i++) {
            pwritev(buf, [user], 0);
            preadv(buf, [user], 0);
          }
        },
      },
      {
        name: "fence (create, signal, wait, put)", ops: quick ? 5000 : 20000, maxRatio: 1.5,
        run: (n) => {
          for (let i = 0; i < n; i++) {
            const f = timeline.createFence(undefined, false);
            f.signal();
            f.wait(0);
            f.put();
          }
        },
      },
      {
        name: "device nop (submit, wait for its fence)", ops: quick ? 300 : 1000, maxRatio: 1.25,
        run: async (n) => {
          for (let i = 0; i < n; i++) {
            const f = device.submit({ kind: "nop" });
            try {
              if ((await f.waitAsync(10_000)) === 0) throw new Error("a nop job did not complete within 10 s");
            } finally {
              f.put();
            }
          }
        },
      },
    ];
    const rows: TraceBenchRow[] = [];
    let trace: TraceData | undefined;
    for (const [index, w] of workloads.entries()) {
      onProgress({ index, total: workloads.length, label: w.name });
      const m = await measureWorkload(lab, w, rounds, options.keepTrace === true && index === workloads.length - 1);
      rows.push(m.row);
      trace = m.trace ?? trace;
    }
    const targets: TargetResult[] = rows.map((r, i) => ({
      id: `trace-${i}`,
      description: `${r.workload}: tracing on against off`,
      threshold: `<= ${workloads[i].maxRatio}x`,
      measured: r.ratio,
      unit: "x",
      met: r.ratio <= workloads[i].maxRatio,
      detail: `${r.offNs.toFixed(0)} ns off, ${r.onNs.toFixed(0)} ns on, ${r.eventsPerOp.toFixed(1)} events per operation`,
    }));
    return { machine: machineInfo(), date, quick, rows, targets, ...(trace === undefined ? {} : { trace }) };
  } finally {
    await device.shutdown({ drain: false });
    timeline.unref();
    lab.free(user);
    buf.put();
    lab.close();
  }
}

export function renderTraceTable(r: TraceBenchResult): string {
  return [
    `dmabuf-lab bench trace${r.quick ? " --quick" : ""}: ${r.date}`,
    `machine: ${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}`,
    "",
    table(["workload", "off ns/op", "on ns/op", "on/off", "events/op", "rounds"], r.rows.map((x) => [
      x.workload, x.offNs.toFixed(0), x.onNs.toFixed(0), `${x.ratio.toFixed(2)}x`, x.eventsPerOp.toFixed(1), `${x.rounds} x ${x.opsPerRound}`,
    ])),
    "",
    ...renderTargets(r.targets, "targets: the cost of recording, medians of alternating rounds of the same run"),
    "",
    "off: every trace point is one plain load of the lab's trace mask and a branch. on: every category recorded.",
  ].join("\n") + "\n";
}

/** The result without the trace (which --trace writes to its own file). */
export function traceJson(r: TraceBenchResult): object {
  const { trace: _trace, ...rest } = r;
  return rest;
}

export function traceCharts(r: TraceBenchResult): Chart[] {
  return [{
    kind: "bars", title: "bench trace: ns per operation, tracing off and on",
    subtitle: `${r.machine.cpu}, ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${r.date.slice(0, 10)}; medians of alternating rounds`,
    value: { label: "ns per operation (log scale)", scale: "log10", unit: "ns" },
    groups: r.rows.map((x) => ({ name: x.workload, bars: [{ name: "off", value: x.offNs }, { name: "on", value: x.onNs }] })),
  }];
}

/*
 * The fence benchmark's targets: each stated as a cost ratio of rows of
 * the same run (met/MISSED), and notes that say why a missed one missed,
 * from those rows.
 */
import { durationLabel, type TargetResult } from "../src/report.js";

import type { FenceBenchRow, FenceMethodKind, FenceSection } from "./fence_rows.js";
import { QUICK_WAKE_NS } from "./fence_rounds.js";

// ---------------------------------------------------------------------------
// Targets

const fx = (v: number): string => `${v.toFixed(2)}x`;

export function evaluateFenceTargets(rows: FenceBenchRow[]): TargetResult[] {
  const find = (section: FenceSection, c: string, method?: string) =>
    rows.find((r) => r.section === section && r.case === c && (method === undefined ? r.kind === "raw" : r.method === method));
  const d = durationLabel;

  function target(id: string, description: string, threshold: string, limit: number,
    section: FenceSection, c: string, method: string, explain: (fence: FenceBenchRow, raw: FenceBenchRow) => string): TargetResult {
    const fence = find(section, c, method);
    const raw = find(section, c);
    if (!fence || !raw || fence.vsRaw === null) {
      return { id, description, threshold, measured: null, unit: "x raw", met: null, detail: "not measured" };
    }
    const v = fence.vsRaw;
    return { id, description, threshold, measured: Number(v.toFixed(3)), unit: "x raw", met: v <= limit, detail: explain(fence, raw) };
  }

  const signalNoWaiter = target("signal-no-waiter", "fence.signal() with no waiter vs Atomics.store + notify", "<= 2x raw", 2,
    "signal", "no waiter", "fence.signal()", (f, r) => {
      const clock = find("signal", "no waiter", "timestamp: sync.clock.nowNs()");
      const wasm = find("signal", "no waiter", "engine fence_signal (wasm, direct)");
      const store = find("signal", "no waiter", "raw: Atomics.store only");
      let s = `p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)}`;
      if (clock && wasm) {
        s += `; the signal's timestamp read (performance.now) is ${d(clock.nsPerOp)} (${fx(clock.nsPerOp / r.nsPerOp)} raw by itself) ` +
          `and the engine's fence_signal ${d(wasm.nsPerOp)}: together ${d(clock.nsPerOp + wasm.nsPerOp)}, against ${d(f.nsPerOp)} ` +
          "for the whole signal";
      }
      if (store) {
        s += `; of the raw peer, ${d(Math.max(0, r.nsPerOp - store.nsPerOp))} is the notify with nobody waiting, which the fence ` +
          "skips (WAITERS == 0)";
      }
      return s;
    });
  const signalWaiter = target("signal-waiter", "fence.signal() waking a blocked worker vs Atomics.store + notify", "<= 2x raw", 2,
    "signal-waiter", "waiter blocked", "fence.signal()", (f, r) =>
      `p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)} (p90 ${d(f.stats.p90Ns)} vs ${d(r.stats.p90Ns)}): both are dominated by the futex wake ` +
      `of a sleeping thread; waiter registered in ${pct(f.extra.waiterAsleep)} / asleep in ${pct(r.extra.waiterAsleep)} of the signals`);
  const wake = (id: string, c: string, description: string, method: string) => target(id, description, "<= 1.2x raw", 1.2,
    "wake", c, method, (f, r) => {
      const engine = rows.find((e) => e.section === "wake" && e.case === c && e.kind === "reference");
      // The split is worth a mention when both clusters hold a fair share of both methods' round trips.
      const mixed = [f, r].every((x) => (x.extra.quickFraction ?? 0) >= 0.05 && (x.extra.quickFraction ?? 1) <= 0.95);
      const cluster = (key: "quickP50Ns" | "slowP50Ns", name: string) => {
        const a = f.extra[key], b = r.extra[key];
        return mixed && a && b ? `; ${name} ${d(a)} vs ${d(b)} (${fx(a / b)})` : "";
      };
      return `round trip p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)}, p90 ${d(f.stats.p90Ns)} vs ${d(r.stats.p90Ns)}, ` +
        `p99 ${d(f.stats.p99Ns)} vs ${d(r.stats.p99Ns)} (one-way about half)` +
        cluster("quickP50Ns", `quick wake-ups (< ${d(QUICK_WAKE_NS)}, fence ${pct(f.extra.quickFraction)} / raw ` +
          `${pct(r.extra.quickFraction)} of round trips) p50`) +
        cluster("slowP50Ns", "slow ones p50") +
        (engine ? `; the engine's own fence_signal / fence_wait (the same protocol and timestamp, no JavaScript API) ` +
          `${d(engine.nsPerOp)}, ${fx(engine.nsPerOp / r.nsPerOp)} raw` : "");
    });
  const resvAdd = target("resv-add-64", "resv add of 64 fences (lock, reserve(1), addFence, unlock, each) vs its raw twin",
    "<= 3x raw", 3, "resv", "add x64", "resv: lock, reserve(1), addFence, unlock", (f, r) => {
      const one = find("resv", "add x1", "resv: lock, reserve(1), addFence, unlock");
      return `p50 ${d(f.nsPerOp)} vs ${d(r.nsPerOp)} (${d(f.nsPerOp / 64)} vs ${d(r.nsPerOp / 64)} per add)` +
        (one ? `; one add into an empty resv ${d(one.nsPerOp)} (its first slot array is allocated there)` : "") +
        "; the fence side also takes a reference per add and grows its slot array (16, then 64 slots: two sync-heap allocations, one free) on the way";
    });
  return [
    signalNoWaiter,
    signalWaiter,
    wake("wake-worker", "worker -> worker", "signal-to-wake round trip worker <-> worker vs an Atomics.wait/notify ping-pong",
      "fence: signal() / wait()"),
    wake("wake-main", "worker -> main", "signal-to-wake round trip worker -> main waitAsync vs Atomics.waitAsync",
      "fence: signal() / waitAsync()"),
    resvAdd,
  ];
}

const pct = (v: number | null | undefined): string => (v === null || v === undefined ? "-" : `${(100 * v).toFixed(0)}%`);

export function rowNs(rows: FenceBenchRow[], section: FenceSection, method: string): number {
  return rows.find((r) => r.section === section && r.method === method)?.nsPerOp ?? NaN;
}

/** Notes that say why a target was missed, from the rows of the same run. */
export function explainMisses(rows: FenceBenchRow[], targets: TargetResult[]): string[] {
  const out: string[] = [];
  for (const t of targets) {
    if (t.met !== false) continue;
    if (t.id === "signal-no-waiter") {
      const clock = rowNs(rows, "signal", "timestamp: sync.clock.nowNs()");
      const raw = rowNs(rows, "signal", "raw: Atomics.store + notify");
      out.push(`signal-no-waiter missed: the timestamp the contract requires (performance.now) costs ${durationLabel(clock)}, ` +
        `${fx(clock / raw)} the raw peer by itself on this machine; see the reference rows of the signal section`);
    } else if (t.id === "wake-worker" || t.id === "wake-main") {
      const c = t.id === "wake-worker" ? "worker -> worker" : "worker -> main";
      const of = (kind: FenceMethodKind) => rows.find((r) => r.section === "wake" && r.case === c && r.kind === kind);
      const fence = of("fence"), raw = of("raw"), engine = of("reference");
      if (!fence || !raw) continue;
      const d = durationLabel;
      let s = `${t.id} missed (${fx(fence.nsPerOp / raw.nsPerOp)} raw, p50s).`;
      if (engine) {
        s += ` The protocol itself, signalled and waited by the engine with its timestamp, is ${fx(engine.nsPerOp / raw.nsPerOp)} ` +
          `raw; the other ${d(fence.nsPerOp - engine.nsPerOp)} per round trip is the JavaScript API on the wake-up path.`;
      }
      s += " Between waking up and the notify that wakes the other side, a leg through the API does more than the engine's: " +
        "wait() reads the clock for the time left it returns (in the contract) and dispatches callbacks, signal() checks " +
        "its arguments; right after a wake-up such work costs several times what it costs in a hot loop (a clock read: " +
        "a few hundred ns, against ~40).";
      const quick = raw.extra.quickFraction ?? 0;
      const fs = fence.extra.slowP50Ns, rs = raw.extra.slowP50Ns;
      if (quick >= 0.5) {
        s += ` It shows because this host woke sleeping threads within a few µs for ${pct(quick)} of the raw round trips here` +
          (fs && rs ? `; among the slow wake-ups (tens of µs, the reference's ~46 µs state) the ratio is ${fx(fs / rs)}` : "");
      } else {
        s += " Most round trips here were slow wake-ups: compare the p90/p99 columns and the quick/slow split in the target's detail";
      }
      out.push(s);
    } else {
      out.push(`${t.id} missed: ${t.detail}`);
    }
  }
  return out;
}

/*
 * Rendering a contention run (run.ts) for people and programs:
 *   renderContendTable(result)  the parameters, the machine, one row per role
 *                        (ops/s, MiB/s, checked and torn reads, fence-wait
 *                        p50/p90/p99/max), the resv lock contention and the
 *                        integrity verdict
 *   contendCharts(result)       the fence-wait distributions: one
 *                        cumulative curve per role, latency on a log scale
 * Pure functions of the result; tables and charts are src/report's. The
 * JSON is the whole result ({ ..., roles, locks, checkedReads, tornReads }).
 */

import { renderRaceReport } from "../sanitize/text.js";
import type { ContendResult, RoleResult } from "./run.js";
import { durationLabel, formatBytes, machineLines, table, wrap, type Chart } from "../report.js";

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? "" : "s"}`;

function title(r: ContendResult): string {
  const o = r.options;
  return `dmabuf-lab contend: ${plural(o.writers, "writer")}, ${plural(o.readers, "reader")}, ${plural(o.devices, "device")}; ` +
    `${o.buffers} x ${formatBytes(o.size)} ${o.heap} buffers` + (o.sharing < 1 ? `, sharing ${o.sharing}` : "");
}

function setting(r: ContendResult): string {
  const o = r.options;
  return `${o.wait} waits, ${o.coherent ? "coherent" : "non-coherent"} lab, ${o.chunks} chunks per write, ` +
    `jobs ${o.jobs.join(",")}${o.devices > 0 && o.submitters === "own" ? ", a submitter thread per device" : ""}; ` +
    `fences ${o.bypassFences ? "BYPASSED" : "respected"}; ` +
    `${o.iterations === null ? `${o.durationMs} ms` : `${o.iterations} iterations each`} (ran ${(r.elapsedMs / 1000).toFixed(2)} s)`;
}

/** The verdict on the integrity checks, in one line. */
export function verdict(r: ContendResult): string {
  const of = `${r.tornReads} torn of ${r.checkedReads} checked reads`;
  if (r.options.bypassFences) return `${of} with fences bypassed: what skipping implicit sync costs`;
  return r.tornReads === 0 ? `${of}: every read saw one whole generation` : `FAILED: ${of} with fences respected`;
}

export function renderContendTable(r: ContendResult): string {
  const rows = r.roles.map((x) => [
    x.role, String(x.threads), String(x.ops), x.opsPerSec.toFixed(0), (x.bytesPerSec / 2 ** 20).toFixed(1),
    x.checked ? String(x.checked) : "-", x.checked ? String(x.tears) : "-", String(x.waits.samples),
    durationLabel(x.waits.p50Ns), durationLabel(x.waits.p90Ns), durationLabel(x.waits.p99Ns), durationLabel(x.waits.maxNs),
  ]);
  const l = r.locks;
  const share = l.acquisitions ? ` (${((100 * l.contended) / l.acquisitions).toFixed(2)}%)` : "";
  return [
    title(r), ...wrap(setting(r), 116, "  "), ...machineLines(r.machine), "",
    table(["role", "n", "ops", "ops/s", "MiB/s", "checked", "torn", "waits", "p50", "p90", "p99", "max"], rows), "",
    `resv locks (${plural(r.options.buffers, "buffer")}): ${l.acquisitions} acquisitions, ${l.contended} contended${share}, ` +
      `${l.waitMs.toFixed(1)} ms waiting`,
    `integrity: ${verdict(r)}`,
    ...(r.sanitize ? renderRaceReport(r.sanitize) : []), "",
    ...wrap("waits: fence waits, timed. CPU threads: the read/write path's dependencies (only calls that had one); " +
      "devices: every job's out-fence, from submission to seen signalled. checked: reads that verified one whole " +
      "generation (CPU reads; device checksums of a snapshot).", 116, "  "),
  ].join("\n") + "\n";
}

/** Cumulative distributions of the fence waits, one curve per role, log-scale latency. */
export function contendCharts(r: ContendResult): Chart[] {
  const roles = r.roles.filter((x) => x.waits.samples > 0);
  return [{
    kind: "lines", title: `${title(r)}: fence waits (cumulative)`,
    subtitle: `${r.machine.cpu}, ${r.machine.cpus} CPUs; ${verdict(r)}`,
    x: { label: "fence wait (log scale)", scale: "log10", unit: "ns" },
    y: { label: "fraction of waits at most this long", scale: "linear", unit: "percent" },
    // A wait shorter than 10 ns (a fence already signalled) sits at 10 ns.
    series: roles.map((role: RoleResult) => ({
      name: `${role.role} (${role.waits.samples} waits): p50 ${durationLabel(role.waits.p50Ns)}, p99 ${durationLabel(role.waits.p99Ns)}`,
      points: role.waits.percentilesNs.map((ns, pct) => ({ x: Math.max(10, ns), y: pct / 100 })),
    })),
  }];
}

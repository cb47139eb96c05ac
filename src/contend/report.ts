/*
 * Rendering a contention run (run.ts) for people and programs:
 *   renderContendTable(result)  the parameters, the machine, one row per role
 *                        (ops/s, MiB/s, checked and torn reads, fence-wait
 *                        p50/p90/p99/max), the resv lock contention and the
 *                        integrity verdict
 *   renderContendJson(result)   the whole result ({ ..., roles, locks,
 *                        checkedReads, tornReads }), numbers rounded
 *   renderContendSvg(result)    the fence-wait distributions: one
 *                        cumulative curve per role, latency on a log scale
 *   renderContendHtml(result)   a page with the chart and the table
 * Pure functions of the result; the table and JSON helpers are the
 * benchmarks' (bench/report.ts, src/cli/format.ts).
 */

import { formatBytes, table } from "../cli/format.js";
import type { ContendResult, RoleResult } from "./run.js";
import { durationLabel, esc, machineLines, palette, roundedJson, wrap } from "../report.js";

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? "" : "s"}`;

function title(r: ContendResult): string {
  const o = r.options;
  return `dmabuf-lab contend: ${plural(o.writers, "writer")}, ${plural(o.readers, "reader")}, ${plural(o.devices, "device")}; ` +
    `${o.buffers} x ${formatBytes(o.size)} ${o.heap} buffers`;
}

function setting(r: ContendResult): string {
  const o = r.options;
  return `${o.wait} waits, ${o.coherent ? "coherent" : "non-coherent"} lab, ${o.chunks} chunks per write, ` +
    `jobs ${o.jobs.join(",")}; fences ${o.bypassFences ? "BYPASSED" : "respected"}; ` +
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
    x.checked ? String(x.checked) : "-", x.checked ? String(x.tears) : "-", String(x.waits.count),
    durationLabel(x.waits.p50Ns), durationLabel(x.waits.p90Ns), durationLabel(x.waits.p99Ns), durationLabel(x.waits.maxNs),
  ]);
  const l = r.locks;
  const share = l.acquisitions ? ` (${((100 * l.contended) / l.acquisitions).toFixed(2)}%)` : "";
  return [
    title(r), ...wrap(setting(r), 116, "  "), ...machineLines(r.machine), "",
    table(["role", "n", "ops", "ops/s", "MiB/s", "checked", "torn", "waits", "p50", "p90", "p99", "max"], rows), "",
    `resv locks (${plural(r.options.buffers, "buffer")}): ${l.acquisitions} acquisitions, ${l.contended} contended${share}, ` +
      `${l.waitMs.toFixed(1)} ms waiting`,
    `integrity: ${verdict(r)}`, "",
    ...wrap("waits: fence waits, timed. CPU threads: the read/write path's dependencies (only calls that had one); " +
      "devices: every job's out-fence, from submission to seen signalled. checked: reads that verified one whole " +
      "generation (CPU reads; device checksums of a snapshot).", 116, "  "),
  ].join("\n") + "\n";
}

export function renderContendJson(r: ContendResult): string {
  // The trace goes to its own file (--trace), not into the result.
  const { trace: _trace, ...result } = r;
  return roundedJson(result);
}

/** Cumulative distributions of the fence waits, one curve per role, log-scale latency. */
export function renderContendSvg(r: ContendResult): string {
  const W = 900, H = 500, left = 70, top = 60, plotW = 560, plotH = 380;
  const roles = r.roles.filter((x) => x.waits.count > 0);
  const floor = 10; // ns: shorter waits (a fence already signalled) sit on the axis
  const at = (ns: number) => Math.log10(Math.max(floor, ns));
  const xMin = Math.floor(Math.min(...roles.map((x) => at(x.waits.percentilesNs[0])), 3));
  const xMax = Math.ceil(Math.max(...roles.map((x) => at(x.waits.maxNs)), xMin + 1));
  const x = (ns: number) => left + ((at(ns) - xMin) / (xMax - xMin)) * plotW;
  const y = (pct: number) => top + plotH - (pct / 100) * plotH;
  const f = (v: number) => v.toFixed(1);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${esc(title(r))}: fence waits (cumulative)</text>`,
    `<text x="${left}" y="40" fill="#555555">${esc(`${r.machine.cpu}, ${r.machine.cpus} CPUs; ${verdict(r)}`)}</text>`,
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999999"/>`,
  ];
  for (let e = xMin; e <= xMax; e++) {
    parts.push(`<line x1="${f(x(10 ** e))}" x2="${f(x(10 ** e))}" y1="${top}" y2="${top + plotH}" stroke="#eeeeee"/>`,
      `<text x="${f(x(10 ** e))}" y="${top + plotH + 16}" text-anchor="middle">${esc(durationLabel(10 ** e))}</text>`);
  }
  for (const pct of [0, 25, 50, 75, 90, 99, 100]) {
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${f(y(pct))}" y2="${f(y(pct))}" stroke="#eeeeee"/>`,
      `<text x="${left - 6}" y="${f(y(pct) + 4)}" text-anchor="end">${pct}%</text>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${top + plotH + 36}" text-anchor="middle">fence wait (log scale)</text>`);
  if (roles.length === 0) parts.push(`<text x="${left + 20}" y="${top + 40}">no fence waits in this run</text>`);
  roles.forEach((role: RoleResult, i) => {
    const color = palette[(i + 1) % palette.length];
    const pts = role.waits.percentilesNs.map((ns, pct) => `${f(x(ns))},${f(y(pct))}`).join(" ");
    const ly = top + 10 + i * 34;
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`,
      `<line x1="${left + plotW + 20}" x2="${left + plotW + 48}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${left + plotW + 54}" y="${ly + 4}">${esc(`${role.role} (${role.waits.count} waits)`)}</text>`,
      `<text x="${left + plotW + 54}" y="${ly + 18}" fill="#555555" font-size="11">${esc(
        `p50 ${durationLabel(role.waits.p50Ns)}, p99 ${durationLabel(role.waits.p99Ns)}, max ${durationLabel(role.waits.maxNs)}`)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

export function renderContendHtml(r: ContendResult): string {
  return `<!doctype html>\n<meta charset="utf-8">\n<title>${esc(title(r))}</title>\n` +
    `${renderContendSvg(r)}<pre>${esc(renderContendTable(r))}</pre>\n`;
}

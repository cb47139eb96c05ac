/*
 * Text for people and programs: aligned tables, byte sizes, durations with a
 * fitting unit, word-wrapped notes, the target and note lists of benchmark
 * tables, and JSON rounded to 5 significant digits. Pure functions.
 */

/** An aligned table: the first column left-aligned, the rest right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** One row of a fixed-width table: each cell padded to its width, right-aligned where asked. */
export function row(cells: string[], widths: number[], right: boolean[]): string {
  return cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
}

/** Bytes in binary units: exact sizes as integers ("4 MiB"), others to one decimal ("2.0 MiB"). */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[u]}`;
}

/** ns with a unit that suits it. */
export function durationLabel(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e4) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(ns >= 100 ? 0 : 1)} ns`;
}

/** JSON for programs: numbers rounded to 5 significant digits. */
export function roundedJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    typeof v === "number" && !Number.isInteger(v) && Number.isFinite(v) ? Number(v.toPrecision(5)) : v, 2) + "\n";
}

export function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent + word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** A benchmark's target: a ratio against a peer of the same run, met or MISSED. */
export interface TargetResult {
  id: string;
  description: string;
  /** e.g. ">= 0.95x native". */
  threshold: string;
  /** The measured value in `unit` (the worst case where several sizes count). */
  measured: number | null;
  unit: string;
  /** null when it could not be measured (native skipped, regime not run). */
  met: boolean | null;
  detail: string;
}

export function renderTargets(targets: TargetResult[], heading = "targets:"): string[] {
  const out = [heading];
  for (const t of targets) {
    const status = t.met === null ? "n/a" : t.met ? "met" : "MISSED";
    const measured = t.measured === null ? "not measured" : `${t.measured.toFixed(2)} ${t.unit}`;
    out.push(...wrap(`  [${status}] ${t.description}: ${measured} (target ${t.threshold}); ${t.detail}`, 116, "      "));
  }
  return out;
}

export function renderNotes(notes: string[]): string[] {
  const out = ["notes:"];
  for (const n of notes) out.push(...wrap(`  - ${n}`, 116, "    "));
  return out;
}

/*
 * Numbers for people and programs, shared by the commands, the benchmarks,
 * the contention experiment and the demo: a description of the machine a
 * figure came from, quantiles, durations with a fitting unit, JSON rounded
 * to 5 significant digits, word wrapping for tables' notes, and the palette
 * and escaping of SVG charts. Node-only (machineInfo reads /proc and sysfs);
 * the library's browser build does not include it.
 */
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";

export interface MachineInfo {
  cpu: string;
  /** Logical CPUs available to this process. */
  cpus: number;
  flags: string[];
  cacheSize: string | null;
  /** Per-core caches from sysfs, e.g. "L1d 48K, L2 2048K, L3 491520K". */
  caches: string | null;
  memoryBytes: number;
  os: string;
  node: string;
  v8: string;
  nativeCompiler: string | null;
}

export function machineInfo(nativeCompiler: string | null = null): MachineInfo {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  let flags: string[] = [];
  let cacheSize: string | null = null;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
    cacheSize = /^cache size\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? null;
    const all = new Set((/^flags\s*:\s*(.+)$/m.exec(info)?.[1] ?? "").split(/\s+/));
    flags = ["sse4_2", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "erms", "fsrm"].filter((f) => all.has(f));
  } catch {
    // not Linux: os.cpus() is all there is
  }
  let caches: string | null = null;
  try {
    const dir = "/sys/devices/system/cpu/cpu0/cache";
    caches = readdirSync(dir).filter((d) => d.startsWith("index")).sort().map((d) => {
      const level = readFileSync(`${dir}/${d}/level`, "utf8").trim();
      const type = readFileSync(`${dir}/${d}/type`, "utf8").trim();
      const size = readFileSync(`${dir}/${d}/size`, "utf8").trim();
      return type === "Instruction" ? "" : `L${level}${type === "Data" ? "d" : ""} ${size}`;
    }).filter(Boolean).join(", ") || null;
  } catch {
    // no sysfs
  }
  return {
    cpu, cpus: os.availableParallelism(), flags, cacheSize, caches, memoryBytes: os.totalmem(),
    os: `${os.platform()} ${os.release()} ${os.arch()}`, node: process.version, v8: process.versions.v8,
    nativeCompiler,
  };
}

/** The machine lines of a table's header. */
export function machineLines(m: MachineInfo): string[] {
  return [
    `machine: ${m.cpu}, ${m.cpus} CPUs${m.caches ? ` (${m.caches})` : m.cacheSize ? `, cache ${m.cacheSize}` : ""}`,
    `         ${m.os}, Node ${m.node} (V8 ${m.v8}), ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB`,
    ...(m.flags.length ? [`         cpu flags: ${m.flags.join(" ")}`] : []),
  ];
}

/** The q-quantile of sorted samples, interpolated linearly. */
export const quantile = (sorted: readonly number[], q: number): number => {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  return lo + 1 < sorted.length ? sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo]) : sorted[lo];
};

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

export const palette = ["#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79"];

export const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/*
 * The machine a figure came from: CPU model, flags and caches (from /proc
 * and sysfs on Linux), memory, OS, Node and V8, and the lines of a table's
 * header that describe it. Node-only; the library's browser build does not
 * include it.
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

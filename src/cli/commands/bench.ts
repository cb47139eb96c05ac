/*
 * `dmabuf-lab bench NAME`: one subcommand per benchmark of
 * bench/benchmarks.ts (copy, fence, rw, devices, handoff, calibrate), each with its
 * own --help and the common flags (src/cli/benchmark.ts).
 */
import type { Command } from "../command.js";
import { benchmarkCommand } from "../benchmark.js";
import { benchmarks } from "../../../bench/benchmarks.js";

const subcommands = benchmarks.map((b) => benchmarkCommand(b, `bench ${b.name}`));
const width = Math.max(...benchmarks.map((b) => b.name.length));

export const bench: Command = {
  name: "bench",
  summary: `benchmarks against peers in the same run: ${benchmarks.map((b) => b.name).join(", ")}`,
  usage: `usage: dmabuf-lab bench NAME [OPTIONS]

${benchmarks.map((b) => `  ${b.name.padEnd(width)}  ${b.summary}`).join("\n")}

\`dmabuf-lab bench NAME --help\` describes one. Every benchmark takes --quick,
--json, --out FILE.json and --chart FILE.svg|.html; \`dmabuf-lab report\` draws
saved results again, side by side.
`,
  subcommands,
};

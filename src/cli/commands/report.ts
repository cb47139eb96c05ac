/*
 * `dmabuf-lab report RESULT.json... [-o FILE.html]`: saved results (--out
 * FILE of any benchmark, or its --json) drawn again on one self-contained
 * HTML page, side by side: one column per result, the same chart of each on
 * one row, then the tables, for comparing machines or commits. Each result
 * names its benchmark ("benchmark"); a file that does not parse, names no
 * known benchmark, or is missing is a usage error naming it, before anything
 * is written. Without -o the page goes to stdout.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { writeFile, type Command } from "../command.js";
import { UsageError } from "../options.js";
import { renderPage, type PageColumn } from "../../report.js";
import { benchmarks } from "../../../bench/benchmarks.js";
import { contendBenchmark } from "./contend.js";
import type { Benchmark } from "../../../bench/harness.js";

// Each entry's result type is its own; a saved result is checked by name.
const reportable: readonly Benchmark<any, any>[] = [...benchmarks, contendBenchmark];

const usage = `usage: dmabuf-lab report RESULT.json... [-o FILE.html]

Draws saved results (written by --out FILE.json, or --json, of ${reportable.map((b) => b.name).join(", ")})
on one self-contained HTML page: one column per result, every chart and table,
side by side for comparing machines or commits.

  -o, --output FILE  write the page to FILE (default: stdout)
`;

function column(path: string): PageColumn {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read '${path}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let result: { benchmark?: unknown; machine?: { cpu?: string }; date?: string };
  try {
    result = JSON.parse(text) as typeof result;
  } catch {
    throw new UsageError(`'${path}' is not JSON (a result written by --out or --json)`);
  }
  const b = reportable.find((x) => x.name === result?.benchmark);
  if (b === undefined) {
    throw new UsageError(`'${path}' names no benchmark this version draws (its "benchmark" is ${JSON.stringify(result?.benchmark)}; ` +
      `expected one of ${reportable.map((x) => x.name).join(", ")})`);
  }
  return {
    heading: `${basename(path)}: ${b.name}, ${result.machine?.cpu ?? "unknown machine"}, ${String(result.date ?? "").slice(0, 10)}`,
    charts: b.charts(result), table: b.table(result),
  };
}

export const report: Command = {
  name: "report",
  summary: "draws saved benchmark results on one HTML page, side by side",
  usage,
  async run(argv, io) {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: { output: { type: "string", short: "o" } }, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ""));
    }
    if (parsed.positionals.length === 0) throw new UsageError("which results? (one or more RESULT.json files)");
    const output = parsed.values.output;
    if (output !== undefined && !/\.html?$/i.test(output)) throw new UsageError(`-o '${output}' must name an .html file`);
    const columns = parsed.positionals.map(column);
    const page = renderPage(`dmabuf-lab report: ${columns.length} result${columns.length === 1 ? "" : "s"}`, columns);
    if (output === undefined) io.stdout(page);
    else io.stderr(`report: wrote ${writeFile(output, page)}\n`);
    return 0;
  },
};

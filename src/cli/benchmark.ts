/*
 * A Benchmark (bench/harness.ts) as a CLI command: parses the common flags
 * (--quick, --json, --out FILE, --chart FILE.svg|.html) and the benchmark's
 * own, checks them all before any work starts (a bad value is a usage error,
 * exit 2), runs it with progress on stderr, prints the table or the JSON
 * (tagged with the benchmark's name, so that `dmabuf-lab report` can draw it
 * again) and writes the files asked for (--trace FILE.json too, for a
 * benchmark that can record its run). Exit 1 when the benchmark says the
 * run failed a check, or when a trace's structure is unsound.
 */
import type { Benchmark } from "../../bench/harness.js";
import { progress, writeCharts, writeFile, type Command } from "./command.js";
import { chartFile, parseOptions } from "./options.js";
import { roundedJson } from "../report.js";
import { traceOption, writeTrace } from "./trace.js";

/** The JSON of a result as --json prints it and --out saves it. */
export const resultJson = <R>(b: Benchmark<unknown, R>, result: R): string => roundedJson({ benchmark: b.name, ...b.json(result) });

export function benchmarkCommand<O, R>(b: Benchmark<O, R>, name: string): Command {
  return {
    name,
    summary: b.summary,
    usage: b.usage,
    async run(argv, io) {
      const values = parseOptions(argv, {
        quick: { type: "boolean" }, json: { type: "boolean" }, out: { type: "string" }, chart: { type: "string" },
        ...(b.traceOf === undefined ? {} : { trace: { type: "string" } }), ...b.options,
      });
      const chart = chartFile(values.chart as string | undefined);
      const tracePath = traceOption(values.trace as string | undefined);
      const options = b.parse(values);
      const tag = name.split(" ").pop()!;
      const result = await b.run(options, progress(io, tag));
      const json = resultJson(b as Benchmark<unknown, R>, result);
      const table = b.table(result);
      io.stdout(values.json ? json : table);
      if (values.out !== undefined) io.stderr(`${tag}: wrote ${writeFile(values.out as string, json)}\n`);
      if (chart !== undefined) io.stderr(`${tag}: wrote ${writeCharts(chart, `dmabuf-lab ${name}`, b.charts(result), table)}\n`);
      const data = tracePath === undefined ? undefined : b.traceOf?.(result);
      const traced = data === undefined || writeTrace(io, tag, tracePath!, data);
      return b.failed?.(result) || !traced ? 1 : 0;
    },
  };
}

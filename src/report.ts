/*
 * Reporting in one place, for the commands, the benchmarks, the contention
 * experiment and the demo: the machine (report/machine.ts), statistics of
 * samples (report/stats.ts: the one summarize()), text (report/text.ts:
 * tables, units, targets, notes, rounded JSON), charts (report/chart.ts:
 * SVG with error bars) and the HTML page of charts and tables
 * (report/page.ts). Node-only (machineInfo reads /proc and sysfs); the
 * library's browser build does not include it.
 */
export * from "./report/machine.js";
export * from "./report/stats.js";
export * from "./report/text.js";
export * from "./report/chart.js";
export * from "./report/page.js";

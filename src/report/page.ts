/*
 * One self-contained HTML page (inline SVG and CSS, no script, no external
 * file) with the charts and tables of one or several results side by side:
 * one column per result, its charts in rows so that the same chart of two
 * machines or commits sits on one line, then its table. Used by every
 * --chart FILE.html and by `dmabuf-lab report`. Pure function.
 */
import { esc, renderChartSvg, type Chart } from "./chart.js";

export interface PageColumn {
  /** What this result is: the benchmark, the file, the machine, the date. */
  heading: string;
  charts: Chart[];
  /** The result's table, as the command prints it. */
  table: string;
}

export function renderPage(title: string, columns: PageColumn[]): string {
  const rows = Math.max(0, ...columns.map((c) => c.charts.length));
  const cells: string[] = [];
  for (const c of columns) cells.push(`<h2>${esc(c.heading)}</h2>`);
  for (let i = 0; i < rows; i++) {
    for (const c of columns) cells.push(`<div class="chart">${c.charts[i] ? renderChartSvg(c.charts[i]) : ""}</div>`);
  }
  for (const c of columns) cells.push(`<pre>${esc(c.table)}</pre>`);
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${esc(title)}</title>`,
    "<style>",
    "body { font-family: sans-serif; margin: 16px; }",
    `.grid { display: grid; grid-template-columns: repeat(${Math.max(1, columns.length)}, max-content); gap: 12px 24px; align-items: start; }`,
    "pre { font-size: 12px; background: #f6f6f6; padding: 8px; margin: 0; }",
    "h2 { font-size: 15px; margin: 0; }",
    "</style></head><body>",
    `<h1>${esc(title)}</h1>`,
    '<div class="grid">',
    ...cells,
    "</div></body></html>",
  ].join("\n") + "\n";
}

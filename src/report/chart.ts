/*
 * Charts of benchmark results as self-contained SVG, from a small model that
 * every benchmark fills in (its charts(result) function) and that the CLI
 * writes with --chart FILE.svg|.html and `dmabuf-lab report` lays out side
 * by side:
 *   LineChart  numeric x (log2 or log10 scale) against y; one line per
 *              series; every point may carry an error bar [lo, hi]
 *   BarChart   horizontal bars in groups (a case, a section); one colour per
 *              bar name throughout the chart; error bars [lo, hi]
 * By convention a point is a p50 and its bar spans the samples' p10..p90
 * (converted to the chart's unit; see bench/harness.ts).
 * Colours: PALETTE, eight colour-blind-safe hues (Okabe-Ito order, with a
 * darker yellow) then four more; series past the eighth are also dashed, so
 * that no two series look alike. Pure functions; no DOM.
 */

export type Scale = "linear" | "log2" | "log10";
/** How tick labels and tooltips print a value. */
export type Unit = "bytes" | "ns" | "GB/s" | "ratio" | "percent" | "count";

export interface Axis {
  label: string;
  scale: Scale;
  unit: Unit;
}

export interface Point {
  x: number;
  y: number;
  /** The error bar, in y's unit (absent: none drawn). */
  lo?: number;
  hi?: number;
}

export interface Series {
  name: string;
  points: Point[];
  /** Drawn dashed (e.g. a peer that is not this library). */
  dashed?: boolean;
}

export interface LineChart {
  kind: "lines";
  title: string;
  subtitle?: string;
  x: Axis;
  y: Axis;
  series: Series[];
  notes?: string[];
}

export interface Bar {
  name: string;
  value: number;
  lo?: number;
  hi?: number;
}

export interface BarChart {
  kind: "bars";
  title: string;
  subtitle?: string;
  value: Axis;
  groups: { name: string; bars: Bar[] }[];
  notes?: string[];
}

export type Chart = LineChart | BarChart;

export const PALETTE = ["#000000", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#8a7a00",
  "#7f3c8d", "#9a9a9a", "#5a3a1a", "#e31a1c"];

/** The colour and dash of the i-th series. */
export function seriesStyle(i: number): { color: string; dash: string } {
  return { color: PALETTE[i % PALETTE.length], dash: i >= 8 ? "6 3" : "" };
}

export const esc = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const f = (v: number): string => v.toFixed(1);

/** A value in a unit, short, for ticks and tooltips. */
export function unitLabel(v: number, unit: Unit): string {
  if (!Number.isFinite(v)) return "-";
  switch (unit) {
    case "bytes": {
      const units = ["B", "KiB", "MiB", "GiB"];
      let u = 0;
      while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
    }
    case "ns":
      return v >= 1e6 ? `${+(v / 1e6).toPrecision(3)} ms` : v >= 1e3 ? `${+(v / 1e3).toPrecision(3)} µs` : `${+v.toPrecision(3)} ns`;
    case "percent": return `${+(100 * v).toPrecision(3)}%`;
    case "ratio": return `${+v.toPrecision(3)}x`;
    case "GB/s": return `${+v.toPrecision(3)}`;
    case "count": return `${+v.toPrecision(4)}`;
  }
}

/** Maps a value range onto pixels for a scale; ticks at powers (log) or nice steps (linear). */
function scaleOf(scale: Scale, values: number[], from: number, to: number) {
  const finite = values.filter((v) => Number.isFinite(v) && (scale === "linear" || v > 0));
  const base = scale === "log2" ? 2 : 10;
  const t = (v: number) => (scale === "linear" ? v : Math.log(v) / Math.log(base));
  let lo = finite.length ? Math.min(...finite.map(t)) : 0;
  let hi = finite.length ? Math.max(...finite.map(t)) : 1;
  if (scale === "linear") {
    lo = Math.min(0, lo);
    const step = 10 ** Math.floor(Math.log10(Math.max(hi - lo, 1e-12))) / 2;
    hi = Math.ceil(hi / step) * step;
  } else {
    lo = Math.floor(lo);
    hi = Math.ceil(hi);
  }
  if (hi <= lo) hi = lo + 1;
  const px = (v: number) => from + ((t(scale === "linear" ? v : Math.max(v, base ** lo)) - lo) / (hi - lo)) * (to - from);
  const ticks: number[] = [];
  if (scale === "linear") {
    const step = (hi - lo) / 5;
    for (let i = 0; i <= 5; i++) ticks.push(lo + i * step);
  } else {
    const every = Math.max(1, Math.ceil((hi - lo) / 8));
    for (let e = lo; e <= hi; e += every) ticks.push(base ** e);
  }
  return { px, ticks };
}

function frame(w: number, h: number, title: string, subtitle: string | undefined, body: string[]): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="16" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    ...(subtitle ? [`<text x="16" y="40" fill="#555555">${esc(subtitle)}</text>`] : []),
    ...body, "</svg>",
  ];
}

function errorBar(x: number, y1: number, y2: number, color: string, vertical: boolean): string {
  if (!Number.isFinite(y1) || !Number.isFinite(y2)) return "";
  const cap = 3;
  return vertical
    ? `<path d="M${f(x)} ${f(y1)}V${f(y2)}M${f(x - cap)} ${f(y1)}H${f(x + cap)}M${f(x - cap)} ${f(y2)}H${f(x + cap)}" stroke="${color}" fill="none"/>`
    : `<path d="M${f(y1)} ${f(x)}H${f(y2)}M${f(y1)} ${f(x - cap)}V${f(x + cap)}M${f(y2)} ${f(x - cap)}V${f(x + cap)}" stroke="${color}" fill="none"/>`;
}

function notesAt(notes: string[] | undefined, x: number, y: number): string[] {
  return (notes ?? []).map((n, i) => `<text x="${x}" y="${y + i * 15}" fill="#555555" font-size="11">${esc(n)}</text>`);
}

function renderLines(c: LineChart): string {
  const left = 76, top = 56, plotW = 600, plotH = 380, legendX = left + plotW + 24;
  const legendH = c.series.length * 20 + (c.notes?.length ?? 0) * 15 + 20;
  const W = legendX + 260, H = Math.max(top + plotH + 50, top + legendH);
  const xs = c.series.flatMap((s) => s.points.map((p) => p.x));
  const ys = c.series.flatMap((s) => s.points.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]));
  const X = scaleOf(c.x.scale, xs, left, left + plotW);
  const Y = scaleOf(c.y.scale, ys, top + plotH, top);
  const body = [`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999999"/>`];
  for (const v of Y.ticks) {
    body.push(`<line x1="${left}" x2="${left + plotW}" y1="${f(Y.px(v))}" y2="${f(Y.px(v))}" stroke="#e4e4e4"/>`,
      `<text x="${left - 6}" y="${f(Y.px(v) + 4)}" text-anchor="end">${esc(unitLabel(v, c.y.unit))}</text>`);
  }
  for (const v of X.ticks) {
    body.push(`<line x1="${f(X.px(v))}" x2="${f(X.px(v))}" y1="${top}" y2="${top + plotH}" stroke="#eeeeee"/>`,
      `<text x="${f(X.px(v))}" y="${top + plotH + 16}" text-anchor="middle">${esc(unitLabel(v, c.x.unit))}</text>`);
  }
  body.push(`<text x="${left + plotW / 2}" y="${top + plotH + 36}" text-anchor="middle">${esc(c.x.label)}</text>`,
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(c.y.label)}</text>`);
  if (c.series.every((s) => s.points.length === 0)) body.push(`<text x="${left + 20}" y="${top + 40}">no data in this result</text>`);
  c.series.forEach((s, i) => {
    const { color, dash: own } = seriesStyle(i);
    const dash = s.dashed ? "2 3" : own;
    const dashAttr = dash ? ` stroke-dasharray="${dash}"` : "";
    const pts = [...s.points].filter((p) => Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    if (pts.length > 1) {
      body.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8"${dashAttr} points="${pts.map((p) => `${f(X.px(p.x))},${f(Y.px(p.y))}`).join(" ")}"/>`);
    }
    for (const p of pts) {
      if (p.lo !== undefined && p.hi !== undefined) body.push(errorBar(X.px(p.x), Y.px(p.lo), Y.px(p.hi), color, true));
      const tip = `${s.name} ${unitLabel(p.x, c.x.unit)}: ${unitLabel(p.y, c.y.unit)}` +
        (p.lo !== undefined && p.hi !== undefined ? ` (${unitLabel(p.lo, c.y.unit)}..${unitLabel(p.hi, c.y.unit)})` : "");
      body.push(`<circle cx="${f(X.px(p.x))}" cy="${f(Y.px(p.y))}" r="2.6" fill="${color}"><title>${esc(tip)}</title></circle>`);
    }
    const ly = top + 8 + i * 20;
    body.push(`<line x1="${legendX}" x2="${legendX + 28}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dashAttr}/>`,
      `<text x="${legendX + 34}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  body.push(...notesAt(c.notes, legendX, top + 20 + c.series.length * 20));
  return frame(W, H, c.title, c.subtitle, body).join("\n") + "\n";
}

function renderBars(c: BarChart): string {
  const labelW = 300, left = 16 + labelW, top = 60, plotW = 480, barH = 14, gap = 4, groupGap = 22;
  const names = [...new Set(c.groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const values = c.groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.lo ?? b.value, b.hi ?? b.value]));
  const V = scaleOf(c.value.scale, values, left, left + plotW);
  let y = top + 10;
  const rows: string[] = [];
  for (const g of c.groups) {
    rows.push(`<text x="16" y="${y + 10}" font-weight="bold">${esc(g.name)}</text>`);
    y += groupGap - 4;
    for (const b of g.bars) {
      const i = names.indexOf(b.name);
      const { color } = seriesStyle(i);
      const x0 = V.px(c.value.scale === "linear" ? 0 : V.ticks[0]);
      const tip = `${g.name}, ${b.name}: ${unitLabel(b.value, c.value.unit)}` +
        (b.lo !== undefined && b.hi !== undefined ? ` (${unitLabel(b.lo, c.value.unit)}..${unitLabel(b.hi, c.value.unit)})` : "");
      rows.push(`<text x="${left - 6}" y="${y + barH - 3}" text-anchor="end">${esc(b.name)}</text>`);
      if (Number.isFinite(b.value)) {
        rows.push(`<rect x="${f(x0)}" y="${y}" width="${f(Math.max(1, V.px(b.value) - x0))}" height="${barH}" fill="${color}" fill-opacity="${i >= 8 ? 0.45 : 0.8}"><title>${esc(tip)}</title></rect>`,
          `<text x="${f(left + plotW + 8)}" y="${y + barH - 3}">${esc(unitLabel(b.value, c.value.unit))}</text>`);
      }
      if (b.lo !== undefined && b.hi !== undefined) rows.push(errorBar(y + barH / 2, V.px(b.lo), V.px(b.hi), "#222222", false));
      y += barH + gap;
    }
    y += groupGap - gap;
  }
  const plotBottom = y;
  const body = [`<rect x="${left}" y="${top}" width="${plotW}" height="${plotBottom - top}" fill="none" stroke="#999999"/>`];
  for (const v of V.ticks) {
    body.push(`<line x1="${f(V.px(v))}" x2="${f(V.px(v))}" y1="${top}" y2="${plotBottom}" stroke="#eeeeee"/>`,
      `<text x="${f(V.px(v))}" y="${plotBottom + 16}" text-anchor="middle">${esc(unitLabel(v, c.value.unit))}</text>`);
  }
  body.push(...rows, `<text x="${left + plotW / 2}" y="${plotBottom + 36}" text-anchor="middle">${esc(c.value.label)}</text>`,
    ...notesAt(c.notes, 16, plotBottom + 58));
  return frame(left + plotW + 90, plotBottom + 64 + (c.notes?.length ?? 0) * 15, c.title, c.subtitle, body).join("\n") + "\n";
}

/** One chart as a standalone SVG document. */
export function renderChartSvg(c: Chart): string {
  return c.kind === "lines" ? renderLines(c) : renderBars(c);
}

/** Several charts stacked in one SVG document (for --chart FILE.svg). */
export function renderChartsSvg(charts: Chart[]): string {
  if (charts.length === 1) return renderChartSvg(charts[0]);
  const docs = charts.map(renderChartSvg);
  const sizes = docs.map((d) => {
    const m = /width="(\d+)" height="(\d+)"/.exec(d)!;
    return { w: Number(m[1]), h: Number(m[2]) };
  });
  const W = Math.max(...sizes.map((s) => s.w)), H = sizes.reduce((a, s) => a + s.h, 0);
  let y = 0;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`];
  docs.forEach((d, i) => {
    parts.push(d.replace(/^<svg /, `<svg x="0" y="${y}" `).trimEnd());
    y += sizes[i].h;
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

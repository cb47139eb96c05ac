/*
 * src/report: the one summarize() and the charts every benchmark draws
 * (points with p10..p90 error bars, distinct colours, several charts in one
 * SVG, the side-by-side page).
 */
import { describe, expect, it } from "vitest";
import {
  PALETTE, renderChartSvg, renderChartsSvg, renderPage, seriesStyle, summarize, type BarChart, type LineChart,
} from "../src/report.js";
import { spread } from "../bench/harness.js";

const line: LineChart = {
  kind: "lines", title: "t", x: { label: "size", scale: "log2", unit: "bytes" }, y: { label: "GB/s", scale: "log10", unit: "GB/s" },
  series: [{ name: "a", points: [{ x: 64, y: 1, lo: 0.5, hi: 2 }, { x: 4096, y: 10, lo: 8, hi: 12 }] }],
};
const bars: BarChart = {
  kind: "bars", title: "b", value: { label: "ns", scale: "log10", unit: "ns" },
  groups: [{ name: "g", bars: [{ name: "x", value: 100, lo: 80, hi: 150 }, { name: "y", value: 1000 }] }],
};

describe("summarize", () => {
  it("gives the quantiles of the samples by linear interpolation, whatever their order", () => {
    const s = summarize([10, 1, 9, 2, 8, 3, 7, 4, 6, 5, 11]);
    expect([s.samples, s.minNs, s.p10Ns, s.p50Ns, s.p90Ns, s.maxNs, s.meanNs]).toEqual([11, 1, 2, 6, 10, 11, 6]);
    expect(s.p99Ns).toBeCloseTo(10.9);
    expect(summarize([]).samples).toBe(0);
  });

  it("a bandwidth point's error bar is the p10..p90 of the times, ends swapped by the conversion", () => {
    const p = spread(summarize([100, 200, 300, 400, 500]), (ns) => 1000 / ns);
    expect(p.y).toBe(1000 / 300);
    expect(p.lo).toBeCloseTo(1000 / 460);
    expect(p.hi).toBeCloseTo(1000 / 140);
  });
});

describe("charts", () => {
  it("a line chart draws a point and an error bar per sample summary", () => {
    const svg = renderChartSvg(line);
    expect(svg.match(/<circle /g)?.length).toBe(2);
    expect(svg.match(/<path d="M/g)?.length).toBe(2);
    expect(svg).toContain("<title>a 4 KiB: 10 (8..12)</title>");
  });

  it("a bar chart draws every bar, error bars where given", () => {
    const svg = renderChartSvg(bars);
    expect(svg.match(/<rect x=/g)?.length).toBe(3); // the frame and two bars
    expect(svg.match(/<path d="M/g)?.length).toBe(1);
  });

  it("the first eight colours are far apart and later series are dashed", () => {
    const rgb = (c: string) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
    for (let i = 0; i < PALETTE.length; i++) {
      for (let j = i + 1; j < PALETTE.length; j++) {
        const d = Math.hypot(...rgb(PALETTE[i]).map((v, k) => v - rgb(PALETTE[j])[k]));
        expect(d, `${PALETTE[i]} vs ${PALETTE[j]}`).toBeGreaterThan(60);
      }
    }
    expect(seriesStyle(7).dash).toBe("");
    expect(seriesStyle(8).dash).not.toBe("");
  });

  it("several charts stack in one SVG document; a page puts results side by side", () => {
    const svg = renderChartsSvg([line, bars]);
    expect(svg.match(/<svg /g)?.length).toBe(3);
    const page = renderPage("p", [{ heading: "one", charts: [line], table: "a & b" }, { heading: "two", charts: [bars], table: "" }]);
    expect(page).toContain("repeat(2, max-content)");
    expect(page).toContain("a &amp; b");
    expect(page).not.toMatch(/<script|src=/);
  });
});

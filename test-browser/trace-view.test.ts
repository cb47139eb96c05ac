/*
 * The trace viewer page (web/trace.html) in headless Chromium, on a real
 * trace: the demo pipeline run in this process with lab.trace recording,
 * turned into Chrome Trace Event JSON and drawn by the page. The screenshot
 * goes to build/test-browser/artifacts/trace.png (docs/trace.png is a copy).
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { packageUrl } from "../src/engine/artifacts.js";
import { Lab } from "../src/api/lab.js";
import { runPipeline } from "../src/demo/pipeline.js";
import { chromeTrace, type ChromeTrace } from "../src/trace/chrome.js";
import { checkChromeTrace } from "../src/trace/validate.js";
import { launchChromium } from "./helpers/chromium.js";

const isolatedUrl = inject("isolatedUrl");
const WAIT_MS = 60_000;
const artifacts = fileURLToPath(packageUrl("build/test-browser/artifacts/"));

describe.skipIf(!inject("chromium"))("the trace viewer page in headless Chromium", () => {
  let browser: Browser;
  let trace: ChromeTrace;

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    const lab = await Lab.create({ memoryBytes: 64 << 20 });
    try {
      lab.trace.start();
      const result = await runPipeline(lab, { frames: 24, buffers: 3 });
      expect(result.integrity.ok).toBe(true);
      trace = chromeTrace(lab.trace.stop());
    } finally {
      lab.close();
    }
    expect(checkChromeTrace(trace).problems).toEqual([]);
    browser = await launchChromium();
  }, WAIT_MS);

  afterAll(async () => {
    await browser?.close();
  });

  it("draws the demo's trace: a track per thread and device, slices, flow arrows, counters", async () => {
    const page = await browser.newPage({ viewport: { width: 1240, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    expect((await page.goto(`${isolatedUrl}trace.html`, { timeout: WAIT_MS }))?.ok()).toBe(true);
    await page.waitForFunction("typeof window.showTrace === 'function'", undefined, { timeout: WAIT_MS });
    // A window of a few frames in the middle of the run (jobs 10 to 13 of every device), wide enough to read.
    const t0 = Math.min(...trace.traceEvents.filter((e) => e.ts !== undefined).map((e) => e.ts!));
    const jobStarts = (n: number) => trace.traceEvents.filter((e) => e.ph === "B" && e.name === `kernel #${n}`).map((e) => e.ts!);
    const from = Math.min(...jobStarts(10));
    const to = Math.max(...jobStarts(14));
    const view = { fromMs: (from - t0) / 1000, spanMs: (to - from) / 1000 };
    await page.evaluate(([t, v]) => (window as unknown as { showTrace: (t: unknown, v: unknown) => void }).showTrace(t, v), [trace, view] as const);
    const drawn = await page.evaluate(() => ({ ...document.body.dataset }));
    expect(drawn.state).toBe("drawn");
    expect(Number(drawn.tracks)).toBeGreaterThanOrEqual(4); // main, camera, gpu, display
    expect(Number(drawn.slices)).toBeGreaterThan(10);
    expect(Number(drawn.arrows)).toBeGreaterThan(0);
    await page.locator("body").screenshot({ path: `${artifacts}trace.png` });
    expect(errors).toEqual([]);
    await page.close();
  });
});

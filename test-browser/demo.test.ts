/*
 * The demo page (web/demo.js) in real headless Chromium: the camera -> gpu
 * -> display pipeline on device Web Workers draws frames into its canvas,
 * with implicit fences no frame is torn, and with the fences bypassed torn
 * frames are seen and counted; each restart shuts the previous run's
 * devices down. The page reports its state in window.__demo; every wait is
 * bounded (WAIT_MS) and none is a timing threshold. Screenshots of the
 * demo section are saved to build/test-browser/artifacts/ (demo.png with
 * fences, demo-bypass.png without, demo-races.png with the race detector's
 * marks; docs/demo.png is a copy of the first).
 */
import { mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { packageUrl } from "../src/engine/artifacts.js";
import { launchChromium } from "./helpers/chromium.js";
import type { DemoState } from "./protocol.js";
import { checkChromeTrace } from "../src/trace/validate.js";

const isolatedUrl = inject("isolatedUrl");
const WAIT_MS = 60_000;
const artifacts = fileURLToPath(packageUrl("build/test-browser/artifacts/"));

describe.skipIf(!inject("chromium"))("the demo page in headless Chromium", () => {
  let browser: Browser;
  let page: Page;
  const logged: string[] = [];

  /** Waits (at most WAIT_MS) until ready(window.__demo) holds in the page; returns the state then. */
  async function until(ready: string): Promise<DemoState> {
    try {
      await page.waitForFunction(`window.__demo?.error !== undefined || (window.__demo !== undefined && (${ready})(window.__demo))`,
        undefined, { timeout: WAIT_MS, polling: 50 });
    } catch (e) {
      const state = await page.evaluate(() => window.__demo).catch(() => undefined);
      throw new Error(`${ready} did not hold within ${WAIT_MS} ms: ${JSON.stringify(state)}\n${logged.join("\n")}`, { cause: e });
    }
    const state = (await page.evaluate(() => window.__demo))!;
    expect(state.error, state.error).toBeUndefined();
    return state;
  }

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 800, height: 900 } });
    page.on("pageerror", (e) => logged.push(`page error: ${e.stack ?? e.message}`));
    page.on("console", (m) => { if (m.type() === "error") logged.push(`console: ${m.text()}`); });
    const response = await page.goto(isolatedUrl, { timeout: WAIT_MS });
    expect(response?.ok()).toBe(true);
  });

  afterAll(async () => {
    await page?.close();
    await browser?.close();
  });

  it("draws the pipeline's frames into the canvas; with implicit fences none is torn", async () => {
    const s = await until("(d) => d.run === 1 && d.frames >= 240 && d.drawn >= 5");
    expect(s).toMatchObject({ running: true, bypass: false, coherent: true, buffers: 4, torn: 0, wrong: 0, readerTorn: 0, readerWrong: 0 });
    expect(s.reads).toBeGreaterThan(0);
    expect(s.fps).toBeGreaterThan(0);
    expect(s.p99Ms).toBeGreaterThanOrEqual(s.p50Ms);
    // The canvas holds a gpu output frame: a gradient of many colours and
    // the camera's white bar inverted, 1 to 16 whole black columns (the bar
    // may be cut at the right edge; rows under the label only).
    const canvas = await page.evaluate(() => {
      const c = document.querySelector<HTMLCanvasElement>("canvas.frame")!;
      const { data, width, height } = c.getContext("2d")!.getImageData(0, 0, c.width, c.height);
      const colours = new Set<number>();
      let black = 0;
      for (let x = 0; x < width; x++) {
        let all = true;
        for (let y = 24; y < height; y++) {
          const i = (y * width + x) * 4;
          colours.add(data[i] | (data[i + 1] << 8) | (data[i + 2] << 16));
          all &&= data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 0 && data[i + 3] === 255;
        }
        if (all) black++;
      }
      return { width, height, colours: colours.size, black };
    });
    expect(canvas).toMatchObject({ width: 320, height: 240 });
    expect(canvas.colours).toBeGreaterThan(1000);
    expect(canvas.black).toBeGreaterThanOrEqual(1);
    expect(canvas.black).toBeLessThanOrEqual(16);
    const text = await page.locator("section").first().innerText();
    expect(text).toMatch(/frames per second\s+\d+/);
    expect(text).toMatch(/0 torn, 0 wrong \(the display's check\)/);
    await page.locator("section").first().screenshot({ path: `${artifacts}demo.png` });
  });

  it("draws its timeline from the live trace and downloads the trace as sound Perfetto JSON", async () => {
    const s = await until("(d) => d.traceJobs >= 30");
    expect(s.traceJobs).toBeGreaterThanOrEqual(30);
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: WAIT_MS }), page.locator("button[name=download]").click()]);
    const path = `${artifacts}demo-trace.json`;
    await download.saveAs(path);
    const trace = JSON.parse(readFileSync(path, "utf8"));
    expect(checkChromeTrace(trace).problems).toEqual([]);
    const names = trace.traceEvents.filter((e: { ph: string; name: string }) => e.ph === "M" && e.name === "thread_name")
      .map((e: { args: { name: string } }) => e.args.name);
    expect(names).toEqual(expect.arrayContaining(["main", "device camera", "device gpu", "device display"]));
    expect(trace.traceEvents.some((e: { ph: string }) => e.ph === "s")).toBe(true);
    const after = await until("(d) => d.traceDownloads > 0");
    expect(after.error).toBeUndefined();
  });

  it("bypass fences restarts the run after shutting its devices down, and torn frames are seen and counted", async () => {
    await page.locator("input[name=bypass]").check();
    // Tearing is not certain for a given frame (two cores, three device
    // workers): wait, bounded, until the display has counted one.
    const s = await until("(d) => d.run === 2 && d.torn > 0 && d.drawn >= 2");
    expect(s).toMatchObject({ bypass: true, running: true });
    expect(s.frames).toBeGreaterThanOrEqual(s.torn + s.wrong);
    expect(s.lastRun!.frames).toBeGreaterThan(0);
    expect(s.lastRun!.devices).toEqual(["camera", "gpu", "display"].map((name) => ({ name, state: "dead", error: 0 })));
    await page.locator("section").first().screenshot({ path: `${artifacts}demo-bypass.png` });
  });

  it("a non-coherent lab with 2 buffers and implicit fences again: no torn frame", async () => {
    await page.locator("input[name=bypass]").uncheck();
    await until("(d) => d.run === 3");
    await page.locator("select[name=coherent]").selectOption("false");
    await until("(d) => d.run === 4");
    await page.locator("select[name=buffers]").selectOption("2");
    const s = await until("(d) => d.run === 5 && d.frames >= 120 && d.drawn >= 2");
    expect(s).toMatchObject({ bypass: false, coherent: false, buffers: 2, torn: 0, wrong: 0, readerTorn: 0, readerWrong: 0 });
    expect(s.lastRun!.devices.map((d) => d.state)).toEqual(["dead", "dead", "dead"]);
    expect(logged).toEqual([]);
  });

  it("demo io: an OPFS file streamed by a storage device worker into registered dma-bufs and summed by a gpu worker, every block checked; run again", async () => {
    const io = async (ready: string) => {
      await page.waitForFunction(`window.__demoIo?.error !== undefined || (${ready})(window.__demoIo ?? {})`, undefined, { timeout: WAIT_MS, polling: 50 });
      const s = (await page.evaluate(() => window.__demoIo))!;
      expect(s.error, s.error).toBeUndefined();
      return s;
    };
    const first = await io("(d) => d.runs >= 1 && !d.running");
    expect(first).toMatchObject({ ok: true, blocks: 64, checked: 64, mismatched: 0 });
    expect(first.mbPerSec).toBeGreaterThan(0);
    await page.locator("button[name=run-io]").click();
    const again = await io(`(d) => d.runs >= ${first.runs + 1} && !d.running`);
    expect(again).toMatchObject({ ok: true, checked: 64, mismatched: 0 });
    const text = await page.locator("div.demo-io").innerText();
    expect(text).toMatch(/OK, 64 blocks checked against the file/);
  });

  it("the race detector: a fenced run has no race; with the fences bypassed its races are marked on the run's timeline and listed", async () => {
    await page.locator("input[name=sanitize]").check();
    const fenced = await until("(d) => d.sanitize && !d.bypass && d.sanitizedRuns >= 1");
    expect(fenced).toMatchObject({ races: 0, raceMarks: 0, torn: 0, wrong: 0 });
    expect(await page.locator("p.race-verdict").innerText()).toMatch(/: 0 races in \d+ accesses/);
    await page.locator("input[name=bypass]").check();
    const bypassed = await until(`(d) => d.sanitize && d.bypass && d.sanitizedRuns > ${fenced.sanitizedRuns} && d.races > 0`);
    expect(bypassed.raceMarks).toBeGreaterThan(0);
    expect(bypassed.raceMarks).toBeLessThanOrEqual(bypassed.races);
    // Each marked race is listed with both sides (thread or device, call, buffer, range).
    const items = await page.locator("ol.races li").allInnerTexts();
    expect(items.length).toBe(bypassed.raceMarks);
    for (const item of items) expect(item).toMatch(/^(device \w+|\w[\w ]*): .+ (read|write) of .+ \[\d+, \+\d+\).*\s×\s.+ (read|write) of .+/);
    // The marks are drawn: red pixels on the race timeline.
    const red = await page.evaluate(() => {
      const c = document.querySelector<HTMLCanvasElement>("canvas.races")!;
      const { data } = c.getContext("2d")!.getImageData(0, 0, c.width, c.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] > 180 && data[i + 1] < 60 && data[i + 2] < 60 && data[i + 3] > 200) n++;
      return n;
    });
    expect(red).toBeGreaterThan(20);
    await page.locator("section").first().screenshot({ path: `${artifacts}demo-races.png` });
    await page.locator("input[name=bypass]").uncheck();
    await page.locator("input[name=sanitize]").uncheck();
    await until("(d) => !d.sanitize && !d.bypass && d.running");
    expect(logged).toEqual([]);
  });
});

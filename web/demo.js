/*
 * Section "the camera -> gpu -> display pipeline": runPipeline() (the one
 * `dmabuf-lab demo` runs) on three device Web Workers over shared dma-bufs,
 * in a lab of its own, run after run until the page goes away. It draws the
 * CPU reader's frames (at most ~30 a second), the fence timeline of the
 * last frames (read live from the lab's trace: demo-trace.js), fps and
 * latency, and the integrity counters; "download trace" saves the run's
 * trace so far as Perfetto JSON (then recording starts over).
 *
 * Controls: the number of buffers (restarts the run), coherence (restarts
 * the lab), bypass fences (restarts the run), the race detector (restarts
 * the lab: then each run is SANITIZED_FRAMES frames in a lab of its own
 * with Lab.create({ sanitize: true }); when it ends, its report's races are
 * marked on that run's timeline, numbered, and listed below it, each side
 * with its thread or device, call, buffer and range; hovering a marked side
 * shows the race's text as the canvas's tooltip, clicking it highlights the
 * race in the list). Restarts go one at a time: the
 * run is aborted, which retires its frames in flight and shuts its devices
 * down, before the next one starts. pagehide aborts the run and closes the
 * lab once its devices are down.
 *
 * window.__demo, for the browser tests: run (runs started), running, and
 * of the current run frames, torn, wrong (the display's verdicts), reads,
 * readerTorn, readerWrong, drawn, fps, p50Ms, p99Ms, traceJobs (device jobs
 * read from the trace), traceDownloads (events in the last download); the settings (buffers,
 * coherent, bypass, sanitize); sanitizedRuns, races (the last checked run's
 * race count), raceMarks (the races marked on its timeline), raceSpots
 * (each marked side's centre on the race canvas, { n, x, y } in canvas
 * pixels), racePicked (the race last clicked, 0 for none); lastRun (the
 * previous run's frames and its devices' final states); error (what stopped
 * the demo, if anything).
 */
import { Lab, runPipeline } from "dmabuf-lab";
import { FrameStats } from "./demo-stats.js";
import { drawFrame, drawTimeline, raceAt, raceMarks, slotColour } from "./demo-view.js";
import { TraceFeed } from "./demo-trace.js";

export const title = "the camera → gpu → display pipeline";

const TIMELINE_FRAMES = 16;
const READ_INTERVAL_MS = 33;
const BUFFER_CHOICES = [1, 2, 3, 4, 6, 8];
/** With the race detector: frames per run (each in a lab of its own, so that the logs hold the whole run). */
const SANITIZED_FRAMES = 48;
/** Races marked and listed per run. */
const MARKED_RACES = 8;

const demo = {
  run: 0, running: false, frames: 0, torn: 0, wrong: 0, reads: 0, readerTorn: 0, readerWrong: 0, drawn: 0,
  fps: 0, p50Ms: 0, p99Ms: 0, traceJobs: 0, traceDownloads: 0, buffers: 4, coherent: true, bypass: false,
  sanitize: false, sanitizedRuns: 0, races: 0, raceMarks: 0, raceSpots: [], racePicked: 0, lastRun: undefined, error: undefined,
};
window.__demo = demo;

const html = `
  <div class="demo">
    <canvas class="frame" width="320" height="240"></canvas>
    <div>
      <form class="controls">
        <label>buffers <select name="buffers">${BUFFER_CHOICES.map((n) => `<option>${n}</option>`).join("")}</select></label>
        <label>memory <select name="coherent">
          <option value="true">coherent (x86-like)</option><option value="false">non-coherent (ARM-like)</option>
        </select></label>
        <label><input type="checkbox" name="bypass"> bypass fences</label>
        <label><input type="checkbox" name="sanitize"> race detector</label>
        <button type="button" name="download">download trace (JSON)</button>
      </form>
      <dl class="stats"></dl>
    </div>
    <canvas class="timeline" width="760" height="120"></canvas>
    <p class="legend"></p>
    <div class="races" hidden>
      <p class="race-verdict"></p>
      <canvas class="races" width="760" height="150"></canvas>
      <ol class="races"></ol>
    </div>
  </div>`;

export async function run(_pageLab, element) {
  element.insertAdjacentHTML("beforeend", html);
  const $ = (selector) => element.querySelector(selector);
  const form = $(".controls");
  form.buffers.value = String(demo.buffers);
  let lab;
  let controller;
  let current = Promise.resolve();
  let stats = new FrameStats();
  let feed;
  /** Runs in the current lab (a sanitized run wants a fresh one). */
  let labRuns = 0;
  const newLab = async () => {
    lab?.close();
    lab = await Lab.create({ memoryBytes: 64 << 20, coherent: demo.coherent, sanitize: demo.sanitize });
    labRuns = 0;
  };

  /** The marked sides on the race canvas (drawTimeline's boxes): hover shows a race, click picks it in the list. */
  let raceBoxes = [];
  const raceCanvas = $("canvas.races");
  const canvasPoint = (event) => {
    const r = raceCanvas.getBoundingClientRect();
    return [(event.clientX - r.left) * (raceCanvas.width / r.width), (event.clientY - r.top) * (raceCanvas.height / r.height)];
  };
  raceCanvas.addEventListener("mousemove", (event) => {
    raceCanvas.title = raceAt(raceBoxes, ...canvasPoint(event))?.text ?? "";
  });
  raceCanvas.addEventListener("click", (event) => {
    demo.racePicked = raceAt(raceBoxes, ...canvasPoint(event))?.n ?? 0;
    for (const [i, li] of [...$("ol.races").children].entries()) li.classList.toggle("picked", i + 1 === demo.racePicked);
  });

  /** The race detector's verdict on the run that just ended, marked on its timeline. */
  const showRaces = (verdicts) => {
    const report = lab.sanitizer.report();
    const marks = raceMarks(report, MARKED_RACES);
    raceBoxes = drawTimeline(raceCanvas, feed.bars(SANITIZED_FRAMES), verdicts, demo.buffers, marks);
    $(".race-verdict").textContent = `race detector, run ${demo.run}: ${report.raceCount} race${report.raceCount === 1 ? "" : "s"} in ` +
      `${report.accesses} accesses${report.raceCount > marks.length ? ` (the first ${marks.length} marked)` : ""}` +
      `${report.unbracketedCount ? `; ${report.unbracketedCount} mmap accesses outside SYNC` : ""}` +
      `${report.incomplete ? "; a log was full, races may be missing" : ""}`;
    $("ol.races").replaceChildren(...marks.map((m) => {
      const li = document.createElement("li");
      li.textContent = `${m.a.text}  ×  ${m.b.text}`;
      return li;
    }));
    $("div.races").hidden = false;
    Object.assign(demo, {
      sanitizedRuns: demo.sanitizedRuns + 1, races: report.raceCount, raceMarks: marks.length, racePicked: 0,
      raceSpots: raceBoxes.map((b) => ({ n: b.n, x: b.x + b.w / 2, y: b.y + b.h / 2 })),
    });
  };

  const render = () => {
    feed?.poll();
    demo.traceJobs = feed?.jobsSeen ?? 0;
    const verdicts = new Map(stats.recent(2 * TIMELINE_FRAMES).map((r) => [r.frame, r]));
    drawTimeline($(".timeline"), feed?.bars(TIMELINE_FRAMES) ?? [], verdicts, demo.buffers);
    Object.assign(demo, { fps: stats.fps(), ...Object.fromEntries(Object.entries(stats.latency()).map(([k, v]) => [`${k}Ms`, v])) });
    const rows = [
      ["frames per second", demo.fps.toFixed(0)],
      ["latency p50 / p99", `${demo.p50Ms.toFixed(2)} / ${demo.p99Ms.toFixed(2)} ms (submit → display fence)`],
      ["frames displayed", `${demo.frames} (run ${demo.run}, ${demo.bypass ? "fences bypassed" : "implicit fences"})`],
      ["torn frames", `${demo.torn} torn, ${demo.wrong} wrong (the display's check)`],
      ["CPU reader", `${demo.readerTorn} torn, ${demo.readerWrong} wrong of ${demo.reads} reads`],
    ];
    $(".stats").replaceChildren(...rows.flatMap(([k, v]) => [Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: v, className: k === "torn frames" && demo.torn > 0 ? "error" : "" })]));
  };

  const runs = async (signal) => {
    while (!signal.aborted) {
      Object.assign(demo, { run: demo.run + 1, running: true, frames: 0, torn: 0, wrong: 0, reads: 0, readerTorn: 0, readerWrong: 0, drawn: 0 });
      stats = new FrameStats();
      let result;
      if (demo.sanitize && labRuns > 0) await newLab();
      labRuns++;
      feed = new TraceFeed(lab);
      try {
        result = await runPipeline(lab, {
          frames: demo.sanitize ? SANITIZED_FRAMES : 1_000_000, buffers: demo.buffers, bypassFences: demo.bypass, readIntervalMs: READ_INTERVAL_MS, keepTimings: false, signal,
          onFrame: (f) => {
            stats.add(f);
            demo.frames++;
            if (!f.whole) demo.torn++;
            else if (!f.ok) demo.wrong++;
          },
          onRead: (r) => {
            demo.reads++;
            if (!r.whole) demo.readerTorn++;
            else if (!r.ok) demo.readerWrong++;
            drawFrame($(".frame"), r);
            demo.drawn++;
            render();
          },
        });
        if (demo.sanitize && !signal.aborted) {
          feed.poll();
          showRaces(new Map(stats.recent(SANITIZED_FRAMES).map((r) => [r.frame, r])));
        }
      } finally {
        feed.stop();
      }
      demo.running = false;
      demo.lastRun = { frames: result.frames, devices: result.devices.map(({ name, state, error }) => ({ name, state, error })) };
    }
  };

  const fail = (e) => {
    Object.assign(demo, { running: false, error: e.stack ?? String(e) });
    const p = Object.assign(document.createElement("pre"), { textContent: demo.error, className: "error" });
    element.append(p);
  };

  /** Stops the run (its devices shut down), applies the change, starts the next run, in a new lab when asked. */
  let chain = Promise.resolve();
  const restart = (change) => {
    chain = chain.then(async () => {
      form.inert = true;
      controller?.abort();
      await current;
      if (demo.error !== undefined) return;
      const relab = lab === undefined || (change.coherent !== undefined && change.coherent !== demo.coherent)
        || (change.sanitize !== undefined && change.sanitize !== demo.sanitize);
      Object.assign(demo, change);
      if (relab) await newLab();
      if (!demo.sanitize) {
        $("div.races").hidden = true;
        raceBoxes = [];
      }
      $(".legend").innerHTML = `buffer slots: ${Array.from({ length: demo.buffers },
        (_, i) => `<span style="color:${slotColour(i, demo.buffers)}">■</span> ${i}`).join(" ")}; ` +
        "from the lab's trace, a bar runs from when the job's dependencies were satisfied to its fence's signal; " +
        "red outline: a torn frame, orange: a wrong one";
      controller = new AbortController();
      current = runs(controller.signal).catch(fail);
      form.inert = false;
    }).catch(fail);
    return chain;
  };

  form.download.addEventListener("click", () => {
    if (feed !== undefined && lab?.trace.recording) demo.traceDownloads = feed.download(`dmabuf-lab-demo-run${demo.run}.json`);
  });
  form.addEventListener("change", (event) => {
    const { name } = event.target;
    if (name === "buffers") restart({ buffers: Number(form.buffers.value) });
    if (name === "coherent") restart({ coherent: form.coherent.value === "true" });
    if (name === "bypass") restart({ bypass: form.bypass.checked });
    if (name === "sanitize") restart({ sanitize: form.sanitize.checked });
  });
  window.addEventListener("pagehide", () => {
    controller?.abort();
    void current.then(() => lab?.close());
  });
  await restart({});
  if (demo.error !== undefined) throw new Error(demo.error);
}

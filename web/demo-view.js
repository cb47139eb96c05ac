/*
 * What the demo page draws; no state of its own.
 *   drawFrame(canvas, read)     the CPU reader's pixels (runPipeline's
 *                               onRead) into the canvas, one putImageData;
 *                               a torn or wrong read is labelled on it
 *   drawTimeline(canvas, bars, verdicts, buffers)
 *                               the fence timeline, from the trace (TraceFeed
 *                               in demo-trace.js): one lane per device, a bar
 *                               per job from when its dependencies were
 *                               satisfied to its end, coloured by buffer slot
 *                               (frame mod buffers); the display bar of a
 *                               frame whose verdict (frame -> FrameReport) is
 *                               torn outlined in red, wrong in orange; the
 *                               time axis in ms; with `races` (the race
 *                               detector's pairs, sides already placed on a
 *                               lane: raceMarks() below), each side outlined
 *                               in red on its lane over its time, the two
 *                               joined by a red line and numbered as the
 *                               page's list numbers them; a side on a CPU
 *                               thread gets a "cpu" lane of its own;
 *                               returns each side's box on the canvas,
 *                               { n, x, y, w, h, text } (raceAt() below)
 *   raceAt(boxes, x, y)         the race whose side covers canvas point
 *                               (x, y), as { n, text } with both sides'
 *                               text, or undefined
 *   raceMarks(report, count)    the first `count` races of a report as
 *                               { n, a, b } with each side's lane (a device's
 *                               name, else "cpu"), times and text
 */
const LANES = ["camera", "gpu", "display"];
const LABEL_W = 64;
const AXIS_H = 18;

export const slotColour = (slot, buffers) => `hsl(${Math.round((360 * slot) / buffers)} 70% 55%)`;

export function drawFrame(canvas, read) {
  if (canvas.width !== read.width || canvas.height !== read.height) Object.assign(canvas, { width: read.width, height: read.height });
  const ctx = canvas.getContext("2d");
  const { pixels } = read;
  ctx.putImageData(new ImageData(new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.length), read.width, read.height), 0, 0);
  ctx.font = "bold 14px system-ui, sans-serif";
  const label = read.ok ? `frame ${read.frame}` : read.whole ? `WRONG FRAME ${read.frame} (want ${read.expected})` : "TORN";
  ctx.fillStyle = read.ok ? "rgba(0,0,0,0.6)" : "rgba(200,0,0,0.85)";
  ctx.fillRect(0, 0, ctx.measureText(label).width + 12, 22);
  ctx.fillStyle = "#fff";
  ctx.fillText(label, 6, 16);
}

/** A race side's text for the page's list. */
const sideText = (s) => `${s.agent}: ${s.call} ${s.write ? "write" : "read"} of ${s.buffer.name} [${s.range.offset}, +${s.range.length})` +
  (s.fence === null ? "" : ` (fence ${s.fence.context}:${s.fence.seqno})`);

export function raceMarks(report, count) {
  const place = (s) => ({ lane: s.agent.startsWith("device ") ? s.agent.slice("device ".length) : "cpu", startNs: s.startNs, endNs: s.endNs, text: sideText(s) });
  return report.races.slice(0, count).map((r, i) => ({ n: i + 1, a: place(r.a), b: place(r.b) }));
}

export function drawTimeline(canvas, bars, verdicts, buffers, races = []) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const sides = races.flatMap((r) => [r.a, r.b]);
  const spans = [...bars, ...sides];
  if (spans.length === 0) return [];
  const lanes = sides.some((s) => s.lane === "cpu") ? [...LANES, "cpu"] : LANES;
  const from = Math.min(...spans.map((b) => b.startNs));
  const to = Math.max(...spans.map((b) => b.endNs));
  const span = Math.max(to - from, 1);
  const x = (ns) => LABEL_W + ((ns - from) / span) * (width - LABEL_W - 4);
  const laneH = (height - AXIS_H) / lanes.length;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (const [i, name] of lanes.entries()) {
    const y = i * laneH;
    ctx.fillStyle = "#333";
    ctx.fillText(name, 4, y + laneH / 2);
    for (const b of bars) {
      if (b.lane !== name) continue;
      const x0 = x(b.startNs);
      const w = Math.max(1, x(b.endNs) - x0);
      ctx.fillStyle = slotColour(b.frame % buffers, buffers);
      ctx.fillRect(x0, y + 3, w, laneH - 6);
      const verdict = verdicts.get(b.frame);
      if (name === "display" && verdict !== undefined && !verdict.ok) {
        ctx.strokeStyle = verdict.whole ? "#e80" : "#d00";
        ctx.lineWidth = 2;
        ctx.strokeRect(x0, y + 3, w, laneH - 6);
      }
    }
  }
  // The races: each side outlined on its lane, the pair joined and numbered.
  const laneY = (lane) => Math.max(0, lanes.indexOf(lane)) * laneH;
  ctx.strokeStyle = "#d00";
  ctx.fillStyle = "#d00";
  ctx.lineWidth = 2;
  const boxes = [];
  for (const r of races) {
    const mid = [r.a, r.b].map((s) => {
      const x0 = x(s.startNs);
      const w = Math.max(3, x(s.endNs) - x0);
      ctx.strokeRect(x0, laneY(s.lane) + 1, w, laneH - 2);
      boxes.push({ n: r.n, x: x0, y: laneY(s.lane) + 1, w, h: laneH - 2, text: `${r.n}. ${r.a.text}  ×  ${r.b.text}` });
      return { cx: x0 + w / 2, cy: laneY(s.lane) + laneH / 2 };
    });
    ctx.beginPath();
    ctx.moveTo(mid[0].cx, mid[0].cy);
    ctx.lineTo(mid[1].cx, mid[1].cy);
    ctx.stroke();
    ctx.fillText(String(r.n), mid[0].cx + 3, mid[0].cy - laneH / 3);
  }
  ctx.fillStyle = "#555";
  ctx.textBaseline = "alphabetic";
  const ms = span / 1e6;
  const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100].find((s) => ms / s <= 8) ?? 200;
  for (let t = 0; t <= ms; t += step) {
    const px = x(from + t * 1e6);
    ctx.fillRect(px, height - AXIS_H, 1, 4);
    ctx.fillText(`${Number(t.toFixed(1))} ms`, px + 2, height - 4);
  }
  return boxes;
}

export function raceAt(boxes, x, y) {
  const hit = boxes.find((b) => x >= b.x - 2 && x <= b.x + b.w + 2 && y >= b.y && y <= b.y + b.h);
  return hit === undefined ? undefined : { n: hit.n, text: hit.text };
}

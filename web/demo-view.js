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
 *                               time axis in ms
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

export function drawTimeline(canvas, bars, verdicts, buffers) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  if (bars.length === 0) return;
  const from = Math.min(...bars.map((b) => b.startNs));
  const to = Math.max(...bars.map((b) => b.endNs));
  const span = Math.max(to - from, 1);
  const x = (ns) => LABEL_W + ((ns - from) / span) * (width - LABEL_W - 4);
  const laneH = (height - AXIS_H) / LANES.length;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (const [i, name] of LANES.entries()) {
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
  ctx.fillStyle = "#555";
  ctx.textBaseline = "alphabetic";
  const ms = span / 1e6;
  const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100].find((s) => ms / s <= 8) ?? 200;
  for (let t = 0; t <= ms; t += step) {
    const px = x(from + t * 1e6);
    ctx.fillRect(px, height - AXIS_H, 1, 4);
    ctx.fillText(`${Number(t.toFixed(1))} ms`, px + 2, height - 4);
  }
}

/*
 * The trace viewer (web/trace.html): draws a Chrome Trace Event file into a
 * canvas, the way a trace UI does, from the file alone.
 *   - a row per thread track (named by its thread_name metadata, in
 *     thread_sort_index order), its B/E slices stacked by depth and
 *     coloured by category, labelled where they are wide enough; async
 *     slices (b/e) in rows of their own under the thread's;
 *   - instants as ticks, flow arrows (s -> f) as curves from the waker's
 *     slice to the wait it woke, counters as step charts under the tracks;
 *   - a time axis in ms from the trace's first event.
 * showTrace(json, { fromMs, spanMs }) renders a trace (window.showTrace too);
 * body[data-state] becomes "drawn" with the counts in data attributes.
 */
const COLOURS = { fence: "#6a9fd8", rw: "#7cbf6b", job: "#e0a040", resv: "#c86ac8", ring: "#999", watchdog: "#d04040" };
const ROW_H = 15;
const LABEL_W = 150;
const COUNTER_H = 34;

function parse(trace) {
  const threads = new Map();
  const thread = (tid) => {
    let t = threads.get(tid);
    if (t === undefined) {
      t = { tid, name: `thread ${tid}`, sort: tid, slices: [], asyncSlices: [], instants: [], depth: 0 };
      threads.set(tid, t);
    }
    return t;
  };
  const stacks = new Map();
  const asyncOpen = new Map();
  const flows = new Map();
  const counters = new Map();
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const e of trace.traceEvents) {
    if (e.ph === "M") {
      if (e.name === "thread_name") thread(e.tid).name = e.args.name;
      if (e.name === "thread_sort_index") thread(e.tid).sort = e.args.sort_index;
      continue;
    }
    t0 = Math.min(t0, e.ts);
    t1 = Math.max(t1, e.ts);
    const t = e.tid === undefined ? undefined : thread(e.tid);
    if (e.ph === "B") {
      const stack = stacks.get(e.tid) ?? [];
      stacks.set(e.tid, stack);
      const s = { name: e.name, cat: e.cat, ts: e.ts, end: e.ts, depth: stack.length };
      stack.push(s);
      t.slices.push(s);
      t.depth = Math.max(t.depth, stack.length);
    } else if (e.ph === "E") {
      const s = stacks.get(e.tid)?.pop();
      if (s !== undefined) s.end = e.ts;
    } else if (e.ph === "b") {
      asyncOpen.set(`${e.cat}/${e.id}/${e.name}`, { name: e.name, cat: e.cat, ts: e.ts, end: e.ts, thread: t });
    } else if (e.ph === "e") {
      const key = `${e.cat}/${e.id}/${e.name}`;
      const s = asyncOpen.get(key);
      if (s !== undefined) {
        asyncOpen.delete(key);
        s.end = e.ts;
        s.thread.asyncSlices.push(s);
      }
    } else if (e.ph === "i") {
      t.instants.push({ name: e.name, cat: e.cat, ts: e.ts });
    } else if (e.ph === "s" || e.ph === "f") {
      const f = flows.get(e.id) ?? {};
      f[e.ph] = { tid: e.tid, ts: e.ts };
      flows.set(e.id, f);
    } else if (e.ph === "C") {
      const c = counters.get(e.name) ?? [];
      counters.set(e.name, c);
      c.push({ ts: e.ts, value: Object.values(e.args)[0] });
    }
  }
  // Async slices of a thread packed into as few rows as do not overlap.
  for (const t of threads.values()) {
    const ends = [];
    for (const s of t.asyncSlices.sort((a, b) => a.ts - b.ts)) {
      let row = ends.findIndex((end) => end <= s.ts);
      if (row < 0) row = ends.push(0) - 1;
      ends[row] = s.end;
      s.row = row;
    }
    t.asyncRows = ends.length;
  }
  const ordered = [...threads.values()].filter((t) => t.slices.length + t.asyncSlices.length + t.instants.length > 0)
    .sort((a, b) => a.sort - b.sort);
  return { threads: ordered, flows: [...flows.values()].filter((f) => f.s && f.f), counters, t0, t1 };
}

export function showTrace(trace, { fromMs = 0, spanMs } = {}) {
  const p = parse(trace);
  const canvas = document.getElementById("timeline");
  const from = p.t0 + fromMs * 1000;
  const to = spanMs === undefined ? p.t1 : Math.min(p.t1, from + spanMs * 1000);
  const width = canvas.width;
  const x = (ts) => LABEL_W + ((ts - from) / Math.max(to - from, 1e-3)) * (width - LABEL_W - 10);
  const rows = new Map();
  let y = 24;
  for (const t of p.threads) {
    rows.set(t.tid, { y, t });
    y += (t.depth + t.asyncRows) * ROW_H + 10;
  }
  const countersY = y;
  canvas.height = countersY + p.counters.size * COUNTER_H + 6;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, canvas.height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "middle";

  // Time axis.
  ctx.fillStyle = "#555";
  const ms = (to - from) / 1000;
  const step = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].find((s) => ms / s <= 12) ?? 2000;
  for (let t = 0; t <= ms; t += step) {
    const px = x(from + t * 1000);
    ctx.fillRect(px, 14, 1, canvas.height - 14);
    ctx.fillText(`${(fromMs + t).toFixed(step < 1 ? 2 : 0)} ms`, px + 2, 8);
  }
  ctx.fillStyle = "rgba(255,255,255,0.85)";
  ctx.fillRect(0, 0, LABEL_W - 4, canvas.height);

  const visible = (s) => s.end >= from && s.ts <= to;
  const bar = (s, top) => {
    const x0 = Math.max(LABEL_W, x(s.ts));
    const x1 = Math.min(width - 10, x(s.end));
    const w = Math.max(1, x1 - x0);
    ctx.fillStyle = COLOURS[s.cat] ?? "#aaa";
    ctx.fillRect(x0, top + 1, w, ROW_H - 2);
    if (w > 30) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(x0, top, w, ROW_H);
      ctx.clip();
      ctx.fillStyle = "#111";
      ctx.fillText(s.name, x0 + 2, top + ROW_H / 2);
      ctx.restore();
    }
  };
  let drawn = 0;
  for (const { y: top, t } of rows.values()) {
    ctx.fillStyle = "#222";
    ctx.fillText(t.name, 4, top + ROW_H / 2);
    ctx.fillStyle = "#eee";
    ctx.fillRect(LABEL_W, top + (t.depth + t.asyncRows) * ROW_H + 4, width - LABEL_W - 10, 1);
    for (const s of t.slices) if (visible(s)) { bar(s, top + s.depth * ROW_H); drawn++; }
    for (const s of t.asyncSlices) if (visible(s)) { bar(s, top + (t.depth + s.row) * ROW_H); drawn++; }
    ctx.fillStyle = "#333";
    for (const i of t.instants) if (i.ts >= from && i.ts <= to) ctx.fillRect(x(i.ts), top, 1, 5);
  }

  // Flows: from the waker's slice to the wait it woke.
  ctx.strokeStyle = "rgba(200, 40, 40, 0.75)";
  ctx.fillStyle = "rgba(200, 40, 40, 0.9)";
  ctx.lineWidth = 1.2;
  let arrows = 0;
  for (const f of p.flows) {
    if (f.s.ts > to || f.f.ts < from || f.s.ts < from) continue;
    const a = rows.get(f.s.tid);
    const b = rows.get(f.f.tid);
    if (a === undefined || b === undefined) continue;
    const [x0, y0, x1, y1] = [x(f.s.ts), a.y + ROW_H / 2, x(f.f.ts), b.y + ROW_H / 2];
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.bezierCurveTo(x0 + 12, y0, x1 - 12, y1, x1, y1);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(x1, y1, 2.5, 0, 2 * Math.PI);
    ctx.fill();
    arrows++;
  }

  // Counters: step charts.
  let cy = countersY;
  for (const [name, samples] of p.counters) {
    const max = Math.max(1, ...samples.map((s) => s.value));
    ctx.fillStyle = "#222";
    ctx.fillText(name, 4, cy + COUNTER_H / 2);
    ctx.strokeStyle = "#4a7";
    ctx.beginPath();
    let last = cy + COUNTER_H - 4;
    ctx.moveTo(LABEL_W, last);
    for (const s of samples) {
      if (s.ts < from || s.ts > to) continue;
      const yy = cy + COUNTER_H - 4 - (s.value / max) * (COUNTER_H - 10);
      ctx.lineTo(x(s.ts), last);
      ctx.lineTo(x(s.ts), yy);
      last = yy;
    }
    ctx.lineTo(width - 10, last);
    ctx.stroke();
    ctx.fillStyle = "#555";
    ctx.fillText(`max ${max}`, width - 60, cy + 6);
    cy += COUNTER_H;
  }

  document.getElementById("summary").textContent =
    `${p.threads.length} tracks, ${drawn} slices and ${arrows} flow arrows in view, ${p.counters.size} counters; ` +
    `${((to - from) / 1000).toFixed(2)} ms from ${fromMs.toFixed(2)} ms`;
  Object.assign(document.body.dataset, { state: "drawn", tracks: String(p.threads.length), slices: String(drawn), arrows: String(arrows) });
}

window.showTrace = showTrace;

const params = new URLSearchParams(location.search);
const view = { fromMs: Number(params.get("from") ?? 0), spanMs: params.has("span") ? Number(params.get("span")) : undefined };
document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (file !== undefined) showTrace(JSON.parse(await file.text()), view);
});

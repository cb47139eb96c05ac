/*
 * Section "demo io": runIoDemo() (what `dmabuf-lab demo io` runs) in this
 * page, in a lab of its own: a temporary file of the Origin Private File
 * System streamed by a storage device worker (io_uring READ_FIXED into
 * registered dma-bufs) and summed by a gpu device worker, ordered by
 * completions and fences, every block's sum checked against the file's. The
 * page's main thread may not block, so the demo polls its completion queue
 * between turns of the event loop. "run again" repeats it.
 *
 * window.__demoIo, for the browser tests: runs (finished), running, and of
 * the last run ok, blocks, checked, mismatched, mbPerSec; error (what
 * stopped it, if anything).
 */
import { Lab, runIoDemo } from "dmabuf-lab";

export const title = "demo io: a file → storage device → dma-bufs → gpu";

const OPTIONS = { sizeBytes: 4 << 20, blockBytes: 64 << 10, buffers: 4 };

export async function run(_pageLab, element) {
  const state = { runs: 0, running: false, ok: undefined, blocks: 0, checked: 0, mismatched: 0, mbPerSec: 0, error: undefined };
  window.__demoIo = state;
  element.insertAdjacentHTML("beforeend", `
    <div class="demo-io">
      <p>${OPTIONS.sizeBytes >> 20} MiB of an OPFS file in ${OPTIONS.blockBytes >> 10} KiB blocks through ${OPTIONS.buffers}
        registered dma-bufs; the gpu sums each block and every sum is checked against the file.</p>
      <button type="button" name="run-io">run again</button>
      <dl class="io-stats"></dl>
    </div>`);
  const $ = (selector) => element.querySelector(selector);
  const show = (rows) => $(".io-stats").replaceChildren(...rows.flatMap(([k, v]) => [
    Object.assign(document.createElement("dt"), { textContent: k }), Object.assign(document.createElement("dd"), { textContent: v })]));

  const once = async () => {
    state.running = true;
    $("button[name=run-io]").disabled = true;
    show([["status", "running..."]]);
    const lab = await Lab.create({ memoryBytes: 64 << 20 });
    try {
      const r = await runIoDemo(lab, OPTIONS);
      Object.assign(state, { ok: r.ok, blocks: r.blocks, checked: r.checked, mismatched: r.mismatched.length, mbPerSec: r.mbPerSec });
      const ms = (ns) => `${(ns / 1e6).toFixed(2)} ms`;
      show([
        ["blocks", `${r.blocks} of ${r.blockBytes >> 10} KiB in ${(r.elapsedMs / 1000).toFixed(2)} s: ${r.mbPerSec.toFixed(1)} MB/s`],
        ["read p50 / p99", `${ms(r.read.p50Ns)} / ${ms(r.read.p99Ns)} (submit → completion seen)`],
        ["gpu sum p50 / p99", `${ms(r.gpu.p50Ns)} / ${ms(r.gpu.p99Ns)} (submit → fence)`],
        ["devices", r.devices.map((d) => `${d.name} ${d.jobsDone} jobs`).join(", ")],
        ["integrity", r.ok ? `OK, ${r.checked} blocks checked against the file` : `FAILED: ${r.mismatched.length} blocks differ`],
      ]);
    } finally {
      lab.close();
      state.runs++;
      state.running = false;
      $("button[name=run-io]").disabled = false;
    }
  };
  const guarded = () => once().catch((e) => {
    state.error = e.stack ?? String(e);
    show([["error", state.error]]);
  });
  $("button[name=run-io]").addEventListener("click", () => void guarded());
  await guarded();
}

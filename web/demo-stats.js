/*
 * The demo page's running figures over the last WINDOW frames the pipeline
 * retired (runPipeline's FrameReports, ns on the lab clock):
 *   add(report)  keeps it (the oldest dropped past WINDOW)
 *   recent(n)    the last n reports, oldest first (the fence timeline's)
 *   fps()        frames per second between the first and last display fence
 *   latency()    end-to-end latency, submission -> display fence: p50, p99 (ms)
 * Empty or single-frame windows answer 0.
 */
const WINDOW = 240;

export class FrameStats {
  #frames = [];

  add(report) {
    this.#frames.push(report);
    if (this.#frames.length > WINDOW) this.#frames.shift();
  }

  recent(n) {
    return this.#frames.slice(-n);
  }

  fps() {
    const f = this.#frames;
    if (f.length < 2) return 0;
    const ns = f.at(-1).displayNs - f[0].displayNs;
    return ns > 0 ? ((f.length - 1) * 1e9) / ns : 0;
  }

  latency() {
    const ms = this.#frames.map((r) => (r.displayNs - r.submitNs) / 1e6).sort((a, b) => a - b);
    const at = (p) => (ms.length === 0 ? 0 : ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]);
    return { p50: at(0.5), p99: at(0.99) };
  }
}

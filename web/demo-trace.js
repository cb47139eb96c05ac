/*
 * The demo page's live trace: the lab's trace recorder (lab.trace, every
 * thread and device) read while the pipeline runs, turned into the bars the
 * fence timeline draws, and the whole session offered as Perfetto JSON.
 *
 *   const feed = new TraceFeed(lab)   starts a session (start())
 *   feed.poll()                       reads the events recorded since the last
 *                                     poll (lab.trace.read()); keeps each
 *                                     device's jobs of the last frames
 *   feed.bars(frames)                 the jobs of the last `frames` frames:
 *                                     { lane, frame, startNs, endNs }, from when
 *                                     the job's dependencies were satisfied to
 *                                     its end (its fence's signal)
 *   feed.download(name)               stops the session, saves its Chrome Trace
 *                                     Event JSON as a file, starts a new one
 *   feed.stop()                       ends the session
 * A session that has recorded ROTATE_EVENTS is ended and a new one started,
 * so that an endless run never fills the threads' trace buffers.
 */
import { chromeTrace } from "dmabuf-lab";

const T_JOB = 10; // src/trace/events.ts
const NOT_REACHED = 0xffffffff;
const ROTATE_EVENTS = 200_000;
const KEEP = 64;

export class TraceFeed {
  #lab;
  #jobs = new Map(); // lane -> jobs, oldest first
  #events = 0;
  /** Job events read from the trace since the feed started. */
  jobsSeen = 0;

  constructor(lab) {
    this.#lab = lab;
    lab.trace.start();
  }

  poll() {
    if (!this.#lab.trace.recording) return;
    for (const thread of this.#lab.trace.read()) {
      this.#events += thread.events.length;
      if (!thread.name.startsWith("device ")) continue;
      const lane = thread.name.slice("device ".length);
      const jobs = this.#jobs.get(lane) ?? [];
      this.#jobs.set(lane, jobs);
      for (const e of thread.events) {
        if (e.type !== T_JOB) continue;
        const [, seqno, , , depsNs] = e.args;
        // A device's k-th job of a run is frame k - 1 (each device gets one job per frame, in order).
        jobs.push({ lane, frame: seqno - 1, startNs: depsNs === NOT_REACHED ? e.t0 : e.t0 + depsNs, endNs: e.t1 });
        this.jobsSeen++;
      }
      jobs.splice(0, Math.max(0, jobs.length - KEEP));
    }
    if (this.#events > ROTATE_EVENTS) {
      this.#lab.trace.stop();
      this.#events = 0;
      this.#lab.trace.start();
    }
  }

  bars(frames) {
    const all = [...this.#jobs.values()].flat();
    if (all.length === 0) return [];
    const last = Math.max(...all.map((j) => j.frame));
    return all.filter((j) => j.frame > last - frames);
  }

  download(name) {
    const data = this.#lab.trace.stop();
    this.#events = 0;
    this.#lab.trace.start();
    const url = URL.createObjectURL(new Blob([JSON.stringify(chromeTrace(data))], { type: "application/json" }));
    const a = Object.assign(document.createElement("a"), { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    return data.threads.reduce((n, t) => n + t.events.length, 0);
  }

  stop() {
    if (this.#lab.trace.recording) this.#lab.trace.stop();
  }
}

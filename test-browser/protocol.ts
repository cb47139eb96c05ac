/*
 * What the browser test pages report, shared by the pages (which build it)
 * and the specs (which assert on it). A page sets window.__results once it
 * has run, or window.__error when it could not run at all. Each check of a
 * page is recorded on its own: a check that throws is {error: text}, so one
 * failure does not hide the others. The pages report observations (counts,
 * digests, errors as their fields); the specs decide what is right.
 */

/** A call that threw: the error's fields. A call that returned: its value. */
export type Outcome =
  | { threw: true; name: string; message: string; code?: string; errno?: number; syscall?: string }
  | { threw: false; returned: unknown };

export type Check<T> = T | { error: string };

export interface Environment {
  crossOriginIsolated: boolean;
  canBlock: boolean;
  userAgent: string;
}

export interface ConformanceResults {
  seed: number;
  /** An SQPOLL ring's NOP result, and whether closing it settled closed() (its SQ thread, a Web Worker, ended itself). */
  sqpollClose: Check<{ nop: number; closed: boolean; userBytesFreed: number }>;
  /** A storage device on an OPFS file: WRITE, READ and READ_FIXED results, digests, canaries, a misaligned read's res. */
  storageOpfs: Check<{
    name: string; wrote: number; read: number; fixedRead: number; misaligned: number; canaries: string;
    readDigest: number; fixedDigest: number; expectedDigest: number; removedAfterShutdown: boolean;
  }>;
  environment: Check<Environment>;
  /** The shipped lab-thread worker (dist/browser/workers/lab-thread.mjs) fills memory and checksums it. */
  labThread: Check<{ filledBytes: number; length: number; checksum: number; expectedChecksum: number }>;
  /** A fence signalled in worker A wakes a waitAsync on the main thread and a blocking wait in worker B. */
  fenceWake: Check<{
    waitersAtSignal: number; signalledBefore: boolean; mainLeft: number;
    workerLeft: number; workerStatus: number; status: number; waitersAfter: number;
  }>;
  /** pwrite in a worker, readAsync on the main thread; writeAsync on the main thread, pread in the worker. */
  uapiRw: Check<{
    workerWrote: number; mainRead: number; mainReadDigest: number; workerDataDigest: number; firstDifference: number;
    mainWrote: number; workerRead: number; workerReadDigest: number; mainDataDigest: number;
  }>;
  /** A worker's pread (blocking) and the main thread's readAsync wait for a write fence the main thread signals. */
  implicitSync: Check<{
    waitersAtSignal: number; mainSettledBeforeSignal: boolean; mainRead: number; mainDigest: number;
    workerRead: number; workerDigest: number; expectedDigest: number;
  }>;
  /** Blocking forms on the main thread with a pending fence, then after it signalled. */
  blockingOnMain: Check<{
    fenceWait: Outcome; syncFileWait: Outcome; resvWait: Outcome; read: Outcome; beginCpuAccess: Outcome;
    waitersAfterFailures: number; fenceWaitSignalled: Outcome; readSignalled: Outcome;
  }>;
  /** A non-coherent lab (simulated CPU cache): writeAsync then readAsync of a cached dma-buf. */
  nonCoherent: Check<{ coherent: boolean; wrote: number; read: number; digest: number; expectedDigest: number }>;
  /** The main thread's withLockAsync on a resv lock a worker holds: it waits, then gets it. */
  resvLockAsync: Check<{ acquiredAfterRelease: boolean; contended: number; acquisitions: number; agentReleasedNs: number }>;
  /** spawnLabThread on a worker URL that does not exist. */
  missingWorker: Check<Outcome>;
}

export interface IsolationResults {
  crossOriginIsolated: boolean;
  labCreate: Outcome;
}

/** The demo page's live state (web/demo.js): counters of the current run, the settings, the previous run's end. */
export interface DemoState {
  run: number;
  running: boolean;
  frames: number;
  torn: number;
  wrong: number;
  reads: number;
  readerTorn: number;
  readerWrong: number;
  drawn: number;
  fps: number;
  p50Ms: number;
  p99Ms: number;
  /** Device jobs the page read from the lab's live trace (its timeline's bars). */
  traceJobs: number;
  /** Events in the last trace downloaded. */
  traceDownloads: number;
  buffers: number;
  coherent: boolean;
  bypass: boolean;
  /** The race detector is on: each run is SANITIZED_FRAMES frames in a lab of its own, checked when it ends. */
  sanitize: boolean;
  /** Runs checked by the race detector so far, and the last one's race count and the races marked on its timeline. */
  sanitizedRuns: number;
  races: number;
  raceMarks: number;
  /** Each marked race side's centre on the race canvas, in canvas pixels. */
  raceSpots: { n: number; x: number; y: number }[];
  /** The race last clicked on the race canvas (1-based), 0 for none. */
  racePicked: number;
  lastRun?: { frames: number; devices: { name: string; state: string; error: number }[] };
  error?: string;
}

/** The demo io section's state (web/demo-io.js). */
export interface DemoIoState {
  runs: number;
  running: boolean;
  ok?: boolean;
  blocks: number;
  checked: number;
  mismatched: number;
  mbPerSec: number;
  error?: string;
}

declare global {
  interface Window {
    __results?: unknown;
    __error?: string;
    __demo?: DemoState;
    __demoIo?: DemoIoState;
  }
}

/** Runs fn and records what happened. */
export function outcome(fn: () => unknown): Outcome {
  try {
    return { threw: false, returned: fn() };
  } catch (e) {
    return thrown(e);
  }
}

export async function outcomeAsync(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { threw: false, returned: await fn() };
  } catch (e) {
    return thrown(e);
  }
}

function thrown(e: unknown): Outcome {
  const err = e as { name?: string; message?: string; code?: string; errno?: number; syscall?: string };
  return { threw: true, name: err.name ?? typeof e, message: err.message ?? String(e), code: err.code, errno: err.errno, syscall: err.syscall };
}

/** Sets window.__results to run()'s answer, or window.__error. */
export function report(run: () => Promise<unknown>): void {
  run().then(
    (results) => { window.__results = results; },
    (e: unknown) => { window.__error = e instanceof Error ? e.stack ?? e.message : String(e); },
  );
}

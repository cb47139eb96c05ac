/*
 * The wire types of the scaling benchmark's threads (bench/scale.ts <->
 * workers/bench-scale.ts): the thread's start-up data, its jobs and answers,
 * its comlink API, and the named words of the benchmark's control buffer.
 * Types and constants only: the worker's code stays in its bundle.
 */
import type { LabHandle } from "../src/lab.js";

/** Int32 indices of the benchmark's control words, each on its own cache line. */
export const SCALE_READY = 0;
export const SCALE_START = 16;
export const SCALE_STOP = 32;
export const SCALE_CONTROL_BYTES = 192;

export interface ScaleThreadData {
  handle: LabHandle;
  name: string;
  control: SharedArrayBuffer;
  /** This thread's own file for the fs peer (created here, unlinked by close() and by the benchmark). */
  shmFile: string;
  /** The largest operation, bytes: the user buffer and the file are this big. */
  maxBytes: number;
}

/**
 * uapi: Process.pwrite/pread on a dma-buf fd; uapi-full: the same with the
 * read/write fast path off (src/dmabuf/rw_fast.ts); fs: fs.writeSync/readSync
 * on the /dev/shm file.
 */
export type ScalePath = "uapi" | "uapi-full" | "fs";
export type ScaleOp = "pwrite" | "pread";

export interface ScaleJob {
  path: ScalePath;
  op: ScaleOp;
  bytes: number;
  /** Calls between two looks at the STOP word. */
  batch: number;
  /** START and STOP hold this value when the window opens and closes (unique per window). */
  generation: number;
  /** Bound of the wait for START, ms. */
  timeoutMs: number;
}

export interface ScaleRunResult {
  calls: number;
  elapsedMs: number;
}

export interface ScaleThreadApi {
  prepare(job: ScaleJob): void;
  run(job: ScaleJob): ScaleRunResult;
  close(): void;
}

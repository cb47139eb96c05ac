/*
 * The hand-off benchmark's wire types and payload (bench/handoff.ts, the
 * main side; workers/bench-handoff.ts, the consumer). One worker per path.
 *
 * Payload of round k: Int32 words, word 0 = k, word i = k * GOLDEN + i
 * (wrapping), so that a consumer that sees a stale, torn or short frame finds a word out
 * of place. The producer writes every word; the consumer checks every word.
 * Round -1 (word 0 = STOP_ROUND) ends a consumer's loop for one size.
 */

export const paths = ["raw", "postMessage", "postMessage-transfer", "comlink-transfer", "lab-rw", "lab-mmap-sync", "lab-queue"] as const;
export type HandoffPath = (typeof paths)[number];

export const STOP_ROUND = -1;
const GOLDEN = 0x9e3779b1;

/** raw path control words (Int32 indices into the control SharedArrayBuffer), each on its own cache line. */
export const RAW_SEQ = 0;
export const RAW_ACK = 16;
export const RAW_CTRL_WORDS = 32;

export interface HandoffData {
  path: HandoffPath;
  /** raw: the payload SharedArrayBuffer and the control words. */
  payload?: SharedArrayBuffer;
  ctrl?: SharedArrayBuffer;
  /** lab paths: the lab. */
  handle?: import("../src/lab.js").LabHandle;
  timeoutMs: number;
}

/** main -> worker, one per size: start consuming (lab paths: the queue's token; raw: the size). */
export interface HandoffStart {
  type: "start";
  bytes: number;
  queue?: import("../src/sync/flight.js").ShareToken<"queue">;
}

/** worker -> main after the stop round: rounds consumed and those whose check failed. */
export interface HandoffDone {
  type: "done";
  rounds: number;
  bad: number;
}

/** postMessage paths: main -> worker a frame, worker -> main its acknowledgement (with the buffer when transferred). */
export interface HandoffFrame {
  type: "frame";
  round: number;
  data?: ArrayBuffer;
}

/** The comlink path's API. */
export interface HandoffApi {
  check(round: number, data: ArrayBuffer): ArrayBuffer;
  /** Rounds checked and bad since the last call. */
  tally(): { rounds: number; bad: number };
}

/** Writes round k's payload into every word: word 0 is k. */
export function fillPayload(words: Int32Array, round: number): void {
  const base = Math.imul(round, GOLDEN);
  words[0] = round;
  for (let i = 1; i < words.length; i++) words[i] = (base + i) | 0;
}

/** Whether `words` is exactly round k's payload. */
export function checkPayload(words: Int32Array, round: number): boolean {
  if (words[0] !== round) return false;
  const base = Math.imul(round, GOLDEN);
  for (let i = 1; i < words.length; i++) if (words[i] !== ((base + i) | 0)) return false;
  return true;
}

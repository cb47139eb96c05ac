/*
 * The other thread of the sharing and buffer-queue tests. It attaches to the
 * lab, turns every token it was sent into its own object with lab.import(),
 * and then plays its part:
 *   "objects"   reads the dma-buf (through its own fd), writes `reply` at
 *               offset 4096, signals the fence, advances the sw_sync
 *               timeline by 1 and then waits for the sync_file (its point 1),
 *               counts the resv's fences;
 *   "consume"   acquires `frames` buffers from the queue, checks each one
 *               (word 0 the frame number, every word after it frame + i),
 *               reads it a second time through read() into a guarded
 *               destination, and releases it;
 *   "produce"   dequeues `frames` buffers and fills and queues each one.
 * Every wait is bounded by timeoutMs.
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import type { ShareToken } from "../../src/sync/flight.js";
import { runWorker } from "./protocol.js";

export interface SharePeerData {
  handle: LabHandle;
  action: "objects" | "consume" | "produce";
  tokens: Partial<Record<"buf" | "fence" | "syncFile" | "swSync" | "resv" | "queue", ShareToken>>;
  reply?: number;
  frames?: number;
  timeoutMs: number;
}

export interface SharePeerReport {
  type: "done";
  firstByte?: number;
  resvCount?: number;
  /** consume: the frame numbers seen, in order, and the frames whose check failed. */
  frames?: number[];
  bad?: number[];
  canariesIntact?: boolean;
}

/** Frame k: word 0 = k, word i = k + i. */
export function fillFrame(words: Int32Array, k: number): void {
  for (let i = 0; i < words.length; i++) words[i] = (k + i) | 0;
}

/** The frame number if `words` is one whole frame, else -1. */
export function checkFrame(words: Int32Array): number {
  const k = words[0];
  for (let i = 1; i < words.length; i++) if (words[i] !== ((k + i) | 0)) return -1;
  return k;
}

runWorker<SharePeerData, SharePeerReport>(async (d) => {
  const lab = await Lab.attach(d.handle);
  try {
    if (d.action === "objects") {
      const t = d.tokens as Required<SharePeerData["tokens"]>;
      using buf = lab.import(t.buf as ShareToken<"dma-buf">);
      const fence = lab.import(t.fence as ShareToken<"fence">);
      using syncFile = lab.import(t.syncFile as ShareToken<"sync_file">);
      using swSync = lab.import(t.swSync as ShareToken<"sw_sync">);
      using resv = lab.import(t.resv as ShareToken<"resv">);
      const one = new Uint8Array(1);
      buf.read(one, 0, { timeoutMs: d.timeoutMs });
      buf.write(new Uint8Array([d.reply!]), 4096, { timeoutMs: d.timeoutMs });
      fence.signal();
      fence.put();
      swSync.inc(1); // signals the shared sync_file's point 1
      if (!syncFile.wait(d.timeoutMs)) throw new Error("the shared sync_file never signalled");
      return { type: "done", firstByte: one[0], resvCount: resv.count };
    }
    using q = lab.import(d.tokens.queue as ShareToken<"queue">);
    const frames: number[] = [];
    const bad: number[] = [];
    let canariesIntact = true;
    const margin = 64;
    const copy = lab.alloc(q.size + 2 * margin, { zero: false });
    try {
      for (let n = 0; n < d.frames!; n++) {
        if (d.action === "produce") {
          const b = q.dequeue({ timeoutMs: d.timeoutMs });
          fillFrame(new Int32Array(b.view.buffer, b.view.byteOffset, b.view.length >> 2), n);
          q.queue(b);
          continue;
        }
        const b = q.acquire({ timeoutMs: d.timeoutMs });
        const k = checkFrame(new Int32Array(b.view.buffer, b.view.byteOffset, b.view.length >> 2));
        frames.push(k);
        if (k !== n) bad.push(n);
        // The read/write path into a destination with canaries either side.
        copy.fill(0xa5);
        b.buf.read(copy.subarray(margin, margin + q.size), 0, { timeoutMs: d.timeoutMs });
        if (copy.subarray(0, margin).some((x) => x !== 0xa5) || copy.subarray(margin + q.size).some((x) => x !== 0xa5)) canariesIntact = false;
        const again = copy.subarray(margin, margin + q.size);
        if (checkFrame(new Int32Array(again.buffer, again.byteOffset, again.length >> 2)) !== n) bad.push(n);
        q.release(b);
      }
    } finally {
      lab.free(copy);
    }
    return { type: "done", frames, bad, canariesIntact };
  } finally {
    lab.close();
  }
});

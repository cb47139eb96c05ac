/*
 * The consumer of the hand-off benchmark (bench/handoff.ts, `dmabuf-lab
 * bench handoff`), bundled to build/workers/bench-handoff.mjs. One worker per
 * path (workerData: HandoffData); for each payload size the main thread
 * sends {type:"start", bytes, queue?}, produces rounds 0, 1, 2, ... and ends
 * with the stop round; the worker checks every word of every round and
 * answers {type:"done", rounds, bad}. The acknowledgement of a round is the
 * path's own: the raw path's ACK word, a message back, comlink's return
 * value, the queue's release().
 * Blocking waits are bounded by timeoutMs (a lost round fails the run).
 */
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { parentPort, workerData } from "node:worker_threads";
import { Lab } from "../src/api/lab.js";
import type { BufferQueue } from "../src/api/queue.js";
import {
  RAW_ACK, RAW_SEQ, STOP_ROUND, checkPayload, type HandoffApi, type HandoffData, type HandoffDone, type HandoffFrame, type HandoffStart,
} from "../bench/handoff_protocol.js";

const data = workerData as HandoffData;
const port = parentPort!;
const words = (v: Uint8Array): Int32Array => new Int32Array(v.buffer, v.byteOffset, v.byteLength >> 2);

/** raw: Atomics.wait for the next SEQ, check, store ACK and notify. */
function consumeRaw(bytes: number): HandoffDone {
  const ctrl = new Int32Array(data.ctrl!);
  const payload = new Int32Array(data.payload!, 0, bytes >> 2);
  let rounds = 0, bad = 0;
  for (let last = STOP_ROUND; ;) {
    if (Atomics.wait(ctrl, RAW_SEQ, last, data.timeoutMs) === "timed-out" && Atomics.load(ctrl, RAW_SEQ) === last) {
      throw new Error(`raw: no round after ${last} within ${data.timeoutMs} ms`);
    }
    const k = Atomics.load(ctrl, RAW_SEQ);
    if (k === last) continue;
    if (payload[0] === STOP_ROUND) return { type: "done", rounds, bad };
    if (!checkPayload(payload, rounds)) bad++;
    rounds++;
    last = k;
    Atomics.store(ctrl, RAW_ACK, k);
    Atomics.notify(ctrl, RAW_ACK);
  }
}

/** The lab paths: acquire, check (through the mapping, read(), or SYNC and the mapping), release. */
function consumeQueue(lab: Lab, q: BufferQueue, path: HandoffData["path"], bytes: number): HandoffDone {
  const staging = path === "lab-rw" ? lab.alloc(bytes, { zero: false }) : null;
  const wait = { timeoutMs: data.timeoutMs };
  // The payload's words per buffer, made once: nothing is allocated per round.
  const payloads = new Map<number, Int32Array>();
  let rounds = 0, bad = 0;
  try {
    for (;;) {
      const b = q.acquire(wait);
      let w = payloads.get(b.index);
      if (w === undefined) payloads.set(b.index, w = words((staging ?? b.view).subarray(0, bytes)));
      if (staging !== null) b.buf.read(staging, 0, wait);
      else if (path === "lab-mmap-sync") b.buf.beginCpuAccess("read", data.timeoutMs);
      const stop = w[0] === STOP_ROUND;
      if (!stop && !checkPayload(w, rounds)) bad++;
      if (path === "lab-mmap-sync") b.buf.endCpuAccess("read");
      q.release(b);
      if (stop) return { type: "done", rounds, bad };
      rounds++;
    }
  } finally {
    if (staging !== null) lab.free(staging);
  }
}

async function main(): Promise<void> {
  if (data.path === "comlink-transfer") {
    let rounds = 0, bad = 0;
    const api: HandoffApi = {
      check(round, buf) {
        if (!checkPayload(new Int32Array(buf), round)) bad++;
        rounds++;
        return Comlink.transfer(buf, [buf]);
      },
      tally() {
        const t = { rounds, bad };
        rounds = bad = 0;
        return t;
      },
    };
    Comlink.expose(api, nodeEndpoint(port));
    return;
  }
  const lab = data.handle !== undefined ? await Lab.attach(data.handle) : null;
  let rounds = 0, bad = 0;
  port.on("message", (m: HandoffStart | HandoffFrame) => {
    try {
      if (m.type === "frame") {
        // The postMessage paths: check, acknowledge (handing the buffer back when it was transferred).
        if (m.round === STOP_ROUND) {
          port.postMessage({ type: "done", rounds, bad } satisfies HandoffDone);
          rounds = bad = 0;
          return;
        }
        if (!checkPayload(new Int32Array(m.data!), m.round)) bad++;
        rounds++;
        if (data.path === "postMessage-transfer") port.postMessage({ type: "frame", round: m.round, data: m.data } satisfies HandoffFrame, [m.data!]);
        else port.postMessage({ type: "frame", round: m.round } satisfies HandoffFrame);
        return;
      }
      if (data.path === "raw") {
        port.postMessage(consumeRaw(m.bytes));
        return;
      }
      const q = lab!.import(m.queue!);
      try {
        port.postMessage(consumeQueue(lab!, q, data.path, m.bytes));
      } finally {
        q.close();
      }
    } catch (e) {
      port.postMessage({ type: "error", message: e instanceof Error ? e.stack ?? e.message : String(e) });
    }
  });
  port.postMessage({ type: "ready" });
}

main().catch((e: unknown) => port.postMessage({ type: "error", message: e instanceof Error ? e.stack ?? e.message : String(e) }));

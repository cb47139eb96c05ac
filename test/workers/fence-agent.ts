/*
 * A test worker (bundled to build/test-workers/fence-agent.mjs) that does
 * fence operations in its own thread on command, for test/sync-fence.test.ts
 * and test/sync-wasm.test.ts.
 *
 * It attaches to the lab (workerData: FenceAgentData), posts {type:"ready"},
 * then answers each FenceAgentRequest {id, op, ...} with
 * {type:"reply", id, result} or {type:"error", id, message}, one at a time,
 * in order. Fences cross as arena offsets; the agent takes its own reference
 * (sync.fenceAt) for the length of an operation and puts it after, except
 * "callback" and "timer-signal", which keep theirs until the callback has
 * run or the timer fired; the wasm operations pass the bare offset to the
 * engine (the main thread holds the fence). Blocking
 * operations (wait, wasm-wait, alternate) block this thread only, always
 * with a timeout. Events that come later (a callback running, a timer
 * firing) arrive as {type:"event", ...}.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import vm from "node:vm";
import v8 from "node:v8";
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import type { Fence } from "../../src/sync/fence.js";
import { errorText } from "./protocol.js";

export interface FenceAgentData {
  handle: LabHandle;
  name: string;
}

export type FenceAgentRequest = { id: number } & (
  /** checkAndSignal (signal() when `strict`); result: SignalResult. */
  | { op: "signal"; offset: number; error?: number; strict?: boolean }
  /** Fence.wait(timeoutMs) (a FenceArray's for an array); result: WaitResult. */
  | { op: "wait"; offset: number; timeoutMs: number }
  /** Adds a callback; result: {added: true} or the error code. Event "callback" when it runs. */
  | { op: "callback"; offset: number }
  /** How often this agent's callbacks on `offset` have run so far. */
  | { op: "callback-count"; offset: number }
  /** Replies at once; after delayMs (setTimeout) signals, sets fired[0] = 1 and posts event "fired". */
  | { op: "timer-signal"; offset: number; delayMs: number; fired: Int32Array }
  /** engine.wasm.fence_signal(offset, error, now); result: the return code. */
  | { op: "wasm-signal"; offset: number; error: number }
  /** engine.wasm.fence_wait(offset, timeoutNs); result: WasmWaitResult. */
  | { op: "wasm-wait"; offset: number; timeoutNs: bigint }
  /** allocContext(n) for each n in counts, in order; result: the first contexts. */
  | { op: "contexts"; counts: number[] }
  /**
   * Alternating turns over fences[]: this agent signals the odd ones. It
   * waits (bounded spin, then Atomics.wait) for turn[0] == k, signals
   * fence k, stores k + 1 and notifies. Result: the number it signalled.
   */
  | { op: "alternate"; offsets: number[]; turn: Int32Array; timeoutMs: number }
  /** Takes a reference in a view it drops unput, then collects garbage until the refcount falls back. */
  | { op: "gc-drop"; offset: number; attempts: number }
);

export interface SignalResult {
  /** checkAndSignal's answer: the fence was signalled before (this call lost). */
  already: boolean;
  /** With strict: the error code signal() threw. */
  code?: string;
  status: number;
  timestampNs: number;
}

export interface WaitResult {
  left: number;
  status: number;
  /** The thread that waited. */
  threadId: number;
}

export interface WasmWaitResult {
  rc: number;
  threadId: number;
}

export interface GcDropResult {
  refcountWithView: number;
  refcountAfter: number;
  attempts: number;
}

export type FenceAgentEvent =
  | { type: "event"; name: "callback"; offset: number; threadId: number; calls: number; status: number }
  | { type: "event"; name: "fired"; offset: number; status: number };

const data = workerData as FenceAgentData;
const lab = await Lab.attach(data.handle);
const { sync } = lab;
const callbackCalls = new Map<number, number>();

function withFence<T>(offset: number, fn: (f: Fence) => T): T {
  const f = sync.fenceAt(offset);
  try {
    return fn(f);
  } finally {
    f.put();
  }
}

/** Waits (bounded spin, then Atomics.wait) until word 0 of `turn` is `value`; false at the deadline. */
function awaitTurn(turn: Int32Array, value: number, deadline: number): boolean {
  for (let spin = 0; spin < 100_000; spin++) if (Atomics.load(turn, 0) === value) return true;
  for (;;) {
    const now = Atomics.load(turn, 0);
    if (now === value) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(turn, 0, now, left);
  }
}

async function handle(req: FenceAgentRequest): Promise<unknown> {
  switch (req.op) {
    case "signal":
      return withFence(req.offset, (f): SignalResult => {
        if (req.strict) {
          try {
            f.signal(req.error ?? 0);
            return { already: false, status: f.status, timestampNs: f.timestampNs };
          } catch (e) {
            if (!(e instanceof DmaBufError)) throw e;
            return { already: true, code: e.code, status: f.status, timestampNs: f.timestampNs };
          }
        }
        const already = f.checkAndSignal(req.error ?? 0);
        return { already, status: f.status, timestampNs: f.timestampNs };
      });
    case "wait":
      return withFence(req.offset, (f): WaitResult => ({ left: f.wait(req.timeoutMs), status: f.status, threadId }));
    case "callback": {
      const f = sync.fenceAt(req.offset);
      callbackCalls.set(req.offset, 0);
      try {
        f.addCallback((g) => {
          const calls = (callbackCalls.get(req.offset) ?? 0) + 1;
          callbackCalls.set(req.offset, calls);
          const event: FenceAgentEvent = { type: "event", name: "callback", offset: g.offset, threadId, calls, status: g.status };
          parentPort!.postMessage(event);
          f.put();
        });
      } catch (e) {
        f.put();
        if (e instanceof DmaBufError) return { added: false, code: e.code };
        throw e;
      }
      return { added: true };
    }
    case "callback-count":
      return callbackCalls.get(req.offset) ?? 0;
    case "timer-signal": {
      const f = sync.fenceAt(req.offset);
      setTimeout(() => {
        f.checkAndSignal();
        Atomics.store(req.fired, 0, 1);
        const event: FenceAgentEvent = { type: "event", name: "fired", offset: f.offset, status: f.status };
        parentPort!.postMessage(event);
        f.put();
      }, req.delayMs);
      return { armed: true };
    }
    case "wasm-signal":
      return lab.engine.wasm.fence_signal(req.offset, req.error, sync.clock.nowNs());
    case "wasm-wait":
      return { rc: lab.engine.wasm.fence_wait(req.offset, req.timeoutNs), threadId } satisfies WasmWaitResult;
    case "contexts":
      return req.counts.map((n) => sync.allocContext(n));
    case "alternate": {
      const deadline = performance.now() + req.timeoutMs;
      let signalled = 0;
      for (let k = 1; k < req.offsets.length; k += 2) {
        if (!awaitTurn(req.turn, k, deadline)) throw new Error(`${data.name}: turn ${k} never came (turn is ${Atomics.load(req.turn, 0)})`);
        withFence(req.offsets[k], (f) => f.signal());
        signalled++;
        Atomics.store(req.turn, 0, k + 1);
        Atomics.notify(req.turn, 0);
      }
      return signalled;
    }
    case "gc-drop": {
      v8.setFlagsFromString("--expose-gc");
      const gc = vm.runInNewContext("gc") as () => void;
      const refcountWithView = ((): number => {
        const dropped = sync.fenceAt(req.offset); // owned, never put
        return dropped.refcount;
      })();
      let attempts = 0;
      const refcount = () => withFence(req.offset, (f) => f.refcount - 1);
      while (refcount() >= refcountWithView && attempts < req.attempts) {
        attempts++;
        gc();
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      return { refcountWithView, refcountAfter: refcount(), attempts } satisfies GcDropResult;
    }
  }
}

// Requests are handled one at a time, in order.
let queue = Promise.resolve();
parentPort!.on("message", (req: FenceAgentRequest) => {
  queue = queue.then(async () => {
    try {
      parentPort!.postMessage({ type: "reply", id: req.id, result: await handle(req) });
    } catch (e) {
      parentPort!.postMessage({ type: "error", id: req.id, message: errorText(e) });
    }
  });
});
parentPort!.postMessage({ type: "ready", threadId });

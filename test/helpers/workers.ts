/*
 * Worker threads in tests, main-thread side.
 *
 * WorkerSet: every worker (or lab thread) a test file starts goes into its
 * set; terminateAll() ends every one, waits for all of them, and only then
 * reports the first termination that failed. Call it in afterEach (before
 * closing the labs the workers use), and wherever a test must stop its
 * workers early (in a finally, so that it also runs when an assertion fails).
 *
 * Inbox: the messages of one plain worker, collected from the moment it is
 * started so that none is missed. next(type, ms) takes the next message,
 * which must be of that type; it rejects after ms, and as soon as the worker
 * posts {type: "error", message}, emits "error" or exits (messages that came
 * before still come first).
 *
 * Waiter: the bounded wait under both Inbox.next() and FenceAgent.event():
 * until(take, failed, ms, what) resolves with take()'s first answer (tried
 * again at each wake()), rejects with failed()'s error once there is one, or
 * after ms.
 *
 * The worker side of this protocol ("ready", the start flag, one report or
 * an "error" message) is test/workers/protocol.ts.
 */
import { Worker } from "node:worker_threads";
import { expect } from "vitest";
import { artifactUrl } from "../../src/engine/artifacts.js";

export interface Message {
  type: string;
  message?: string;
}

export class Waiter {
  private wakeUp: (() => void) | undefined;

  /** Ends the current sleep of until(), so that it tries again. */
  wake(): void {
    this.wakeUp?.();
  }

  async until<T>(take: () => T | undefined, failed: () => Error | undefined, ms: number, what: string): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = take();
      if (got !== undefined) return got;
      const failure = failed();
      if (failure) throw failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what} within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wakeUp = () => { clearTimeout(timer); resolve(); };
      });
      this.wakeUp = undefined;
    }
  }
}

export class Inbox {
  private readonly queue: Message[] = [];
  private failure: Error | undefined;
  private readonly waiter = new Waiter();

  constructor(readonly worker: Worker, readonly name: string) {
    worker.on("message", (m: Message) => {
      if (m.type === "error") this.failure ??= new Error(`${name}: ${m.message}`);
      else this.queue.push(m);
      this.waiter.wake();
    });
    worker.on("error", (e: Error) => { this.failure ??= e; this.waiter.wake(); });
    worker.on("exit", (code: number) => { this.failure ??= new Error(`${name} exited with code ${code}`); this.waiter.wake(); });
  }

  /** The next message, which must be of this type; rejects after ms, or once the worker failed. */
  async next<T extends { type: string } = Message>(type: T["type"], ms: number): Promise<T> {
    const m = await this.waiter.until(() => this.queue.shift(), () => this.failure, ms, `${this.name}: no '${type}' message`);
    expect(m.type, `${this.name}'s message`).toBe(type);
    return m as T;
  }
}

/** Anything that can be terminated: a Worker, a LabThread. */
export interface Terminable {
  terminate(): Promise<unknown>;
}

export class WorkerSet {
  private readonly live: Terminable[] = [];

  /** Registers t for terminateAll() and returns it. */
  track<T extends Terminable>(t: T): T {
    this.live.push(t);
    return t;
  }

  /** Registers a worker started elsewhere (an eval worker, say) and returns an Inbox over its messages. */
  inbox(worker: Worker, name: string): Inbox {
    return new Inbox(this.track(worker), name);
  }

  /** Starts the test worker build/test-workers/ENTRY.mjs (from test/workers/ENTRY.ts). */
  start(entry: string, name: string, workerData: unknown): Inbox {
    return this.inbox(new Worker(artifactUrl(`test-workers/${entry}.mjs`), { workerData, name }), name);
  }

  /** Terminates every registered worker; all are waited for before the first failure is thrown. */
  async terminateAll(): Promise<void> {
    const settled = await Promise.allSettled(this.live.splice(0).map((t) => t.terminate()));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
  }
}

/** Waits for every worker's "ready", then sets word 0 of `start` and wakes them all at once. */
export async function releaseAll(boxes: Inbox[], start: Int32Array, ms: number): Promise<void> {
  await Promise.all(boxes.map((b) => b.next("ready", ms)));
  Atomics.store(start, 0, 1);
  Atomics.notify(start, 0);
}

/** Every worker's "done" report, in order; the first failure (an "error" message, a crash, the timeout) rejects. */
export function reports<T extends { type: "done" }>(boxes: Inbox[], ms: number): Promise<T[]> {
  return Promise.all(boxes.map((b) => b.next<T>("done", ms)));
}

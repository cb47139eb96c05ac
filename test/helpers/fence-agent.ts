/*
 * The main thread's side of a fence-agent worker (test/workers/fence-agent.ts),
 * for test/sync-fence.test.ts and test/sync-wasm.test.ts.
 *
 * FenceAgent.start() starts the worker (registered in the caller's WorkerSet,
 * so that afterEach terminates it) and resolves once it is ready; it rejects
 * if the worker fails first or is not ready within `ms`. request() sends one
 * operation and resolves with its result; it rejects with the worker's error
 * message, after `ms`, or as soon as the worker fails (an "error" event, an
 * exit, or a message this protocol does not know). Events the worker posts
 * later are kept in order: event(name) takes the first of that name, waiting
 * at most `ms`. `log` lists what arrived, in order: "event:NAME" and
 * "reply:OP".
 */
import { Worker } from "node:worker_threads";
import type { Lab } from "../../src/api/lab.js";
import { artifactUrl } from "../../src/engine/artifacts.js";
import type { FenceAgentEvent, FenceAgentRequest } from "../workers/fence-agent.js";
import { within } from "./waits.js";
import { Waiter, type WorkerSet } from "./workers.js";

/** The default bound of starting, of one request and of waiting for an event. */
export const AGENT_WAIT_MS = 20_000;

export type AgentOp = FenceAgentRequest extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never;

interface AgentMessage {
  type: string;
  id?: number;
  result?: unknown;
  message?: string;
  threadId?: number;
}

export class FenceAgent {
  threadId = -1;
  /** What arrived, in order: "event:NAME" and "reply:OP". */
  readonly log: string[] = [];
  private serial = 0;
  private readonly ops = new Map<number, string>();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly events: FenceAgentEvent[] = [];
  private readonly waiter = new Waiter();
  private failure: Error | undefined;
  private onFail: ((e: Error) => void) | undefined;
  private readonly ready: Promise<void>;

  private constructor(readonly worker: Worker, readonly name: string) {
    let ready!: () => void;
    this.ready = new Promise<void>((resolve) => { ready = resolve; });
    worker.on("message", (m: AgentMessage) => {
      if (m.type === "ready") {
        this.threadId = m.threadId!;
        ready();
      } else if (m.type === "reply" || m.type === "error") {
        const p = this.pending.get(m.id!);
        this.pending.delete(m.id!);
        if (m.type === "reply") {
          this.log.push(`reply:${this.ops.get(m.id!)}`);
          p?.resolve(m.result);
        } else {
          p?.reject(new Error(`${name}: ${m.message}`));
        }
      } else if (m.type === "event") {
        const event = m as unknown as FenceAgentEvent;
        this.log.push(`event:${event.name}`);
        this.events.push(event);
        this.waiter.wake();
      } else {
        this.fail(new Error(`${name}: unexpected message ${JSON.stringify(m)}`));
      }
    });
    worker.on("error", (e: Error) => this.fail(e));
    worker.on("exit", (code: number) => this.fail(new Error(`${name} exited with code ${code}`)));
  }

  static async start(workers: WorkerSet, lab: Lab, name: string, ms = AGENT_WAIT_MS): Promise<FenceAgent> {
    const worker = workers.track(new Worker(artifactUrl("test-workers/fence-agent.mjs"), { workerData: { handle: lab.share(), name }, name }));
    const agent = new FenceAgent(worker, name);
    await within(Promise.race([agent.ready, new Promise<never>((_, reject) => { agent.onFail = reject; })]), ms, `${name} start`);
    return agent;
  }

  static startAll(workers: WorkerSet, lab: Lab, names: string[], ms = AGENT_WAIT_MS): Promise<FenceAgent[]> {
    return Promise.all(names.map((n) => FenceAgent.start(workers, lab, n, ms)));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.onFail?.(e);
    this.waiter.wake();
  }

  request<T>(op: AgentOp, ms = AGENT_WAIT_MS): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = ++this.serial;
    this.ops.set(id, op.op);
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.worker.postMessage({ ...op, id });
    return within(reply, ms, `${this.name} ${op.op}`);
  }

  event(name: FenceAgentEvent["name"], ms = AGENT_WAIT_MS): Promise<FenceAgentEvent> {
    const take = (): FenceAgentEvent | undefined => {
      const i = this.events.findIndex((e) => e.name === name);
      return i >= 0 ? this.events.splice(i, 1)[0] : undefined;
    };
    return this.waiter.until(take, () => this.failure, ms, `${this.name}: no '${name}' event`);
  }
}

/*
 * Fence containers signal their callbacks, as the kernel's do: an array's
 * from its children's callbacks (dma_fence_array_cb_func, then
 * dma_fence_array_signal), a chain node's from its fence's
 * (dma_fence_chain_cb). The lab evaluates containers instead of signalling
 * them; these tests check every path a user observes without waiting on the
 * container itself: callbacks (in the signalling thread, inside signal(); in
 * another thread, from its event loop), poll of a sync_file holding an array,
 * waitAsync, timestamps. Cross-thread tests use a real worker (fence-agent),
 * every wait bounded, nothing assuming the two threads run in parallel.
 */
import { describe, expect, test } from "vitest";
import type { Fence, Lab } from "../src/index.js";
import { Process, type PollFd } from "../src/uapi/process.js";
import { SyncFileFile, installSyncFile } from "../src/uapi/sync_file_file.js";
import { POLLIN } from "../src/uapi/uapi.js";
import { SyncFile } from "../src/sync/sync_file.js";
import { FenceAgent } from "./helpers/fence-agent.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { until, within } from "./helpers/waits.js";
import { WorkerSet } from "./helpers/workers.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const EIO = -5;

const workers = new WorkerSet();
const labs = new LabSet({ memoryBytes: 16 * MiB });
cleanUpAfterEach({ workers, labs });

function fences(lab: Lab, n: number): Fence[] {
  const tl = lab.sync.timeline({ driver: "mock", name: "containers" });
  try {
    return Array.from({ length: n }, () => tl.createFence());
  } finally {
    tl.unref();
  }
}

/** A callback that records each call's status. */
function recorder(): { calls: number[]; cb: (f: Fence) => void } {
  const calls: number[] = [];
  return { calls, cb: (f) => calls.push(f.status) };
}

describe("dma_fence_array_cb_func: an array's callbacks run when the array signals", () => {
  test("signal on all: inside the signal() of the last child, once", async () => {
    const lab = await labs.create();
    const [a, b, c] = fences(lab, 3);
    const array = lab.sync.array([a, b, c]);
    const r = recorder();
    array.addCallback(r.cb);
    a.signal();
    c.signal();
    expect(r.calls).toEqual([]);
    b.signal();
    expect(r.calls).toEqual([1]);
    expect(array.isSignaled()).toBe(true);
    expect(array.timestampNs).toBe(Math.max(a.timestampNs, b.timestampNs, c.timestampNs));
    expect(() => array.addCallback(r.cb)).toThrow(/already signalled/);
    expect(r.calls).toEqual([1]);
    for (const f of [array, a, b, c]) f.put();
  });

  test("signal on any: inside the signal() of the first child, with its status", async () => {
    const lab = await labs.create();
    const [a, b] = fences(lab, 2);
    const array = lab.sync.array([a, b], true);
    const r = recorder();
    array.addCallback(r.cb);
    b.signal(EIO);
    expect(r.calls).toEqual([EIO]);
    a.signal();
    expect(r.calls).toEqual([EIO]);
    for (const f of [array, a, b]) f.put();
  });

  test("a child's error is the array's status when its callbacks run", async () => {
    const lab = await labs.create();
    const [a, b] = fences(lab, 2);
    const array = lab.sync.array([a, b]);
    const r = recorder();
    array.addCallback(r.cb);
    a.signal(EIO);
    b.signal();
    expect(r.calls).toEqual([EIO]);
    for (const f of [array, a, b]) f.put();
  });

  test("a removed callback does not run; the others do", async () => {
    const lab = await labs.create();
    const [a] = fences(lab, 1);
    const array = lab.sync.array([a]);
    const kept = recorder();
    const removed = recorder();
    array.addCallback(removed.cb);
    array.addCallback(kept.cb);
    expect(array.removeCallback(removed.cb)).toBe(true);
    a.signal();
    expect(kept.calls).toEqual([1]);
    expect(removed.calls).toEqual([]);
    expect(array.removeCallback(kept.cb)).toBe(false);
    for (const f of [array, a]) f.put();
  });
});

describe("dma_fence_chain_cb: a chain node's callbacks run when the node signals", () => {
  test("a node signals when its fence and every earlier node's have, in any order", async () => {
    const lab = await labs.create();
    const [f1, f2, f3] = fences(lab, 3);
    const n1 = lab.sync.chain(null, f1, 1n);
    const n2 = lab.sync.chain(n1, f2, 2n);
    const n3 = lab.sync.chain(n2, f3, 3n);
    const r2 = recorder();
    const r3 = recorder();
    n2.addCallback(r2.cb);
    n3.addCallback(r3.cb);
    f3.signal();
    f2.signal();
    expect([r2.calls, r3.calls]).toEqual([[], []]);
    f1.signal();
    expect([r2.calls, r3.calls]).toEqual([[1], [1]]);
    for (const f of [n3, n2, n1, f1, f2, f3]) f.put();
  });
});

describe("containers signalled from another thread", () => {
  test("main's callbacks on an array (all, any) and a chain run from its event loop when a worker signals the children", async () => {
    const lab = await labs.create();
    const agent = await FenceAgent.start(workers, lab, "container-signaller", WAIT_MS);
    const [a, b, c, d] = fences(lab, 4);
    const all = lab.sync.array([a, b]);
    const any = lab.sync.array([c, d], true);
    const node1 = lab.sync.chain(null, a, 1n);
    const node2 = lab.sync.chain(node1, c, 2n);
    const calls = { all: recorder(), any: recorder(), chain: recorder() };
    all.addCallback(calls.all.cb);
    any.addCallback(calls.any.cb);
    node2.addCallback(calls.chain.cb);
    await agent.request({ op: "signal", offset: d.offset });
    await until(() => calls.any.calls.length > 0, WAIT_MS, "the signal-on-any array's callback");
    await agent.request({ op: "signal", offset: a.offset });
    await agent.request({ op: "signal", offset: b.offset });
    await until(() => calls.all.calls.length > 0, WAIT_MS, "the array's callback");
    await agent.request({ op: "signal", offset: c.offset });
    await until(() => calls.chain.calls.length > 0, WAIT_MS, "the chain node's callback");
    expect([calls.all.calls, calls.any.calls, calls.chain.calls]).toEqual([[1], [1], [1]]);
    expect(lab.sync.callbacks.size).toBe(0);
    for (const f of [node2, node1, all, any, a, b, c, d]) f.put();
  });

  test("a worker's callback on an array runs in the worker when main signals the last child", async () => {
    const lab = await labs.create();
    const agent = await FenceAgent.start(workers, lab, "container-listener", WAIT_MS);
    const [a, b] = fences(lab, 2);
    const array = lab.sync.array([a, b]);
    expect(await agent.request({ op: "callback", offset: array.offset })).toEqual({ added: true });
    a.signal();
    b.signal();
    const e = await agent.event("callback");
    expect(e).toMatchObject({ offset: array.offset, calls: 1, status: 1, threadId: agent.threadId });
    for (const f of [array, a, b]) f.put();
  });

  test("waitAsync on an array resolves, and a sync_file holding one polls ready, when a worker signals the children", async () => {
    const lab = await labs.create();
    const agent = await FenceAgent.start(workers, lab, "container-poll", WAIT_MS);
    const proc = new Process(lab);
    const [a, b] = fences(lab, 2);
    const array = lab.sync.array([a, b]);
    const fd = installSyncFile(proc, () => new SyncFile(lab.sync, array));
    expect((proc.file(fd) as SyncFileFile).syncFile.fence.is(array)).toBe(true);
    const pfd: PollFd = { fd, events: POLLIN };
    expect(proc.poll([pfd])).toBe(0);
    const polled = proc.pollAsync([pfd], WAIT_MS);
    const waited = array.waitAsync(WAIT_MS);
    await agent.request({ op: "signal", offset: b.offset });
    await agent.request({ op: "signal", offset: a.offset });
    expect(await within(polled, WAIT_MS + 1000, "pollAsync")).toBe(1);
    expect(pfd.revents).toBe(POLLIN);
    expect(await within(waited, WAIT_MS + 1000, "waitAsync")).toBeGreaterThan(0);
    expect(array.timestampNs).toBe(Math.max(a.timestampNs, b.timestampNs));
    proc.closeAll();
    for (const f of [array, a, b]) f.put();
  });
});

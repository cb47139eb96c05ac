/*
 * THE SHARING RULE (src/sync/flight.ts, src/api/share.ts): every object
 * another thread may use has share(), whose token carries a reference that
 * exactly one import adopts (lab.import or X.import), so the sender may
 * close at once; dropToken() releases a token never imported; a copy of a
 * spent token is EBADF, a malformed one EINVAL, each with nothing changed.
 * The cross-thread case uses a real worker (test/workers/share-peer.ts).
 */
import { beforeEach, describe, expect, test } from "vitest";
import { DmaBuf, FIRST_FD, Fence, Lab, Process, Resv, type ShareToken } from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach, heapBalanced } from "./helpers/lab.js";
import { WorkerSet } from "./helpers/workers.js";
import type { SharePeerData, SharePeerReport } from "./workers/share-peer.js";

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;
const labs = new LabSet({ memoryBytes: 64 * MiB, poolBytes: 16 * MiB });
const workers = new WorkerSet();
cleanUpAfterEach({ workers, labs });
let lab: Lab;
const balanced = heapBalanced(() => lab);
beforeEach(async () => { lab = await labs.create(); });

describe("share() and lab.import(): one idiom for every shareable object", () => {
  test("a worker imports a dma-buf, fence, sync_file, sw_sync timeline and resv that the sender closed at once", async () => {
    // Not heap-balanced: each thread's read/write path keeps its own cpu timeline record.
    const pagesBefore = lab.stats().pages.freeBytes;
    const buf = lab.heap("system").alloc(2 * PAGE_SIZE);
    buf.write(new Uint8Array([42]), 0);
    const tl = lab.sync.timeline({ name: "share-test" });
    const fence = tl.createFence();
    const sw = lab.sync.swSync("share-sw");
    const point = sw.createFence(1);
    const resv = lab.sync.resv();
    const tokens = { buf: buf.share(), fence: fence.share(), syncFile: point.share(), swSync: sw.share(), resv: resv.share() };
    // The sender lets go of everything but the fence it will watch: the tokens keep the objects alive.
    buf.close();
    point.close();
    resv.put();
    const report = await workers.start("share-peer", "share-peer", {
      handle: lab.share(), action: "objects", tokens, reply: 7, timeoutMs: WAIT_MS,
    } satisfies SharePeerData).next<SharePeerReport>("done", WAIT_MS);
    expect(report.firstByte).toBe(42);
    expect(report.resvCount).toBe(0);
    expect(fence.isSignaled()).toBe(true); // the worker signalled its imported view
    expect(sw.value).toBe(1); // and advanced the timeline through its own reference
    fence.put();
    sw.close();
    tl.unref();
    // Every token was adopted: a copy of one now imports nothing.
    expectErrno(() => lab.import(tokens.buf), "EBADF");
    expect(lab.stats().pages.freeBytes).toBe(pagesBefore);
  });

  test("X.import and lab.import are one path; a copy of a spent token is EBADF (import once)", balanced(async () => {
    const tl = lab.sync.timeline();
    const fence = tl.createFence();
    const token = fence.share();
    const copy = structuredClone(token);
    const mine = Fence.import(lab, token);
    expect(mine.is(fence)).toBe(true);
    expect(fence.refcount).toBe(2);
    expectErrno(() => lab.import(copy), "EBADF");
    expectErrno(() => Fence.import(lab, copy), "EBADF");
    expect(fence.refcount).toBe(2);
    mine.put();
    fence.put();
    tl.unref();
  }));

  test("dropToken releases a token never imported; afterwards it neither imports nor drops", balanced(async () => {
    const pagesBefore = lab.stats().pages.freeBytes;
    const q = lab.queue({ buffers: 2, size: PAGE_SIZE });
    const buf = lab.heap("cma").alloc(PAGE_SIZE);
    const tokens: ShareToken[] = [q.share(), buf.share()];
    q.close();
    buf.close();
    expect(lab.stats().pages.freeBytes).toBeLessThan(pagesBefore); // the tokens hold the pages
    for (const t of tokens) lab.dropToken(t);
    expect(lab.stats().pages.freeBytes).toBe(pagesBefore);
    for (const t of tokens) {
      expectErrno(() => lab.dropToken(t), "EBADF");
      expectErrno(() => lab.import(t), "EBADF");
    }
  }));

  test("bad tokens are EINVAL and change nothing: wrong kind, malformed, a forged flight", balanced(async () => {
    const tl = lab.sync.timeline();
    const fence = tl.createFence();
    const token = fence.share();
    expectErrno(() => lab.import({ ...token, kind: "nope" } as unknown as ShareToken), "EINVAL");
    expectErrno(() => Resv.import(lab, token as unknown as ShareToken<"resv">), "EINVAL");
    expectErrno(() => DmaBuf.import(lab, token as unknown as ShareToken<"dma-buf">), "EINVAL");
    expectErrno(() => lab.import({ ...token, generation: -1 }), "EINVAL");
    expectErrno(() => lab.import({ ...token, offset: -4 }), "EINVAL");
    expectErrno(() => lab.import(null as unknown as ShareToken), "EINVAL");
    // A real-looking token whose flight is the fence itself, or of another generation.
    expectErrno(() => lab.import({ ...token, flight: fence.offset }), "EBADF");
    expectErrno(() => lab.import({ ...token, generation: token.generation + 1 }), "EBADF");
    expect(fence.refcount).toBe(2);
    // The genuine token still works after all that.
    lab.import(token).put();
    fence.put();
    tl.unref();
  }));

  test("a failed import (EMFILE) leaves the token importable", balanced(async () => {
    const buf = lab.heap("system").alloc(PAGE_SIZE);
    const token = buf.share();
    buf.close();
    using proc = new Process(lab, { maxFds: FIRST_FD + 1 });
    const only = proc.open("/dev/sw_sync");
    expectErrno(() => proc.importFd(token), "EMFILE");
    proc.close(only);
    const fd = proc.importFd(token);
    expect(proc.fdinfo(fd)).toContain(`size:\t${PAGE_SIZE}`);
    proc.close(fd);
    expectErrno(() => proc.importFd(token), "EBADF");
  }));
});

/*
 * The browser pages in real headless Chromium: the conformance subset
 * (pages/conformance.ts) in a cross-origin isolated page, Lab.create() in a
 * page served with and without the isolation headers (pages/isolation.ts),
 * and the index page (web/). The pages report observations; the assertions
 * are here. Skipped (loudly, by setup.ts) only when Chromium is absent
 * outside CI.
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { testSeed } from "../test/helpers/prng.js";
import { xxh32 } from "../test/helpers/xxh32.js";
import { inPage, launchChromium, pageResults } from "./helpers/chromium.js";
import type { Check, ConformanceResults, IsolationResults, Outcome } from "./protocol.js";

const isolatedUrl = inject("isolatedUrl");
const plainUrl = inject("plainUrl");

/** A check's observations; fails (naming the check and the seed) when the page's check threw. */
function observed<T extends object>(check: Check<T>, what: string, seed: number): T {
  if ("error" in check) throw new Error(`${what} threw in the page (replay with DMABUF_SEED=${seed}): ${check.error}`);
  return check;
}

/** The EPERM of a blocking form on a browser's main thread. */
function expectEperm(outcome: Outcome, syscall: string): void {
  expect(outcome).toMatchObject({ threw: true, name: "DmaBufError", code: "EPERM", errno: 1, syscall });
  expect(outcome.threw && outcome.message).toMatch(/may not block.*Promise form/);
}

describe.skipIf(!inject("chromium"))("in headless Chromium", () => {
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
  });

  describe("the conformance subset, cross-origin isolated", () => {
    const seed = testSeed();
    let r: ConformanceResults;

    beforeAll(async () => {
      r = await pageResults<ConformanceResults>(browser, `${isolatedUrl}test/conformance.html?seed=${seed}`);
      expect(r.seed).toBe(seed);
    });

    it("an SQPOLL ring in a browser: its SQ thread (a Web Worker) completes a NOP, and closing the ring settles closed() and frees its block", () => {
      const s = observed(r.sqpollClose, "sqpollClose", seed);
      expect(s).toMatchObject({ nop: 0, closed: true });
      expect(s.userBytesFreed).toBeGreaterThan(0);
    });

    it("a storage device backed by an Origin Private File System file: WRITE, READ and READ_FIXED into a registered dma-buf, canaries intact, O_DIRECT alignment, the temporary file removed", () => {
      const s = observed(r.storageOpfs, "storageOpfs", seed);
      expect(s.name).toMatch(/^dmabuf-lab-nvme0n1-.+\.img$/);
      expect(s).toMatchObject({ wrote: 16384, read: 16384, fixedRead: 16384, misaligned: -22, canaries: "intact", removedAfterShutdown: true });
      expect(s.readDigest).toBe(s.expectedDigest);
      expect(s.fixedDigest).toBe(s.expectedDigest);
    });

    it("runs isolated, on a main thread that may not block", () => {
      const env = observed(r.environment, "environment", seed);
      expect(env).toMatchObject({ crossOriginIsolated: true, canBlock: false });
      expect(env.userAgent).toMatch(/Chrome\//);
    });

    it("the shipped lab-thread worker loads from dist/browser/workers/ and works on the page's memory", () => {
      const t = observed(r.labThread, "labThread", seed);
      expect(t.filledBytes).toBe(t.length);
      expect(t.checksum).toBe(t.expectedChecksum);
      expect(t.expectedChecksum).toBe(xxh32(new Uint8Array(t.length).fill(0x5a)));
    });

    it("a fence signalled in one Web Worker wakes a waitAsync on the main thread and a blocking wait in another", () => {
      const w = observed(r.fenceWake, "fenceWake", seed);
      expect(w.waitersAtSignal).toBe(2);
      expect(w.signalledBefore).toBe(false);
      expect(w.status).toBe(1);
      expect(w.workerStatus).toBe(1);
      expect(w.mainLeft).toBeGreaterThan(0);
      expect(w.workerLeft).toBeGreaterThan(0);
      expect(w.waitersAfter).toBe(0);
    });

    it("pwrite/pread through a worker's Process meet readAsync/writeAsync on the main thread", () => {
      const u = observed(r.uapiRw, "uapiRw", seed);
      expect(u.workerWrote).toBe(10_000);
      expect(u.mainRead).toBe(10_000);
      expect(u.firstDifference).toBe(-1);
      expect(u.mainReadDigest).toBe(u.workerDataDigest);
      expect(u.workerDataDigest).not.toBe(xxh32(new Uint8Array(10_000)));
      expect(u.mainWrote).toBe(5000);
      expect(u.workerRead).toBe(5000);
      expect(u.workerReadDigest).toBe(u.mainDataDigest);
    });

    it("a worker's blocking pread and the main thread's readAsync wait for the main thread's write fence", () => {
      const s = observed(r.implicitSync, "implicitSync", seed);
      expect(s.waitersAtSignal).toBe(2);
      expect(s.mainSettledBeforeSignal).toBe(false);
      expect(s.mainRead).toBe(10_000);
      expect(s.workerRead).toBe(10_000);
      expect(s.mainDigest).toBe(s.expectedDigest);
      expect(s.workerDigest).toBe(s.expectedDigest);
    });

    it("blocking forms on the main thread give EPERM naming the Promise form, change nothing, and work once nothing is pending", () => {
      const b = observed(r.blockingOnMain, "blockingOnMain", seed);
      expectEperm(b.fenceWait, "dma_fence_wait");
      expect(b.fenceWait.threw && b.fenceWait.message).toMatch(/waitAsync\(\)/);
      expectEperm(b.syncFileWait, "dma_fence_wait");
      expectEperm(b.resvWait, "dma_fence_wait");
      expectEperm(b.read, "pread");
      expect(b.read.threw && b.read.message).toMatch(/preadAsync\(\).*readAsync\(\)/);
      expectEperm(b.beginCpuAccess, "dma_fence_wait");
      expect(b.waitersAfterFailures).toBe(0);
      expect(b.fenceWaitSignalled).toMatchObject({ threw: false });
      expect(b.fenceWaitSignalled.threw === false && b.fenceWaitSignalled.returned).toBeGreaterThan(0);
      expect(b.readSignalled).toEqual({ threw: false, returned: 16 });
    });

    it("a non-coherent lab's read/write path works through the simulated CPU cache", () => {
      const n = observed(r.nonCoherent, "nonCoherent", seed);
      expect(n).toMatchObject({ coherent: false, wrote: 3000, read: 3000 });
      expect(n.digest).toBe(n.expectedDigest);
    });

    it("withLockAsync on the main thread waits for a resv lock a worker holds, then takes it", () => {
      const l = observed(r.resvLockAsync, "resvLockAsync", seed);
      expect(l).toMatchObject({ acquiredAfterRelease: true, contended: 1, acquisitions: 2 });
    });

    it("spawnLabThread of a worker URL that does not exist rejects with a DmaBufError naming the worker and its URL", () => {
      const m = observed(r.missingWorker, "missingWorker", seed);
      expect(m).toMatchObject({ threw: true, name: "DmaBufError", code: "ENOEXEC" });
      expect(m.threw && m.message).toMatch(/worker missing .*no-such-worker\.mjs/);
    });
  });

  describe("Lab.create() and cross-origin isolation", () => {
    it("without COOP/COEP: EPERM naming both headers", async () => {
      const r = await pageResults<IsolationResults>(browser, `${plainUrl}test/isolation.html`);
      expect(r.crossOriginIsolated).toBe(false);
      expect(r.labCreate).toMatchObject({ threw: true, name: "DmaBufError", code: "EPERM", errno: 1, syscall: "lab_create" });
      const message = r.labCreate.threw ? r.labCreate.message : "";
      expect(message).toContain("Cross-Origin-Opener-Policy: same-origin");
      expect(message).toContain("Cross-Origin-Embedder-Policy: require-corp");
    });

    it("with them: the lab is created", async () => {
      const r = await pageResults<IsolationResults>(browser, `${isolatedUrl}test/isolation.html`);
      expect(r).toEqual({ crossOriginIsolated: true, labCreate: { threw: false, returned: "created" } });
    });
  });

  describe("the index page (web/)", () => {
    it("writes and reads back a dma-buf and shows it", async () => {
      const page = await inPage(browser, isolatedUrl, () => document.body.dataset.state !== "loading",
        () => ({ state: document.body.dataset.state, text: document.body.innerText }));
      expect(page.state, page.text).toBe("ok");
      expect(page.text).toMatch(/read back: hello from a 65536 byte dma-buf/);
    });

    it("served without the headers, shows the error naming them", async () => {
      const page = await inPage(browser, plainUrl, () => document.body.dataset.state !== "loading",
        () => ({ state: document.body.dataset.state, text: document.body.innerText }));
      expect(page.state).toBe("error");
      expect(page.text).toContain("Cross-Origin-Embedder-Policy: require-corp");
    });
  });
});

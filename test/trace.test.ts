/*
 * Traces (src/trace): per-thread recording in the arena, merged at stop()
 * into Chrome Trace Event JSON whose structure is checked strictly (every
 * B has its E on its track, timestamps monotone per track, flows paired and
 * bound inside slices), with real device workers and real waits.
 */
import { describe, expect, test } from "vitest";
import { spawnDevice } from "../src/devices/device.js";
import { preadv, preadvAsync, pwritev } from "../src/dmabuf/rw.js";
import { chromeTrace, type ChromeEvent, type ChromeTrace } from "../src/trace/chrome.js";
import { checkChromeTrace } from "../src/trace/validate.js";
import { CHUNK_BYTES, CHUNK_EVENTS, CH_NAME, CH_NEXT } from "../src/trace/recorder.js";
import { CTL_TRACE_CHUNKS } from "../src/memory/layout.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { dmaBufError } from "./helpers/errors.js";
import { until } from "./helpers/waits.js";
import { runCli } from "./helpers/cli.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const KiB = 1024;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 32 * 1024 * KiB });
const devices = new DeviceSet();
cleanUpAfterEach({ devices, labs });

const tidOf = (trace: ChromeTrace, name: string): number | undefined =>
  trace.traceEvents.find((e) => e.ph === "M" && e.name === "thread_name" && (e.args as { name: string }).name === name)?.tid;

/** The B events of a track, with the names of the slices open around each. */
function slicesOf(trace: ChromeTrace, tid: number): { name: string; parents: string[] }[] {
  const stack: string[] = [];
  const out: { name: string; parents: string[] }[] = [];
  for (const e of trace.traceEvents) {
    if (e.tid !== tid) continue;
    if (e.ph === "B") {
      out.push({ name: e.name, parents: stack.slice() });
      stack.push(e.name);
    } else if (e.ph === "E") stack.pop();
  }
  return out;
}

describe("trace: dma_fence, read/write path and device jobs as Perfetto JSON", () => {
  test("a device job's signal wakes a sleeping reader: slices per thread and device, a flow from signal to wake-up", async () => {
    const lab = await labs.create();
    const dev = await devices.spawn(lab, { name: "gpu" });
    const buf = lab.exporter("system").alloc(256 * KiB);
    const user = lab.alloc(256 * KiB);
    try {
      const dst = await dev.attach(buf);
      lab.trace.start();
      pwritev(buf, [user], 0);
      // The job waits for a gate the main thread holds; the reader waits for the job.
      const gates = lab.sync.timeline({ name: "gate" });
      const gate = gates.createFence();
      const fill = dev.submit({ kind: "fill", dst, value: 7, inFences: [gate] });
      const read = preadvAsync(buf, [user], 0, { timeoutMs: 10_000 });
      // Once the device has begun waiting (its wait events are in the live trace), open the gate.
      let deviceWaits = 0;
      await until(() => {
        deviceWaits += lab.trace.read().filter((t) => t.name === "device gpu").flatMap((t) => t.events).filter((e) => e.type === 3).length;
        return deviceWaits > 0;
      }, 10_000, "the device waiting for the gate");
      gate.signal();
      expect(await read).toBe(256 * KiB);
      expect(user[100]).toBe(7);
      expect(preadv(buf, [user], 0, { timeoutMs: 10_000 })).toBe(256 * KiB);
      fill.put();
      gate.put();
      gates.unref();
      // The gpu's signal event is recorded just after the signal, which may wake the reader first: wait for it.
      await until(() => lab.trace.read().some((t) => t.name === "device gpu" && t.events.some((e) => e.type === 2)),
        10_000, "the gpu's signal event");
      const data = lab.trace.stop();
      const trace = chromeTrace(data);
      const check = checkChromeTrace(trace);
      expect(check.problems).toEqual([]);

      const main = tidOf(trace, "main")!;
      const gpu = tidOf(trace, "device gpu")!;
      expect(main).toBeDefined();
      expect(gpu).toBeDefined();
      const mainSlices = slicesOf(trace, main);
      const gpuSlices = slicesOf(trace, gpu);
      // The read/write path's phases nest in their call.
      for (const phase of ["validate", "wait", "copy", "end"]) {
        expect(mainSlices.some((s) => s.name === phase && s.parents.at(-1) === "preadv")).toBe(true);
      }
      expect(mainSlices.some((s) => s.name === "pwritev")).toBe(true);
      expect(mainSlices.some((s) => s.name === "preadv")).toBe(true);
      // The job on the device's track, with its run phase, and its fence signalled inside it.
      const job = gpuSlices.find((s) => /^fill #\d+$/.test(s.name));
      expect(job).toBeDefined();
      expect(gpuSlices.some((s) => s.name === "run" && s.parents.at(-1) === job!.name)).toBe(true);
      // Its fence's signal follows the job (recorded first, so that a waiter that stops the trace finds it).
      expect(gpuSlices.some((s) => s.name.startsWith("signal ") && !s.parents.includes(job!.name))).toBe(true);
      // The device slept on the gate and the main thread's signal woke it; the
      // reader slept on the job and the device's signal woke it: flows both ways.
      const flowFrom = (from: number, to: number): boolean => {
        const starts = trace.traceEvents.filter((e) => e.ph === "s" && e.tid === from);
        return trace.traceEvents.some((e) => e.ph === "f" && e.tid === to && starts.some((s) => s.id === e.id));
      };
      expect(flowFrom(main, gpu)).toBe(true);
      expect(flowFrom(gpu, main)).toBe(true);
      expect(mainSlices.some((s) => s.name.startsWith("woken "))).toBe(true);
      // Submission and ring counters.
      expect(trace.traceEvents.some((e) => e.ph === "i" && e.name.startsWith("submit fill gpu #"))).toBe(true);
      expect(trace.traceEvents.some((e) => e.ph === "C" && e.name === "ring depth gpu")).toBe(true);
      // The async read is an async slice pair.
      expect(trace.traceEvents.filter((e) => e.ph === "b" && e.name === "preadv").length).toBe(1);
      expect(data.threads.every((t) => t.dropped === 0)).toBe(true);
    } finally {
      lab.free(user);
      buf.put();
    }
  });

  test("off, nothing is recorded and no buffer is made; start/stop in the wrong state and unknown categories are refused", async () => {
    const lab = await labs.create();
    const buf = lab.exporter("system").alloc(4 * KiB);
    const user = lab.alloc(4 * KiB);
    try {
      pwritev(buf, [user], 0);
      preadv(buf, [user], 0);
      expect(lab.arena.u32[lab.arena.control(CTL_TRACE_CHUNKS) >>> 2]).toBe(0);
      expect(dmaBufError(() => lab.trace.stop()).code).toBe("EINVAL");
      expect(dmaBufError(() => lab.trace.start({ categories: ["fences" as "fence"] })).code).toBe("EINVAL");
      expect(dmaBufError(() => lab.trace.start({ categories: [] })).code).toBe("EINVAL");
      expect(dmaBufError(() => lab.trace.start({ bufferBytes: 1 })).code).toBe("EINVAL");
      // Refused starts changed nothing: still off.
      expect(lab.trace.recording).toBe(false);
      lab.trace.start({ categories: ["rw"] });
      expect(dmaBufError(() => lab.trace.start()).code).toBe("EBUSY");
      pwritev(buf, [user], 0);
      const data = lab.trace.stop();
      // Only the category asked for.
      const types = new Set(data.threads.flatMap((t) => t.events.map((e) => e.type)));
      expect([...types]).toEqual([5]);
      expect(data.categories).toEqual(["rw"]);
      // A second session reuses the thread's chunk and starts empty.
      lab.trace.start({ categories: ["fence"] });
      const again = lab.trace.stop();
      expect(again.session).toBe(data.session + 1);
      expect(again.threads.flatMap((t) => t.events)).toEqual([]);
    } finally {
      lab.free(user);
      buf.put();
    }
  });

  test("a reaped device's chunks go to the next thread once its session is collected", async () => {
    const lab = await labs.create();
    /** The owner names of every chunk in the lab's list. */
    const chunkNames = (): string[] => {
      const names: string[] = [];
      const { u8, u32 } = lab.arena;
      for (let c = u32[lab.arena.control(CTL_TRACE_CHUNKS) >>> 2]; c !== 0; c = u32[(c + CH_NEXT) >>> 2]) {
        const bytes = u8.slice(c + CH_NAME, c + CH_NAME + 32);
        names.push(new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0))));
      }
      return names;
    };
    const session = async (name: string): Promise<string[]> => {
      const dev = await spawnDevice(lab, { name });
      lab.trace.start({ categories: ["job", "fence"] });
      const f = dev.submit({ kind: "nop" });
      expect(await f.waitAsync(10_000)).toBeGreaterThan(0);
      f.put();
      // The device is reaped inside the session: its events stay for stop().
      await dev.shutdown();
      return lab.trace.stop().threads.map((t) => t.name);
    };
    expect(await session("first")).toEqual(expect.arrayContaining(["main", "device first"]));
    expect(chunkNames()).toContain("device first");
    expect(await session("second")).toEqual(expect.arrayContaining(["main", "device second"]));
    // The second device took the first one's chunk rather than a new block of user memory.
    const names = chunkNames();
    expect(names).toContain("device second");
    expect(names).not.toContain("device first");
  });

  test("a thread whose buffers are full counts what it drops, and the file stays sound", async () => {
    const lab = await labs.create();
    lab.trace.start({ categories: ["fence"], bufferBytes: CHUNK_BYTES });
    const tl = lab.sync.timeline({ name: "t" });
    const fences = 2100; // two events each (created, signalled): more than one chunk holds
    const n = 2 * fences;
    for (let i = 0; i < fences; i++) {
      const f = tl.createFence();
      f.signal();
      f.put();
    }
    tl.unref();
    const data = lab.trace.stop();
    const main = data.threads.find((t) => t.name === "main")!;
    expect(main.events.length).toBe(CHUNK_EVENTS);
    expect(main.dropped).toBe(n - CHUNK_EVENTS);
    expect(checkChromeTrace(chromeTrace(data)).problems).toEqual([]);
  });

  test("the checker finds what a viewer would reject", () => {
    const ev = (e: Partial<ChromeEvent>): ChromeEvent => ({ name: "x", ph: "B", pid: 1, tid: 1, ts: 0, ...e });
    const bad = {
      traceEvents: [
        ev({ ph: "B", ts: 5 }),
        ev({ ph: "B", name: "y", ts: 4 }), // goes back
        ev({ ph: "E", name: "x", ts: 6 }), // closes y
        ev({ ph: "s", id: 1, ts: 7 }), // no f
        ev({ ph: "f", id: 2, ts: 8, tid: 2 }), // outside any slice, no s
        ev({ ph: "e", name: "z", id: 3, ts: 9 }), // async e without b
      ],
    };
    const problems = checkChromeTrace(bad).problems.join("\n");
    expect(problems).toMatch(/goes back/);
    expect(problems).toMatch(/closes B "y"/);
    expect(problems).toMatch(/flow 1 has 1 s and 0 f/);
    expect(problems).toMatch(/flow 2 has 0 s and 1 f/);
    expect(problems).toMatch(/flow f 2 .* is inside no slice/);
    expect(problems).toMatch(/async e "z" id 3 closes nothing/);
    expect(problems).toMatch(/has no E/);
  });

  test("bench trace measures tracing on against off, prints the ratios against their targets and writes a sound trace", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-trace-"));
    try {
      const file = join(dir, "nop.json");
      const { code, stdout, stderr } = await runCli(["bench", "trace", "--quick", "--json", "--trace", file, "--chart", join(dir, "t.svg")]);
      expect(code).toBe(0);
      const result = JSON.parse(stdout);
      expect(result.benchmark).toBe("trace");
      expect(result.trace).toBeUndefined();
      expect(result.rows.map((r: { workload: string }) => r.workload)).toEqual([
        "rw 4 KiB (pwritev + preadv)", "fence (create, signal, wait, put)", "device nop (submit, wait for its fence)"]);
      for (const r of result.rows) {
        expect(r.offNs).toBeGreaterThan(0);
        expect(r.ratio).toBeCloseTo(r.onNs / r.offNs, 1);
        expect(r.eventsPerOp).toBeGreaterThan(0);
      }
      expect(result.targets).toHaveLength(3);
      expect(stderr).toMatch(/wrote .*nop\.json/);
      const trace = JSON.parse(readFileSync(file, "utf8"));
      expect(checkChromeTrace(trace).problems).toEqual([]);
      expect(readFileSync(join(dir, "t.svg"), "utf8")).toMatch(/^<svg /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

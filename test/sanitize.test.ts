/*
 * The race detector (src/sanitize): accesses to a dma-buf's bytes ordered
 * only by fences. Each test names the kernel rule whose edge it exercises:
 * a test with every fence in place expects no report, one with a fence left
 * out expects exactly the race it planted, both sides named.
 */
import { afterEach, describe, expect, test } from "vitest";
import type { Lab } from "../src/api/lab.js";
import type { Device } from "../src/devices/device.js";
import { pwritev, preadv } from "../src/dmabuf/rw.js";
import { DmaBufFile } from "../src/uapi/dma_buf_file.js";
import { DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE, O_RDWR, PROT_READ, PROT_WRITE } from "../src/uapi/uapi.js";
import { DeviceSet } from "./helpers/devices.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { runContend } from "../src/contend/run.js";
import { runPipeline } from "../src/demo/pipeline.js";
import { renderSanitizeTable, runSanitizeBench } from "../bench/sanitize.js";
import { reports, WorkerSet } from "./helpers/workers.js";
import { withSeed, type Prng } from "./helpers/prng.js";
import type { AccessSide } from "../src/sanitize/check.js";
import type { ProtocolStep, SanitizeAgentData, SanitizeAgentReport } from "./workers/sanitize-agent.js";
import { expectErrno } from "./helpers/errors.js";

const KiB = 1024;
const WAIT_MS = 10_000;
const labs = new LabSet({ memoryBytes: 64 * 1024 * KiB, poolBytes: 16 * 1024 * KiB, sanitize: true });
const devices = new DeviceSet();
cleanUpAfterEach({ devices, labs });
const device = (lab: Lab, name: string): Promise<Device> => devices.spawn(lab, { name });

describe("the sanitizer's switch", () => {
  test("a lab without { sanitize } records nothing and report() is EINVAL", async () => {
    const lab = await labs.create({ sanitize: false });
    expect(lab.sanitizer.enabled).toBe(false);
    const buf = lab.exporter("system").alloc(4 * KiB);
    try {
      pwritev(buf, [new Uint8Array(16)], 0);
      expectErrno(() => lab.sanitizer.report(), "EINVAL");
    } finally {
      buf.put();
    }
  });

  test("a bad sanitize option is EINVAL and makes no lab", async () => {
    await expect(labs.create({ sanitize: 3 as unknown as boolean })).rejects.toMatchObject({ code: "EINVAL" });
    await expect(labs.create({ sanitize: { logBytes: 100 } })).rejects.toMatchObject({ code: "EINVAL" });
  });
});

describe("implicit sync orders device DMA and CPU copies (dma_resv usage rules)", () => {
  test("rw write, device fill, device copy, rw read: every access recorded, no race", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "gpu");
    const a = lab.exporter("system").alloc(16 * KiB);
    const b = lab.exporter("system").alloc(16 * KiB);
    try {
      const da = await dev.attach(a);
      const db = await dev.attach(b);
      pwritev(a, [new Uint8Array(16 * KiB).fill(7)], 0);
      const fill = dev.submit({ kind: "fill", dst: { buffer: da, offset: 4 * KiB, length: 4 * KiB }, value: 1 });
      const copy = dev.submit({ kind: "copy", src: da, dst: db });
      const out = new Uint8Array(16 * KiB);
      preadv(b, [out], 0);
      expect(out[4 * KiB]).toBe(1);
      expect(copy.wait(WAIT_MS)).toBeGreaterThan(0);
      fill.put();
      copy.put();
      const report = lab.sanitizer.report();
      expect(report.races).toEqual([]);
      expect(report.accesses).toBe(5);
      expect(report.incomplete).toBe(false);
    } finally {
      a.put();
      b.put();
    }
  });

  test("a job submitted with bypassFences publishes no fence: the CPU write after it races it, both sides named", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "gpu");
    const a = lab.exporter("system").alloc(16 * KiB);
    a.setName("frame");
    try {
      const da = await dev.attach(a);
      // Before the submission, in the submitting thread: ordered before the job (the ring push).
      pwritev(a, [new Uint8Array(8 * KiB).fill(7)], 0);
      const fill = dev.submit({ kind: "fill", dst: { buffer: da, offset: 4 * KiB, length: 8 * KiB }, value: 1, bypassFences: true });
      // The job's fence is not in the buffer's resv: this write waits for nothing.
      pwritev(a, [new Uint8Array(8 * KiB).fill(9)], 0);
      expect(fill.wait(WAIT_MS)).toBeGreaterThan(0);
      // The fence was waited for: the next access is ordered after the job.
      pwritev(a, [new Uint8Array(16)], 8 * KiB);
      const report = lab.sanitizer.report();
      expect(report.raceCount).toBe(1);
      const [race] = report.races;
      const sides = [race.a, race.b].sort((x, y) => x.agent.localeCompare(y.agent));
      expect(sides[1]).toMatchObject({ agent: "main", call: "pwritev", write: true, range: { offset: 0, length: 8 * KiB } });
      expect(sides[1].buffer.name).toMatch(/^frame 0x/);
      expect(sides[1].fence).not.toBeNull();
      expect(sides[0]).toMatchObject({ agent: "device gpu", call: "job fill", write: true, range: { offset: 4 * KiB, length: 8 * KiB } });
      expect(sides[0].fence).toEqual({ context: Number(fill.context & 0xffffffffn), seqno: Number(fill.seqno) });
      fill.put();
    } finally {
      a.put();
    }
  });
});

describe("CPU access (DMA_BUF_IOCTL_SYNC START/END and mmap)", () => {
  test("a bracket after waiting for the job is ordered; an mmap access outside any bracket is reported", async () => {
    const lab = await labs.create();
    const dev = await device(lab, "gpu");
    const a = lab.exporter("system").alloc(8 * KiB);
    const file = new DmaBufFile(a, O_RDWR);
    const map = file.mmap(0, 8 * KiB, PROT_READ | PROT_WRITE);
    try {
      const da = await dev.attach(a);
      const fill = dev.submit({ kind: "fill", dst: da, value: 3 });
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ });
      expect(map.view[100]).toBe(3);
      map.access(false, 0, 4 * KiB); // covered by the bracket
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ });
      let report = lab.sanitizer.report();
      expect(report.races).toEqual([]);
      expect(report.unbracketed).toEqual([]);
      // Outside a bracket: a finding, ordered after the job by the bracket's wait (no race).
      map.access(true, 4 * KiB, 16);
      report = lab.sanitizer.report();
      expect(report.races).toEqual([]);
      expect(report.unbracketed).toHaveLength(1);
      expect(report.unbracketed[0]).toMatchObject({ agent: "main", call: "mmap", write: true, range: { offset: 4 * KiB, length: 16 } });
      // A write bracket does not wait for... nothing pending: then a job that bypasses fences races it.
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE });
      const late = dev.submit({ kind: "fill", dst: da, value: 4, bypassFences: true });
      file.ioctl(lab.process, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE });
      expect(late.wait(WAIT_MS)).toBeGreaterThan(0);
      report = lab.sanitizer.report();
      expect(report.races.map((r) => [r.a.call, r.b.call].sort())).toContainEqual(["cpu access", "job fill"]);
      fill.put();
      late.put();
      expectErrno(() => map.access(true, 8 * KiB - 4, 16), "EINVAL");
    } finally {
      map.unmap();
      file.put();
      a.put();
    }
  });
});

// ---- seeded random protocols with fences left out ------------------------------

const workers = new WorkerSet();
afterEach(() => workers.terminateAll());

interface Protocol {
  steps: ProtocolStep[];
  /** The (earlier, later) step pairs whose fence was left out. */
  planted: [number, number][];
}

const AGENTS = 3;
const BUFFERS = 3;
const STEPS = 30;
const BUF_BYTES = 16 * KiB;

function conflict(a: ProtocolStep, b: ProtocolStep): boolean {
  if (a.buffer !== b.buffer || !(a.write || b.write)) return false;
  const [ao, al] = a.kind === "bracket" ? [0, BUF_BYTES] : [a.offset, a.length];
  const [bo, bl] = b.kind === "bracket" ? [0, BUF_BYTES] : [b.offset, b.length];
  return ao < bo + bl && bo < ao + al;
}

/**
 * A protocol where each step waits for the fence of every earlier
 * conflicting step of another agent, then leaves `plant` of those waits out
 * (a step keeps its other waits), each one that leaves its pair unordered.
 */
function generate(rng: Prng, plant: number): Protocol {
  const steps: ProtocolStep[] = [];
  for (let j = 0; j < STEPS; j++) {
    const kind = rng.next() < 0.6 ? "bracket" : "mmap";
    const offset = rng.int(0, BUF_BYTES / 64 - 1) * 64;
    const step: ProtocolStep = {
      agent: rng.int(0, AGENTS - 1), buffer: rng.int(0, BUFFERS - 1), write: rng.next() < 0.5, kind,
      offset, length: Math.min(BUF_BYTES - offset, rng.int(1, 64) * 64), waits: [], how: rng.pick(["wait", "poll", "merge"] as const),
    };
    step.waits = steps.map((s, k) => (s.agent !== step.agent && conflict(s, step) ? k : -1)).filter((k) => k >= 0);
    steps.push(step);
  }
  const planted: [number, number][] = [];
  const candidates = steps.flatMap((s, j) => s.waits.map((k) => [k, j] as [number, number]));
  // Only omissions that no other chain of waits makes up for: each planted pair is a race.
  while (planted.length < plant && candidates.length > 0) {
    const [k, j] = candidates.splice(rng.int(0, candidates.length - 1), 1)[0];
    const kept = steps[j].waits;
    steps[j].waits = kept.filter((w) => w !== k);
    if (expectedRaces(steps).includes(`${k}-${j}`)) planted.push([k, j]);
    else steps[j].waits = kept;
  }
  return { steps, planted };
}

/** The races the protocol has, by vector clocks over its waits (the oracle): unordered conflicting pairs. */
function expectedRaces(steps: ProtocolStep[]): string[] {
  const clocks: number[][] = Array.from({ length: AGENTS }, (_, a) => Array.from({ length: AGENTS }, (_, b) => (a === b ? 1 : 0)));
  const at: { clock: number[]; epoch: number }[] = [];
  for (const s of steps) {
    const c = clocks[s.agent];
    for (const k of s.waits) for (let i = 0; i < AGENTS; i++) c[i] = Math.max(c[i], at[k].clock[i]);
    at.push({ clock: [...c], epoch: c[s.agent] });
    c[s.agent]++;
  }
  const races: string[] = [];
  steps.forEach((b, j) => steps.slice(0, j).forEach((a, k) => {
    if (a.agent === b.agent || !conflict(a, b)) return;
    if (at[k].epoch <= at[j].clock[a.agent]) return;
    races.push(`${k}-${j}`);
  }));
  return races;
}

async function runProtocol(lab: Lab, protocol: Protocol): Promise<{ found: string[]; unbracketed: number }> {
  const { steps } = protocol;
  const buffers = Array.from({ length: BUFFERS }, () => lab.exporter("system").alloc(BUF_BYTES));
  const timeline = lab.sync.timeline({ driver: "test", name: "protocol" });
  const fences = steps.map(() => timeline.createFence());
  try {
    const turn = new Int32Array(new SharedArrayBuffer(4));
    const boxes = Array.from({ length: AGENTS }, (_, agent) => workers.start("sanitize-agent", `agent ${agent}`, {
      handle: lab.share(), agent, steps, fences: fences.map((f) => f.offset), buffers: buffers.map((b) => b.offset), turn, timeoutMs: WAIT_MS,
    } satisfies SanitizeAgentData));
    const done = await reports<SanitizeAgentReport>(boxes, 60_000);
    const windows = done.flatMap((r, agent) => r.windows.map(([step, from, to]) => ({ agent, step, from, to })));
    const stepOf = (s: AccessSide): number => {
      const w = windows.find((x) => `agent ${x.agent}` === s.agent && s.startNs >= x.from && s.startNs <= x.to);
      if (w === undefined) throw new Error(`no step of ${s.agent} at ${s.startNs} ns`);
      return w.step;
    };
    const report = lab.sanitizer.report();
    expect(report.incomplete).toBe(false);
    const found = report.races.map((r) => [stepOf(r.a), stepOf(r.b)].sort((x, y) => x - y).join("-")).sort();
    return { found, unbracketed: report.unbracketedCount };
  } finally {
    await workers.terminateAll();
    for (const f of fences) {
      if (!f.isSignaled()) f.signal();
      f.put();
    }
    timeline.unref();
    for (const b of buffers) b.put();
  }
}

describe("seeded random protocols (a fence left out is a race, and nothing else is)", () => {
  test("every planted race is found and nothing else is reported; with every fence, nothing", async () => {
    await withSeed(async (rng) => {
      console.log(`sanitize protocols: seed ${rng.seed} (replay with DMABUF_SEED=${rng.seed})`);
      let plantedFound = 0;
      for (let round = 0; round < 3; round++) {
        const plant = round === 0 ? 0 : rng.int(1, 3);
        const protocol = generate(rng, plant);
        const expected = expectedRaces(protocol.steps).sort();
        const lab = await labs.create();
        const { found, unbracketed } = await runProtocol(lab, protocol);
        expect(found, `round ${round}, planted ${JSON.stringify(protocol.planted)}`).toEqual(expected);
        if (plant === 0) expect(found).toEqual([]);
        for (const [k, j] of protocol.planted) {
          expect(found).toContain(`${k}-${j}`);
          plantedFound++;
        }
        expect(unbracketed).toBe(protocol.steps.filter((s) => s.kind === "mmap").length);
      }
      // Races were planted (else the test proves nothing).
      expect(plantedFound).toBeGreaterThan(0);
    });
  }, 120_000);
});

describe("contend and demo under the sanitizer", () => {
  test("a fenced contend run has no race; a --bypass-fences run has races and unbracketed mmap accesses", async () => {
    const base = { writers: 2, readers: 2, devices: 1, buffers: 2, size: 16 * KiB, iterations: 40, sanitize: true } as const;
    const fenced = await runContend(base);
    expect(fenced.sanitize!.races).toEqual([]);
    expect(fenced.sanitize!.unbracketedCount).toBe(0);
    expect(fenced.sanitize!.accesses).toBeGreaterThan(160);
    expect(fenced.sanitize!.incomplete).toBe(false);
    const bypassed = await runContend({ ...base, bypassFences: true });
    expect(bypassed.sanitize!.raceCount).toBeGreaterThan(0);
    // Every bypassing access: a writer's 8 chunks (contend's default), a reader's whole buffer.
    expect(bypassed.sanitize!.unbracketedCount).toBe(2 * 40 * 8 + 2 * 40);
    const agents = new Set(bypassed.sanitize!.races.flatMap((r) => [r.a.agent, r.b.agent]));
    expect([...agents].some((a) => a.startsWith("writer"))).toBe(true);
  }, 120_000);

  test("the demo pipeline (three devices, a CPU reader) has no race", async () => {
    const lab = await labs.create();
    const result = await runPipeline(lab, { frames: 24, buffers: 3 });
    expect(result.integrity.ok).toBe(true);
    const report = lab.sanitizer.report();
    expect(report.races).toEqual([]);
    expect(report.accesses).toBeGreaterThan(24 * 3);
  }, 120_000);
});

describe("bench sanitize", () => {
  test("--quick: one round each side, the slowdown and its target measured, no race in the sanitized round", async () => {
    const r = await runSanitizeBench({ quick: true }, () => {});
    expect(r.rounds.map((x) => x.sanitize)).toEqual([false, true]);
    const on = r.rounds[1];
    expect(on.races).toBe(0);
    expect(on.accesses).toBeGreaterThan(0);
    expect(r.slowdown).toBeCloseTo(r.offOpsPerSec / r.onOpsPerSec);
    expect(r.targets[0]).toMatchObject({ threshold: "<= 3x", unit: "x", measured: r.slowdown, met: r.slowdown <= 3 });
    expect(renderSanitizeTable(r)).toMatch(/\[(met|MISSED)\] contend defaults/);
  }, 120_000);
});

/*
 * The demo pipeline: camera -> gpu -> display, three devices (worker
 * threads) over rings of dma-bufs, ordered only by implicit fences, with a
 * CPU reader on the side. Returns data and prints nothing; runs in Node and
 * in a browser (waits are waitAsync, reads are readAsync).
 *
 *   buffers  `buffers` slots, each a camera frame and an output frame
 *            (frameBytes(width, height), system heap) and a 4 KiB verdict
 *            buffer; frame k uses slot k % buffers
 *   camera   a kernel (workers/kernel-camera.ts) renders frame k into the
 *            slot's camera frame (write)
 *   gpu      a kernel (workers/kernel-gpu.ts) reads it and writes the
 *            inverted frame into the output frame
 *   display  a kernel (workers/kernel-display.ts) reads the output frame and
 *            writes its verdict (whole and frame k?) into the verdict buffer
 *   reader   meanwhile, on this thread, read() (DmaBuf.readAsync: pread on
 *            an fd of this thread's Process) of the latest submitted frame's
 *            output buffer, verified with inspectFrame; it waits for the
 *            gpu through implicit sync, like any reader
 *
 * Every stage of frame k is submitted at once; each job waits for its
 * buffers' fences (the gpu for the camera's write, the camera of frame k+N
 * for the gpu's and reader's reads of frame k, and so on). The only host
 * wait is the retirement of frame k-N before frame k is submitted, which
 * bounds the frames in flight to `buffers`; retiring reads the verdict
 * (read(), after the display's fence) and the three fences' timestamps.
 *
 * Contract: options are checked first (EINVAL naming the value, nothing
 * made); every wait has timeoutMs (ETIMEDOUT); a failed job is EIO naming
 * the stage and frame. However the run ends, every device is shut down
 * and every buffer closed before runPipeline() settles.
 */
import type { DmaBuf } from "../api/dma_buf.js";
import type { Device, DeviceBuffer } from "../devices/device.js";
import type { DeviceStats } from "../devices/device_record.js";
import { DmaBufError } from "../errno.js";
import type { Lab } from "../lab.js";
import type { Fence } from "../sync/fence.js";
import { workerUrl } from "../thread/host.js";
import { INVERT_MASK, VERDICT_BYTES, frameBytes, inspectFrame, readVerdict } from "./frame.js";

export interface PipelineOptions {
  /** Frames to run (default 240). */
  frames?: number;
  /** Frame buffers in each ring, the frames in flight (default 4). */
  buffers?: number;
  width?: number;
  height?: number;
  /** The limit of every wait (default 10 s). */
  timeoutMs?: number;
  /** Called as each frame is retired. */
  onFrame?: (retired: number, total: number) => void;
}

/** One frame's times, ns on the lab clock: its submission and each stage's fence timestamp. */
export interface FrameTiming {
  frame: number;
  submitNs: number;
  cameraNs: number;
  gpuNs: number;
  displayNs: number;
}

export interface PipelineIntegrity {
  /** Frames the display checked, and those not whole or not the expected frame. */
  displayed: number;
  displayTorn: number;
  /** read() calls of the CPU reader, and frames it found not whole or not of that slot. */
  cpuReads: number;
  cpuTorn: number;
  /** Reads issued while the gpu was still writing that frame (implicit sync made them wait). */
  cpuWaited: number;
  ok: boolean;
}

export interface PipelineResult {
  frames: number;
  buffers: number;
  width: number;
  height: number;
  frameBytes: number;
  /** First submission to the last display fence, ns. */
  durationNs: number;
  fps: number;
  timings: FrameTiming[];
  integrity: PipelineIntegrity;
  /** Each device's counters after its shutdown (state "dead", error 0: stopped cleanly). */
  devices: (DeviceStats & { faultsIommu: number })[];
}

const STAGES = ["camera", "gpu", "display"] as const;
const SYSCALL = "demo_pipeline";

export function checkPipelineOptions(options: PipelineOptions): Required<Omit<PipelineOptions, "onFrame">> {
  const o = {
    frames: options.frames ?? 240, buffers: options.buffers ?? 4, width: options.width ?? 320, height: options.height ?? 240,
    timeoutMs: options.timeoutMs ?? 10_000,
  };
  const check = (name: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new DmaBufError("EINVAL", SYSCALL, `${name} ${String(v)} is not an integer in ${min}..${max}`);
    }
  };
  check("frames", o.frames, 1, 1_000_000);
  check("buffers", o.buffers, 1, 64);
  check("width", o.width, 1, 4096);
  check("height", o.height, 1, 4096);
  check("timeoutMs", o.timeoutMs, 1, 2 ** 31 - 1);
  if (frameBytes(o.width, o.height) > 64 * 1024 * 1024) {
    throw new DmaBufError("EINVAL", SYSCALL, `a ${o.width}x${o.height} frame is larger than 64 MiB`);
  }
  return o;
}

interface Slot {
  camera: DeviceBuffer;
  gpuIn: DeviceBuffer;
  gpuOut: DeviceBuffer;
  displayIn: DeviceBuffer;
  verdict: DeviceBuffer;
  out: DmaBuf;
  verdictBuf: DmaBuf;
}

interface InFlight {
  frame: number;
  slot: Slot;
  submitNs: number;
  /** camera, gpu, display out-fences (owned). */
  fences: Fence[];
}

const macrotask = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * One device per stage, one after another: spawnDevice() calls racing for
 * the lab's first watchdog would each start one (src/devices/device.ts).
 */
async function spawnStages(lab: Lab, timeoutMs: number, devices: Device[]): Promise<void> {
  for (const name of STAGES) devices.push(await lab.spawnDevice({ name, jobTimeoutMs: timeoutMs }));
}

export async function runPipeline(lab: Lab, options: PipelineOptions = {}): Promise<PipelineResult> {
  const o = checkPipelineOptions(options);
  const { width: W, height: H, buffers: N } = o;
  const bytes = frameBytes(W, H);
  const owned: DmaBuf[] = [];
  const devices: Device[] = [];
  const inflight: InFlight[] = [];
  const timings: FrameTiming[] = [];
  const integrity: PipelineIntegrity = { displayed: 0, displayTorn: 0, cpuReads: 0, cpuTorn: 0, cpuWaited: 0, ok: false };
  let reader: Promise<void> | undefined;
  let readerError: unknown;
  let done = false;
  /** The run failed: the reader stops without its last read. */
  let aborted = false;
  let failed = true;
  try {
    const heap = lab.heap("system");
    const alloc = (size: number) => { const b = heap.alloc(size); owned.push(b); return b; };
    const rings = Array.from({ length: N }, () => ({ cam: alloc(bytes), out: alloc(bytes), verdict: alloc(VERDICT_BYTES) }));
    await spawnStages(lab, o.timeoutMs, devices);
    const [camera, gpu, display] = devices;
    const [kCamera, kGpu, kDisplay] = await Promise.all(
      [camera, gpu, display].map((d, i) => d.loadKernel(workerUrl(`kernel-${STAGES[i]}`))));
    const slots: Slot[] = [];
    for (const r of rings) {
      const [cam, gpuIn, gpuOut, displayIn, verdict] = await Promise.all([
        camera.attach(r.cam), gpu.attach(r.cam), gpu.attach(r.out), display.attach(r.out), display.attach(r.verdict)]);
      slots.push({ camera: cam, gpuIn, gpuOut, displayIn, verdict, out: r.out, verdictBuf: r.verdict });
    }

    const verdictView = new Uint8Array(VERDICT_BYTES);
    const retire = async (e: InFlight): Promise<void> => {
      for (const [i, f] of e.fences.entries()) {
        if ((await f.waitAsync(o.timeoutMs)) === 0) {
          throw new DmaBufError("ETIMEDOUT", SYSCALL, `frame ${e.frame}: the ${STAGES[i]} job did not finish within ${o.timeoutMs} ms`);
        }
        if (f.status < 0) throw new DmaBufError("EIO", SYSCALL, `frame ${e.frame}: the ${STAGES[i]} job failed with errno ${-f.status}`);
      }
      await e.slot.verdictBuf.readAsync(verdictView, 0, { timeoutMs: o.timeoutMs });
      integrity.displayed++;
      if (!readVerdict(verdictView).ok) integrity.displayTorn++;
      const [c, g, d] = e.fences.map((f) => f.timestampNs);
      timings.push({ frame: e.frame, submitNs: e.submitNs, cameraNs: c, gpuNs: g, displayNs: d });
    };
    const retireOldest = async (): Promise<void> => {
      const e = inflight[0];
      await retire(e);
      inflight.shift();
      for (const f of e.fences) f.put();
      options.onFrame?.(integrity.displayed, o.frames);
    };

    // The CPU reader: the latest submitted frame, read through an fd and
    // checked; until the run ends, and once more after its last frame.
    const readView = new Uint8Array(bytes);
    let latest: InFlight | undefined;
    reader = (async () => {
      for (;;) {
        const last = done;
        const e = latest;
        if (e !== undefined && !aborted) {
          if (inflight.includes(e) && !e.fences[1].isSignaled()) integrity.cpuWaited++;
          await e.slot.out.readAsync(readView, 0, { timeoutMs: o.timeoutMs });
          const info = inspectFrame([readView], W, H);
          integrity.cpuReads++;
          if (!(info.whole && info.mask === INVERT_MASK && info.frame % N === e.frame % N && info.frame >= e.frame)) integrity.cpuTorn++;
        }
        if (last) return;
        await macrotask();
      }
    })().catch((e: unknown) => { readerError = e; });

    for (let k = 0; k < o.frames; k++) {
      if (inflight.length === N) await retireOldest();
      const slot = slots[k % N];
      const e: InFlight = { frame: k, slot, submitNs: lab.sync.clock.nowNs(), fences: [] };
      inflight.push(e);
      latest = e;
      e.fences.push(camera.submit({ kind: "kernel", kernel: kCamera, buffers: [{ range: slot.camera, access: "write" }], args: [k, W, H] }));
      e.fences.push(gpu.submit({
        kind: "kernel", kernel: kGpu, args: [W, H],
        buffers: [{ range: slot.gpuIn, access: "read" }, { range: slot.gpuOut, access: "write" }],
      }));
      e.fences.push(display.submit({
        kind: "kernel", kernel: kDisplay, args: [k, W, H],
        buffers: [{ range: slot.displayIn, access: "read" }, { range: slot.verdict, access: "write" }],
      }));
    }
    while (inflight.length > 0) await retireOldest();
    done = true;
    await reader;
    if (readerError !== undefined) throw readerError;
    failed = false;
  } finally {
    done = true;
    aborted = failed;
    await reader;
    for (const e of inflight.splice(0)) for (const f of e.fences) f.put();
    const stopped = await Promise.allSettled(devices.map((d) => d.shutdown({ drain: !failed })));
    for (const b of owned) b.close();
    const err = stopped.find((s) => s.status === "rejected");
    if (!failed && err !== undefined) throw (err as PromiseRejectedResult).reason;
  }
  const first = timings[0].submitNs;
  const durationNs = timings.reduce((m, t) => Math.max(m, t.displayNs), first) - first;
  integrity.ok = integrity.displayTorn === 0 && integrity.cpuTorn === 0 && integrity.displayed === o.frames;
  return {
    frames: o.frames, buffers: N, width: W, height: H, frameBytes: bytes, durationNs, fps: o.frames / (durationNs / 1e9),
    timings, integrity, devices: devices.map((d) => d.stats()),
  };
}

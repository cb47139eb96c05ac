/*
 * The demo pipeline: camera -> gpu -> display, three devices (worker
 * threads) over rings of dma-bufs, ordered only by implicit fences, with a
 * CPU reader on the side. Returns data and prints nothing; runs in Node and
 * in a browser (waits are waitAsync, reads are readAsync).
 *
 *   buffers  `buffers` slots, each a camera frame and an output frame
 *            (frameBytes(width, height), system heap) and a 4 KiB verdict
 *            buffer; frame k uses slot k % buffers. The camera frames are
 *            a buffer queue (lab.queue): the camera's job is its producer
 *            (dequeue, then queue with the job's out-fence), the gpu's its
 *            consumer (acquire, the carried fence as the job's in-fence,
 *            release with the gpu's out-fence); the host makes both calls
 *            for the devices, at submission
 *   camera   a kernel (workers/kernel-camera.ts) renders frame k into the
 *            slot's camera frame (write)
 *   gpu      a kernel (workers/kernel-gpu.ts) reads it and writes the
 *            inverted frame into the output frame
 *   display  a kernel (workers/kernel-display.ts) reads the output frame and
 *            writes its verdict (whole and frame k?) into the verdict buffer
 *   reader   meanwhile, on this thread, read()s the latest submitted
 *            frame's output buffer and checks it (reader.ts)
 *
 * Every stage of frame k is submitted at once; each job waits for its
 * buffers' fences (the gpu for the camera's write, the camera of frame k+N
 * for the gpu's and reader's reads of frame k, and so on; the gpu also for
 * the fence its camera frame came with from the queue). The only host
 * wait is the retirement of frame k-N before frame k is submitted, which
 * bounds the frames in flight to `buffers`; retiring reads the verdict
 * (read(), after the display's fence) and the three fences' timestamps,
 * and reports the frame (onFrame).
 *
 * bypassFences: every job is submitted with bypassFences: true, so no job
 * waits for another: the gpu reads the camera frame while the camera
 * writes it, the display the output while the gpu writes it. The host's
 * wait still retires frame k-N (its fences signal all the same) before
 * frame k is submitted. The display's and the reader's checks count the
 * frames that come out torn (not whole) or wrong (whole, not frame k).
 *
 * Contract: options are checked first (EINVAL naming the value, nothing
 * made); every wait has timeoutMs (ETIMEDOUT); a failed job is EIO naming
 * the stage and frame; an aborted signal ends the run after the frames in
 * flight, and the result counts the frames submitted. However the run
 * ends, every device is shut down and every buffer closed before
 * runPipeline() settles.
 */
import type { DmaBuf } from "../api/dma_buf.js";
import type { BufferQueue } from "../api/queue.js";
import type { Device, DeviceBuffer } from "../devices/device.js";
import type { DeviceStats } from "../devices/device_record.js";
import { DmaBufError } from "../errno.js";
import type { Lab } from "../api/lab.js";
import type { Fence } from "../sync/fence.js";
import { workerUrl } from "../thread/host.js";
import { VERDICT_BYTES, frameBytes, readVerdict } from "./frame.js";
import { checkPipelineOptions, type FrameReport, type PipelineOptions } from "./options.js";
import { FrameReader } from "./reader.js";
import { stageStarts } from "./timing.js";

export type { FrameReport, PipelineOptions, ReaderFrame } from "./options.js";

export interface PipelineIntegrity {
  /** Frames the display checked; those torn (pixels not whole); those wrong (whole, but not frame k inverted). */
  displayed: number;
  displayTorn: number;
  displayWrong: number;
  /** read() calls of the CPU reader; frames it found torn; whole frames of another slot or older (reader.ts). */
  cpuReads: number;
  cpuTorn: number;
  cpuWrong: number;
  /** Reads issued while the gpu was still writing that frame (implicit sync made them wait). */
  cpuWaited: number;
  ok: boolean;
}

export interface PipelineResult {
  /** Frames submitted (all of them unless the signal ended the run). */
  frames: number;
  buffers: number;
  width: number;
  height: number;
  frameBytes: number;
  bypassFences: boolean;
  coherent: boolean;
  /** First submission to the last display fence, ns. */
  durationNs: number;
  fps: number;
  /** Every frame's report (empty with keepTimings: false). */
  timings: FrameReport[];
  integrity: PipelineIntegrity;
  /** Each device's counters after its shutdown (state "dead", error 0: stopped cleanly). */
  devices: (DeviceStats & { faultsIommu: number })[];
}

const STAGES = ["camera", "gpu", "display"] as const;
const SYSCALL = "demo_pipeline";

interface Slot {
  index: number;
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
  /** camera, gpu, display out-fences (owned until retired). */
  fences: Fence[];
  retired: boolean;
}

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
  let frames: BufferQueue | undefined;
  const devices: Device[] = [];
  const inflight: InFlight[] = [];
  const timings: FrameReport[] = [];
  const integrity: PipelineIntegrity = {
    displayed: 0, displayTorn: 0, displayWrong: 0, cpuReads: 0, cpuTorn: 0, cpuWrong: 0, cpuWaited: 0, ok: false,
  };
  let reader: FrameReader | undefined;
  let submitted = 0;
  let firstSubmitNs = 0;
  let lastDisplayNs = 0;
  let failed = true;
  try {
    const heap = lab.heap("system");
    const alloc = (size: number) => { const b = heap.alloc(size); owned.push(b); return b; };
    frames = lab.queue({ buffers: N, size: bytes });
    const queue = frames;
    const rings = Array.from({ length: N }, (_, i) => ({ frame: queue.querybuf(i), out: alloc(bytes), verdict: alloc(VERDICT_BYTES) }));
    await spawnStages(lab, o.timeoutMs, devices);
    const [camera, gpu, display] = devices;
    const [kCamera, kGpu, kDisplay] = await Promise.all(
      [camera, gpu, display].map((d, i) => d.loadKernel(workerUrl(`kernel-${STAGES[i]}`))));
    const slots: Slot[] = [];
    for (const [index, r] of rings.entries()) {
      const [cam, gpuIn, gpuOut, displayIn, verdict] = await Promise.all([
        camera.attach(r.frame.buf), gpu.attach(r.frame.buf), gpu.attach(r.out), display.attach(r.out), display.attach(r.verdict)]);
      slots.push({ index, camera: cam, gpuIn, gpuOut, displayIn, verdict, out: r.out, verdictBuf: r.verdict });
    }

    const verdictView = new Uint8Array(VERDICT_BYTES);
    /** The last N frames retired, frame k-1 last: what stageStarts() needs. */
    const recent: FrameReport[] = [];
    const retire = async (e: InFlight): Promise<void> => {
      for (const [i, f] of e.fences.entries()) {
        if ((await f.waitAsync(o.timeoutMs)) === 0) {
          throw new DmaBufError("ETIMEDOUT", SYSCALL, `frame ${e.frame}: the ${STAGES[i]} job did not finish within ${o.timeoutMs} ms`);
        }
        if (f.status < 0) throw new DmaBufError("EIO", SYSCALL, `frame ${e.frame}: the ${STAGES[i]} job failed with errno ${-f.status}`);
      }
      await e.slot.verdictBuf.readAsync(verdictView, 0, { timeoutMs: o.timeoutMs });
      const verdict = readVerdict(verdictView);
      integrity.displayed++;
      if (!verdict.whole) integrity.displayTorn++;
      else if (!verdict.ok) integrity.displayWrong++;
      const [cameraNs, gpuNs, displayNs] = e.fences.map((f) => f.timestampNs);
      const times = { submitNs: e.submitNs, cameraNs, gpuNs, displayNs };
      const onSlot = recent.length === N ? recent[0] : undefined;
      const report: FrameReport = {
        frame: e.frame, slot: e.slot.index, ...times, ...stageStarts(times, recent.at(-1), onSlot, !o.bypassFences),
        seen: verdict.frame, whole: verdict.whole, ok: verdict.ok,
      };
      recent.push(report);
      if (recent.length > N) recent.shift();
      if (o.keepTimings) timings.push(report);
      lastDisplayNs = Math.max(lastDisplayNs, displayNs);
      options.onFrame?.(report, o.frames);
    };
    const retireOldest = async (): Promise<void> => {
      const e = inflight[0];
      await retire(e);
      inflight.shift();
      e.retired = true;
      for (const f of e.fences) f.put();
    };

    reader = new FrameReader({ width: W, height: H, buffers: N, timeoutMs: o.timeoutMs, intervalMs: o.readIntervalMs, onRead: options.onRead }, bytes);
    const bypassFences = o.bypassFences;
    for (let k = 0; k < o.frames; k++) {
      if (inflight.length === N) await retireOldest();
      if (options.signal?.aborted === true) break;
      // Frame k - N is retired, so a camera frame is free, and FIFO order makes it slot k % N.
      const free = queue.dequeue({ timeoutMs: 0 });
      const slot = slots[free.index];
      const e: InFlight = { frame: k, slot, submitNs: lab.sync.clock.nowNs(), fences: [], retired: false };
      if (k === 0) firstSubmitNs = e.submitNs;
      inflight.push(e);
      submitted++;
      reader.show({ frame: k, out: slot.out, gpuBusy: () => !e.retired && !e.fences[1].isSignaled() });
      e.fences.push(camera.submit({
        kind: "kernel", kernel: kCamera, bypassFences, buffers: [{ range: slot.camera, access: "write" }], args: [k, W, H],
      }));
      // With fences bypassed no fence travels (the gpu must not wait for the camera: that is the
      // point of the switch), and the three submissions stay back to back.
      queue.queue(free, bypassFences ? undefined : e.fences[0]);
      const filled = queue.acquire({ timeoutMs: 0 });
      e.fences.push(gpu.submit({
        kind: "kernel", kernel: kGpu, bypassFences, args: [W, H],
        inFences: filled.fence === null ? [] : [filled.fence],
        buffers: [{ range: slot.gpuIn, access: "read" }, { range: slot.gpuOut, access: "write" }],
      }));
      queue.release(filled, bypassFences ? undefined : e.fences[1]);
      e.fences.push(display.submit({
        kind: "kernel", kernel: kDisplay, bypassFences, args: [k, W, H],
        buffers: [{ range: slot.displayIn, access: "read" }, { range: slot.verdict, access: "write" }],
      }));
    }
    while (inflight.length > 0) await retireOldest();
    await reader.stop(false);
    failed = false;
  } finally {
    await reader?.stop(failed);
    for (const e of inflight.splice(0)) for (const f of e.fences) f.put();
    const stopped = await Promise.allSettled(devices.map((d) => d.shutdown({ drain: !failed })));
    for (const b of owned) b.close();
    frames?.close();
    const err = stopped.find((s) => s.status === "rejected");
    if (!failed && err !== undefined) throw (err as PromiseRejectedResult).reason;
  }
  Object.assign(integrity, { cpuReads: reader.reads, cpuTorn: reader.torn, cpuWrong: reader.wrong, cpuWaited: reader.waited });
  const { displayTorn, displayWrong, cpuTorn, cpuWrong } = integrity;
  integrity.ok = displayTorn + displayWrong + cpuTorn + cpuWrong === 0 && integrity.displayed === submitted;
  const durationNs = submitted === 0 ? 0 : lastDisplayNs - firstSubmitNs;
  return {
    frames: submitted, buffers: N, width: W, height: H, frameBytes: bytes, bypassFences: o.bypassFences, coherent: lab.coherent,
    durationNs, fps: durationNs > 0 ? submitted / (durationNs / 1e9) : 0,
    timings, integrity, devices: devices.map((d) => d.stats()),
  };
}

/*
 * The demo pipeline's options (pipeline.ts), and what it reports per frame
 * and per CPU read to the callbacks a page draws from.
 *
 * Contract: checkPipelineOptions() checks every option before anything is
 * made: EINVAL (syscall demo_pipeline) naming the option and its value.
 */
import { DmaBufError } from "../errno.js";
import { frameBytes } from "./frame.js";

/** One retired frame: its slot, its fences' times (ns, lab clock) and the display's verdict. */
export interface FrameReport {
  frame: number;
  slot: number;
  submitNs: number;
  /** When each stage could start (timing.ts: stageStarts). */
  cameraStartNs: number;
  gpuStartNs: number;
  displayStartNs: number;
  /** Each stage's out-fence timestamp. */
  cameraNs: number;
  gpuNs: number;
  displayNs: number;
  /** The frame number the display saw, whether its pixels were whole, and ok: whole, frame k, inverted. */
  seen: number;
  whole: boolean;
  ok: boolean;
}

/** One read of the CPU reader: the pixels it read (valid during the callback only) and its check. */
export interface ReaderFrame {
  /** width x height RGBA bytes, ImageData's order. */
  pixels: Uint8Array;
  width: number;
  height: number;
  /** The frame number in the header read, and the frame the reader expected there. */
  frame: number;
  expected: number;
  whole: boolean;
  ok: boolean;
}

export interface PipelineOptions {
  /** Frames to run (default 240). */
  frames?: number;
  /** Frame buffers in each ring, the frames in flight (default 4). */
  buffers?: number;
  /** Frame width in pixels (4 bytes each; default 320). */
  width?: number;
  /** Frame height in pixels (default 240). */
  height?: number;
  /** The limit of every wait (default 10 s). */
  timeoutMs?: number;
  /** Submit every job with bypassFences: true, so that no job waits for another (default false). */
  bypassFences?: boolean;
  /** The CPU reader's pause between reads (default 0: one macrotask). */
  readIntervalMs?: number;
  /** Keep every frame's report in the result (default true; a page that runs for long uses onFrame). */
  keepTimings?: boolean;
  /** Ends the run early: no frame is submitted after it, those in flight are retired. */
  signal?: AbortSignal;
  /** Called as each frame is retired, in order. */
  onFrame?: (report: FrameReport, total: number) => void;
  /** Called after each read of the CPU reader. */
  onRead?: (read: ReaderFrame) => void;
}

export type CheckedOptions = Required<Omit<PipelineOptions, "onFrame" | "onRead" | "signal">>;

const SYSCALL = "demo_pipeline";

export function checkPipelineOptions(options: PipelineOptions): CheckedOptions {
  const o = {
    frames: options.frames ?? 240, buffers: options.buffers ?? 4, width: options.width ?? 320, height: options.height ?? 240,
    timeoutMs: options.timeoutMs ?? 10_000, bypassFences: options.bypassFences ?? false,
    readIntervalMs: options.readIntervalMs ?? 0, keepTimings: options.keepTimings ?? true,
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
  check("readIntervalMs", o.readIntervalMs, 0, 60_000);
  for (const name of ["bypassFences", "keepTimings"] as const) {
    if (typeof o[name] !== "boolean") throw new DmaBufError("EINVAL", SYSCALL, `${name} ${String(o[name])} is not a boolean`);
  }
  if (frameBytes(o.width, o.height) > 64 * 1024 * 1024) {
    throw new DmaBufError("EINVAL", SYSCALL, `a ${o.width}x${o.height} frame is larger than 64 MiB`);
  }
  return o;
}

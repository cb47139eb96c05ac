/*
 * The demo's CPU reader: an async loop on the host thread that read()s the
 * latest submitted frame's output buffer (DmaBuf.readAsync, pread on an fd
 * of this thread's Process) and checks it with inspectFrame. The read waits
 * for the gpu through implicit sync, like any reader's; with bypassed
 * fences there is nothing to wait for, and what it reads may be torn.
 *
 *   show(frame)   the frame to read next (the pipeline's latest submission)
 *   stop(abort)   ends the loop after one more read (none when aborting);
 *                 rejects with the error that ended the loop, if any
 *
 * A read is ok when the frame is whole, inverted by the gpu, of the slot
 * expected and not older than the frame expected; a read that is not ok
 * is torn (its pixels not whole) or wrong (a whole frame, not that one). onRead sees each read's
 * pixels in the reader's own buffer, valid during the call only.
 */
import type { DmaBuf } from "../api/dma_buf.js";
import { HEADER_BYTES, INVERT_MASK, inspectFrame } from "./frame.js";
import type { ReaderFrame } from "./options.js";

/** A frame as the reader sees it: its number, its output buffer, and whether its gpu job is still running. */
export interface ReadTarget {
  frame: number;
  out: DmaBuf;
  gpuBusy(): boolean;
}

export interface ReaderOptions {
  width: number;
  height: number;
  buffers: number;
  timeoutMs: number;
  intervalMs: number;
  onRead?: (read: ReaderFrame) => void;
}

export class FrameReader {
  /** read() calls, frames found torn or wrong, and reads issued while the gpu was still writing. */
  reads = 0;
  torn = 0;
  wrong = 0;
  waited = 0;
  private target: ReadTarget | undefined;
  private stopping = false;
  private aborted = false;
  private error: unknown;
  private readonly view: Uint8Array;
  private readonly loop: Promise<void>;

  constructor(private readonly o: ReaderOptions, bytes: number) {
    this.view = new Uint8Array(bytes);
    this.loop = this.run().catch((e: unknown) => { this.error = e; });
  }

  show(target: ReadTarget): void {
    this.target = target;
  }

  async stop(abort: boolean): Promise<void> {
    this.stopping = true;
    this.aborted ||= abort;
    await this.loop;
    if (this.error !== undefined && !abort) throw this.error;
  }

  private async run(): Promise<void> {
    for (;;) {
      const last = this.stopping;
      const t = this.target;
      if (t !== undefined && !this.aborted) await this.read(t);
      if (last) return;
      await new Promise((resolve) => setTimeout(resolve, this.o.intervalMs));
    }
  }

  private async read(t: ReadTarget): Promise<void> {
    const { width, height, buffers } = this.o;
    if (t.gpuBusy()) this.waited++;
    await t.out.readAsync(this.view, 0, { timeoutMs: this.o.timeoutMs });
    const info = inspectFrame([this.view], width, height);
    const ok = info.whole && info.mask === INVERT_MASK && info.frame % buffers === t.frame % buffers && info.frame >= t.frame;
    this.reads++;
    if (!info.whole) this.torn++;
    else if (!ok) this.wrong++;
    this.o.onRead?.({
      pixels: this.view.subarray(HEADER_BYTES, HEADER_BYTES + width * height * 4), width, height,
      frame: info.frame, expected: t.frame, whole: info.whole, ok,
    });
  }
}

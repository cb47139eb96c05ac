/*
 * The lab clock: monotonic nanoseconds since the lab was created, the same
 * in every thread (performance.timeOrigin + performance.now() against an
 * epoch kept in the control block). Fence timestamps and deadlines use it;
 * as an f64 it counts whole nanoseconds exactly for 104 days.
 */
import type { Arena } from "../memory/arena.js";
import { kCtlClockEpochMs } from "../memory/layout.js";

const absoluteMs = (): number => performance.timeOrigin + performance.now();

export class LabClock {
  private readonly epochMs: number;

  constructor(arena: Arena) {
    this.epochMs = new Float64Array(arena.buffer)[arena.control(kCtlClockEpochMs) >>> 3];
  }

  /** Sets the epoch; once, when the lab is created. */
  static init(arena: Arena): void {
    new Float64Array(arena.buffer)[arena.control(kCtlClockEpochMs) >>> 3] = absoluteMs();
  }

  nowNs(): number {
    return Math.round((absoluteMs() - this.epochMs) * 1e6);
  }
}

/*
 * The lab clock: monotonic nanoseconds since the lab was created, the same
 * in every thread (performance.timeOrigin + performance.now() against an
 * epoch kept in the control block). Fence timestamps and deadlines use it;
 * as an f64 it counts whole nanoseconds exactly for 104 days.
 */
import type { Arena } from "../memory/arena.js";
import { CTL_CLOCK_EPOCH_MS } from "../memory/layout.js";

const absoluteMs = (): number => performance.timeOrigin + performance.now();

export class LabClock {
  /** This thread's performance.now() origin on the lab clock, in ms. */
  private readonly originMs: number;

  constructor(arena: Arena) {
    // Subtracting the two large numbers once keeps the rounding out of every
    // reading: nowNs() then adds a small offset to performance.now().
    this.originMs = performance.timeOrigin - new Float64Array(arena.buffer)[arena.control(CTL_CLOCK_EPOCH_MS) >>> 3];
  }

  /** Sets the epoch; once, when the lab is created. */
  static init(arena: Arena): void {
    new Float64Array(arena.buffer)[arena.control(CTL_CLOCK_EPOCH_MS) >>> 3] = absoluteMs();
  }

  nowNs(): number {
    return Math.round((performance.now() + this.originMs) * 1e6);
  }
}

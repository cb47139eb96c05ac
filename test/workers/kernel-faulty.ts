/*
 * A device kernel that misbehaves on request, for the fault tests.
 * args[0] picks the fault:
 *   FAULT_THROW        throws inside the job
 *   FAULT_EXIT         ends the worker (process.exit)
 *   FAULT_ASYNC_THROW  returns, then throws at the worker's top level
 *   FAULT_SPIN         runs args[1] ms without returning (a hung shader)
 * Each touches its first buffer, so that it is a real kernel of the device.
 */
import type { KernelContext } from "../../src/devices/runtime.js";

export const FAULT_THROW = 0;
export const FAULT_EXIT = 1;
export const FAULT_ASYNC_THROW = 2;
export const FAULT_SPIN = 3;

export default function faulty(ctx: KernelContext): void {
  const view = ctx.buffers[0][0];
  view[0]++;
  switch (ctx.args[0]) {
    case FAULT_THROW:
      throw new Error("kernel fault");
    case FAULT_EXIT:
      process.exit(3);
      break;
    case FAULT_ASYNC_THROW:
      setTimeout(() => { throw new Error("uncaught in the device worker"); }, 0);
      break;
    case FAULT_SPIN: {
      const end = performance.now() + ctx.args[1];
      let i = 0;
      while (performance.now() < end) view[i++ % view.length]++;
      break;
    }
  }
}

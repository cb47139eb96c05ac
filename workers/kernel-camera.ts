/*
 * The demo's camera (a device kernel, loaded with Device.loadKernel): renders
 * frame args[0] of args[1] x args[2] pixels into its one buffer, header
 * last (src/demo/frame.ts).
 */
import type { KernelContext } from "../src/devices/runtime.js";
import { renderFrame } from "../src/demo/frame.js";

export default function camera(ctx: KernelContext): void {
  const [k, width, height] = ctx.args;
  renderFrame(ctx.buffers[0], k, width, height);
}

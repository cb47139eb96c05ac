/*
 * The demo's gpu (a device kernel): buffer 0 is the camera's frame (read),
 * buffer 1 the output frame (write): the frame with RGB inverted, its header
 * carried along (src/demo/frame.ts). args: width, height.
 */
import type { KernelContext } from "../src/devices/runtime.js";
import { invertFrame } from "../src/demo/frame.js";

export default function gpu(ctx: KernelContext): void {
  const [width, height] = ctx.args;
  invertFrame(ctx.buffers[0], ctx.buffers[1], width, height);
}

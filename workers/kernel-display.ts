/*
 * The demo's display (a device kernel): checks that the output frame in
 * buffer 0 (read) is whole and is frame args[0] as the gpu made it, and
 * writes that verdict into buffer 1 (write). args: k, width, height.
 */
import type { KernelContext } from "../src/devices/runtime.js";
import { inspectFrame, writeVerdict } from "../src/demo/frame.js";

export default function display(ctx: KernelContext): void {
  const [k, width, height] = ctx.args;
  writeVerdict(ctx.buffers[1][0], k, inspectFrame(ctx.buffers[0], width, height));
}

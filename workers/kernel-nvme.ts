/*
 * The storage device's kernel (loaded into its device worker by
 * spawnStorage): moves bytes between the backing file and the pages its
 * IOMMU translated the job's ranges to, with fs.readSync/writeSync straight
 * into views of the shared memory (no bounce buffer). Arguments: [host fd,
 * position low, position high, NVME_READ (0) or NVME_WRITE (1)]; the ranges
 * follow each other in the file from that position. A transfer that comes
 * up short (the file shrank under the device) fails the job with EIO.
 */
import { readSync, writeSync } from "node:fs";
import { DmaBufError } from "../src/errno.js";
import type { KernelContext } from "../src/devices/runtime.js";

export default function nvme(ctx: KernelContext): void {
  const [fd, lo, hi, op] = ctx.args;
  let pos = hi * 2 ** 32 + lo;
  for (const runs of ctx.buffers) {
    for (const view of runs) {
      let done = 0;
      while (done < view.byteLength) {
        const n = op === 1 ? writeSync(fd, view, done, view.byteLength - done, pos + done) : readSync(fd, view, done, view.byteLength - done, pos + done);
        if (n === 0) throw new DmaBufError("EIO", "nvme_io", `the backing file ended at ${pos + done}`);
        done += n;
      }
      pos += view.byteLength;
    }
  }
}

/*
 * The storage device's kernel (loaded into its device worker by
 * spawnStorage): moves bytes between the backing file and the pages its
 * IOMMU translated the job's ranges to (src/devices/backing.ts: Node's
 * fs.readSync/writeSync straight into views of the shared memory, or in a
 * browser the OPFS file named by this module's ?opfs=, through its sync
 * access handle). Arguments: [host fd,
 * position low, position high, NVME_READ (0) or NVME_WRITE (1)]; the ranges
 * follow each other in the file from that position. A transfer that comes
 * up short (the file shrank under the device) fails the job with EIO.
 */
import type { KernelContext } from "../src/devices/runtime.js";
import { deviceIo, openDeviceFile } from "../src/devices/backing.js";

/**
 * The OPFS backing's sync access handle (browsers: loaded with ?opfs=<name>),
 * opened at the first request, so that the host may fill the file before any
 * I/O (the handle locks it); undefined with Node's fs.
 */
let file: ReturnType<typeof openDeviceFile> | undefined;

export default async function nvme(ctx: KernelContext): Promise<void> {
  const opened = await (file ??= openDeviceFile(import.meta.url));
  const [fd, lo, hi, op] = ctx.args;
  let pos = hi * 2 ** 32 + lo;
  for (const runs of ctx.buffers) {
    for (const view of runs) {
      deviceIo(opened, fd, view, pos, op === 1);
      pos += view.byteLength;
    }
  }
}

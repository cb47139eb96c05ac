/*
 * io_uring test helpers: tearing rings down after each test.
 *
 * exitRings(rings) empties `rings`, exiting each (io_uring_queue_exit) and
 * waiting until its file has really closed (an SQPOLL thread has stopped).
 */
import { io_uring_queue_exit, type IoUring } from "../../src/io_uring/liburing.js";
import type { IoUringFile } from "../../src/uapi/io_uring_file.js";

export async function exitRings(rings: IoUring[]): Promise<void> {
  for (const r of rings.splice(0)) {
    const file = r.proc.file(r.fd) as IoUringFile;
    io_uring_queue_exit(r);
    await file.closed();
  }
}

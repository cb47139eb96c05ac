/*
 * A thread that receives an fd from the main thread the way a process
 * receives one over a Unix socket: it imports the token into its own
 * Process, posts "ready", waits for the start flag, then does its one action
 * and closes everything:
 *   hold    (a dma-buf token) only holds the fd until the start flag; reports
 *           the fdinfo text it saw while holding it
 *   inc     (an sw_sync token) SW_SYNC_IOC_INC by 1: signals the fence the
 *           main thread is waiting on
 */
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { FIRST_FD, Process, SW_SYNC_IOC_INC, type FdToken } from "../../src/uapi/index.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface UapiFdPeerData {
  handle: LabHandle;
  token: FdToken;
  action: "hold" | "inc";
  start: Int32Array;
  timeoutMs: number;
}

export interface UapiFdPeerReport {
  type: "done";
  fd: number;
  fdinfo: string;
  /** Fds still open in the worker's process after it closed everything (0). */
  openAfter: number;
}

runWorker<UapiFdPeerData, UapiFdPeerReport>(async ({ handle, token, action, start, timeoutMs }) => {
  const lab = await Lab.attach(handle);
  const proc = new Process(lab, { name: "uapi-fd-peer" });
  try {
    const fd = proc.importFd(token);
    const fdinfo = action === "hold" ? proc.fdinfo(fd) : "";
    readyThenAwaitStart(start, timeoutMs, `uapi-fd-peer (${action})`);
    if (action === "inc") proc.ioctl(fd, SW_SYNC_IOC_INC, 1);
    proc.close(fd);
    return { type: "done", fd, fdinfo, openAfter: proc.fds.filter((n) => n >= FIRST_FD).length };
  } finally {
    proc.closeAll();
    lab.close();
  }
});

/*
 * A thread that imports fd tokens from the main thread into its own Process,
 * one after the other, and reports for each either the DmaBufError code it
 * got or the fdinfo of the fd it installed (then closes it).
 */
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { FIRST_FD, Process, type FdToken } from "../../src/uapi/index.js";
import { runWorker } from "./protocol.js";

export interface TokenImporterData {
  handle: LabHandle;
  tokens: FdToken[];
}

export interface TokenImporterReport {
  type: "done";
  results: ({ code: string } | { fdinfo: string })[];
  /** Fds from FIRST_FD up still open in the worker's process at the end (0; 0-2 are the standard streams). */
  openAfter: number;
}

runWorker<TokenImporterData, TokenImporterReport>(async ({ handle, tokens }) => {
  const lab = await Lab.attach(handle);
  const proc = new Process(lab, { name: "token-importer" });
  try {
    const results = tokens.map((token) => {
      try {
        const fd = proc.importFd(token);
        const fdinfo = proc.fdinfo(fd);
        proc.close(fd);
        return { fdinfo };
      } catch (e) {
        if (e instanceof DmaBufError) return { code: e.code };
        throw e;
      }
    });
    return { type: "done", results, openAfter: proc.fds.filter((n) => n >= FIRST_FD).length };
  } finally {
    proc.closeAll();
    lab.close();
  }
});

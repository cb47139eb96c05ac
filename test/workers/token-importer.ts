/*
 * A thread that imports fd tokens from the main thread into its own Process,
 * one after the other, and reports for each either the DmaBufError code it
 * got or the fdinfo of the fd it installed (then closes it).
 */
import { DmaBufError } from "../../src/errno.js";
import { Lab, type LabHandle } from "../../src/lab.js";
import { Process, type FdToken } from "../../src/uapi/index.js";
import { runWorker } from "./protocol.js";

export interface TokenImporterData {
  handle: LabHandle;
  tokens: FdToken[];
}

export interface TokenImporterReport {
  type: "done";
  results: ({ code: string } | { fdinfo: string })[];
  /** Fds still open in the worker's process at the end (0). */
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
    return { type: "done", results, openAfter: proc.fds.length };
  } finally {
    proc.closeAll();
    lab.close();
  }
});

/*
 * The host's file system, for the parts of the lab that do real file I/O
 * (regular files opened beneath a Process's root, the storage device's
 * backing file). Node's fs is taken with process.getBuiltinModule, not a
 * static import, so that browser bundles keep no node: import; there it is
 * ENOSYS naming the call (the storage device's backing uses the Origin
 * Private File System there instead: src/devices/backing.ts).
 */
import type * as NodeFs from "node:fs";
import { DmaBufError, errnoNumbers, type ErrnoCode } from "./errno.js";

export type HostFs = typeof NodeFs;

let cached: HostFs | undefined;

/** Node's fs module; ENOSYS (naming `syscall`) where there is none. */
export function hostFs(syscall: string): HostFs {
  if (cached !== undefined) return cached;
  const get = typeof __DMABUF_LAB_BROWSER_ROOT__ !== "string"
    ? (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule
    : undefined;
  const fs = get?.("node:fs") as HostFs | undefined;
  if (fs === undefined) throw new DmaBufError("ENOSYS", syscall, "real files need Node's fs (not available in this runtime)");
  cached = fs;
  return fs;
}

/** A host error (ENOENT, EACCES, ...) as a DmaBufError with the same code, else EIO. */
export function hostError(e: unknown, syscall: string, what: string): DmaBufError {
  const code = (e as { code?: unknown }).code;
  const known: ErrnoCode = typeof code === "string" && code in errnoNumbers ? code as ErrnoCode : "EIO";
  return new DmaBufError(known, syscall, `${what}: ${(e as Error).message ?? String(e)}`, { cause: e });
}

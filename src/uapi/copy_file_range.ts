/*
 * copy_file_range(2): `len` bytes from fd_in at off_in to fd_out at off_out,
 * between regular files beneath the lab's directory, and (the RFC's v4)
 * between a regular file and a dma-buf in either direction.
 *
 * Checks, in the kernel's order (vfs_copy_file_range,
 * generic_copy_file_checks), each failing with nothing changed:
 *   fd_in or fd_out not open                          EBADF
 *   flags not 0                                       EINVAL
 *   an offset that is neither null nor a number       EFAULT (a bad pointer)
 *   a negative or fractional offset or length         EINVAL
 *   a file that is neither a regular file nor a dma-buf, or two dma-bufs   EINVAL
 *   fd_in not open for reading, fd_out not for writing                    EBADF
 *   an offset + len past 2^53 - 1 (loff_t's overflow here)                EOVERFLOW
 *   direct I/O (the regular file opened O_DIRECT) with an offset or len
 *   not in 512-byte blocks                            EINVAL
 *   the length is shortened to the end of fd_in (0 at or past it)
 *   the same file with overlapping ranges             EINVAL
 *   regular files on different host file systems      EXDEV (the kernel's
 *       rule since 5.19 for file systems without their own copy_file_range)
 *   a dma-buf destination at or past its end          ENOSPC (it never grows;
 *       a copy across its end is short), as the read/write path
 *   len 0, or nothing left to copy                    0
 * An offset of null (or undefined) is the file's position, which advances
 * by the count copied; a number leaves the position alone (the kernel also
 * writes the advanced offset back through the pointer: here the count
 * returned says it).
 * Regular to regular: the kernel's generic fallback (splice through the
 * page cache), a copy through a bounce buffer in the calling thread.
 * With a dma-buf: dma_buf_rw_file.ts (buffered: the CPU from the page cache;
 * direct: the DMA of the storage device under the lab's directory).
 * A host error after some bytes were copied returns the shorter count.
 */
import { describe, intArg } from "../args.js";
import { DmaBufError } from "../errno.js";
import { hostError, hostFs } from "../host_fs.js";
import type { LabCore } from "../lab.js";
import { DmaBufFile } from "./dma_buf_file.js";
import { checkDirectAlign, moveFileDmaBuf } from "./dma_buf_rw_file.js";
import type { OpenFile } from "./file.js";
import { RegularFile } from "./regular_file.js";

const SYSCALL = "copy_file_range";
/** The bounce buffer of a regular-to-regular copy. */
const BOUNCE_BYTES = 1024 * 1024;

/** An offset argument: null or undefined (the file position), else a position. */
function offsetArg(value: unknown, what: string): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "number") throw new DmaBufError("EFAULT", SYSCALL, `${what} ${describe(value)} is neither null nor a number`);
  return intArg(value, SYSCALL, what);
}

function kindOf(file: OpenFile, fd: number): RegularFile | DmaBufFile {
  if (file instanceof RegularFile || file instanceof DmaBufFile) return file;
  throw new DmaBufError("EINVAL", SYSCALL, `fd ${fd} is a ${file.kind} file, neither a regular file nor a dma-buf`);
}

export interface CopyFileRangeArgs {
  fdIn: number;
  fileIn: OpenFile;
  offIn: unknown;
  fdOut: number;
  fileOut: OpenFile;
  offOut: unknown;
  len: unknown;
  flags: unknown;
}

/** The system call, once the fds were looked up (EBADF for a closed one is the caller's). */
export function copyFileRange(lab: LabCore, a: CopyFileRangeArgs): number {
  if (a.flags !== 0) throw new DmaBufError("EINVAL", SYSCALL, `flags ${describe(a.flags)} must be 0`);
  const explicitIn = offsetArg(a.offIn, "off_in");
  const explicitOut = offsetArg(a.offOut, "off_out");
  let len = intArg(a.len, SYSCALL, "len");
  const fin = kindOf(a.fileIn, a.fdIn);
  const fout = kindOf(a.fileOut, a.fdOut);
  if (fin instanceof DmaBufFile && fout instanceof DmaBufFile) {
    throw new DmaBufError("EINVAL", SYSCALL, `fd ${a.fdIn} and fd ${a.fdOut} are both dma-bufs: one side must be a regular file`);
  }
  if (!fin.canRead) throw new DmaBufError("EBADF", SYSCALL, `fd ${a.fdIn} is not open for reading (access mode ${fin.accessModeName})`);
  if (!fout.canWrite) throw new DmaBufError("EBADF", SYSCALL, `fd ${a.fdOut} is not open for writing (access mode ${fout.accessModeName})`);
  const posIn = explicitIn ?? fin.pos;
  const posOut = explicitOut ?? fout.pos;
  for (const [what, pos] of [["off_in", posIn], ["off_out", posOut]] as const) {
    if (pos + len > Number.MAX_SAFE_INTEGER) throw new DmaBufError("EOVERFLOW", SYSCALL, `${what} ${pos} + len ${len} passes the largest file offset`);
  }
  const regular = fin instanceof RegularFile ? fin : fout as RegularFile;
  const buf = fin instanceof DmaBufFile ? fin : fout instanceof DmaBufFile ? fout : undefined;
  const direct = buf !== undefined && regular.direct;
  if (direct) {
    const toBuffer = buf === fout;
    checkDirectAlign(toBuffer ? posIn : posOut, toBuffer ? posOut : posIn, len, SYSCALL);
  }
  // The length, shortened to the end of the source.
  const sizeIn = fin instanceof RegularFile ? fin.size() : fin.buf.size;
  len = posIn >= sizeIn ? 0 : Math.min(len, sizeIn - posIn);
  let n: number;
  if (buf === undefined) {
    const a1 = hostFs(SYSCALL).fstatSync((fin as RegularFile).hostFd);
    const a2 = hostFs(SYSCALL).fstatSync((fout as RegularFile).hostFd);
    if (a1.dev === a2.dev && a1.ino === a2.ino && posOut + len > posIn && posOut < posIn + len) {
      throw new DmaBufError("EINVAL", SYSCALL, `[${posIn}, +${len}) and [${posOut}, +${len}) overlap in the same file`);
    }
    if (a1.dev !== a2.dev) throw new DmaBufError("EXDEV", SYSCALL, `fd ${a.fdIn} and fd ${a.fdOut} are on different file systems`);
    n = len === 0 ? 0 : bounceCopy(fin as RegularFile, posIn, fout as RegularFile, posOut, len);
  } else {
    const toBuffer = buf === fout;
    const size = buf.buf.size;
    if (toBuffer && posOut >= size && len > 0) {
      throw new DmaBufError("ENOSPC", SYSCALL, `off_out ${posOut} is at or past the end of a ${size}-byte dma-buf (it never grows)`);
    }
    if (toBuffer) len = Math.min(len, size - posOut);
    n = len === 0 ? 0 : moveFileDmaBuf(lab, {
      file: regular, buf: buf.buf, toBuffer, filePos: toBuffer ? posIn : posOut, bufPos: toBuffer ? posOut : posIn,
      bytes: len, direct, nonblock: buf.nonblock, syscall: SYSCALL,
    });
  }
  if (explicitIn === null) fin.pos = posIn + n;
  if (explicitOut === null) fout.pos = posOut + n;
  return n;
}

/** The generic fallback: through a bounce buffer, stopping early at the end of the source; a host error after some bytes gives the shorter count. */
function bounceCopy(fin: RegularFile, posIn: number, fout: RegularFile, posOut: number, len: number): number {
  const fs = hostFs(SYSCALL);
  const bounce = new Uint8Array(Math.min(len, BOUNCE_BYTES));
  let done = 0;
  try {
    while (done < len) {
      const got = fs.readSync(fin.hostFd, bounce, 0, Math.min(bounce.length, len - done), posIn + done);
      if (got === 0) break;
      for (let w = 0; w < got;) w += fs.writeSync(fout.hostFd, bounce, w, got - w, posOut + done + w);
      done += got;
    }
  } catch (e) {
    if (done > 0) return done;
    throw hostError(e, SYSCALL, `fd ${fin.path} -> ${fout.path}`);
  }
  return done;
}

/*
 * The standard streams: fds 0, 1 and 2 of every Process, as a process
 * started with nothing attached to its terminal has them. They are there so
 * that the numbers are never handed out for a new file (a kernel test uses
 * fd 0 as "a file that is not a memfd", and code that closes fd 0 by mistake
 * must not close a dma-buf), and so that calls on them answer as on a real
 * process's stdio.
 *
 * Contract: stdin is O_RDONLY, stdout and stderr O_WRONLY (so write(0) and
 * read(1) are EBADF, the VFS's access-mode check). A read of stdin is end of
 * file (0); a write to stdout or stderr is accepted whole and discarded (the
 * lab prints nothing: functions return data). ioctl ENOTTY (no terminal
 * ioctls are modelled), llseek ESPIPE, mmap ENODEV, poll DEFAULT_POLLMASK:
 * OpenFile's defaults, as for a pipe. As a udmabuf item it is not a memfd
 * (EBADFD). fdinfo has only the generic lines; it cannot be passed to
 * another thread (EINVAL). close() of one is allowed, and the number stays
 * unused: fds are handed out from 3 up.
 */
import { DmaBufError } from "../errno.js";
import { isWrite, type RwSyscall } from "../dmabuf/rw.js";
import { OpenFile, type IoOptions } from "./file.js";
import { O_RDONLY, O_WRONLY } from "./uapi.js";

export const STDIN_FILENO = 0;
export const STDOUT_FILENO = 1;
export const STDERR_FILENO = 2;

export class StdioFile extends OpenFile {
  readonly kind = "stdio";

  constructor(readonly fd: number) {
    super(fd === STDIN_FILENO ? O_RDONLY : O_WRONLY);
  }

  protected drop(_last: boolean): void {}

  override rw(syscall: RwSyscall, iov: Uint8Array[], pos: number | undefined, _io?: IoOptions): number {
    if (pos !== undefined) throw new DmaBufError("ESPIPE", syscall, `fd ${this.fd} is a stream; it has no position`);
    return isWrite(syscall) ? iov.reduce((n, v) => n + v.byteLength, 0) : 0;
  }
}

/*
 * DmaBufError: the one error type of every layer, shaped like Node's
 * SystemError. `code` is the kernel's name ('EINVAL'), `errno` its Linux
 * number, `syscall` the operation that failed, and the message names the bad
 * value. A call that throws one has changed nothing.
 */

/** Linux errno numbers (asm-generic/errno-base.h, errno.h). */
export const errnoNumbers = {
  EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, ENOEXEC: 8, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, EMFILE: 24, ENOTTY: 25, EFBIG: 27, ENOSPC: 28,
  ESPIPE: 29, EDEADLK: 35, ENOSYS: 38, ELOOP: 40, ETIME: 62, EOVERFLOW: 75, EBADFD: 77, EOPNOTSUPP: 95, ETIMEDOUT: 110, ECANCELED: 125,
} as const;

export type ErrnoCode = keyof typeof errnoNumbers;

const codeByNumber = new Map<number, ErrnoCode>(
  Object.entries(errnoNumbers).map(([code, n]) => [n, code as ErrnoCode]),
);

export class DmaBufError extends Error {
  override name = "DmaBufError";
  readonly code: ErrnoCode;
  readonly errno: number;
  readonly syscall: string;

  constructor(code: ErrnoCode, syscall: string, message: string, options?: {
    /** The error that led to this one (Error.cause). */
    cause?: unknown;
  }) {
    super(`${code}: ${syscall}: ${message}`, options);
    this.code = code;
    this.errno = errnoNumbers[code];
    this.syscall = syscall;
  }

  /** The code for a (positive or negative) errno number, as the engine returns them. */
  static codeOf(errno: number): ErrnoCode {
    const code = codeByNumber.get(Math.abs(errno));
    if (code === undefined) throw new RangeError(`unknown errno ${errno}`);
    return code;
  }
}

/** The error a fence carries for `e`: its negative errno, EIO for anything but a DmaBufError. */
export function fenceError(e: unknown): number {
  return -(e instanceof DmaBufError ? e.errno : errnoNumbers.EIO);
}

/** Formats an arena offset or size for messages. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

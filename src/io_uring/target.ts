/*
 * What the io_uring kernel side needs of a file: an IoTarget, a plain
 * description that fits in a registered-file slot of the arena (so that the
 * SQ thread, another worker, can use it) and that a file of the uapi layer
 * answers from ioTarget().
 *
 *   kind       TARGET_REG: a regular file, `handle` is the host's fd (Node's
 *              fds belong to the process, so every worker may use them);
 *              TARGET_BLK: a storage device, `handle` is its storage record
 *              (src/devices/storage_record.ts)
 *   flags      the access mode (O_RDONLY, O_WRONLY, O_RDWR)
 *   blockSize  O_DIRECT's logical block size (offsets, lengths and buffer
 *              addresses must be multiples: EINVAL), 0 for buffered I/O
 * A slot holds a reference on the open file description, taken by
 * io_uring_register and dropped when the table goes.
 */
export const TARGET_REG = 1;
export const TARGET_BLK = 2;

export interface IoTarget {
  kind: typeof TARGET_REG | typeof TARGET_BLK;
  handle: number;
  flags: number;
  blockSize: number;
}

/** A file that io_uring can read and write; `pos` is its file position (offset -1 in an SQE). */
export interface IoTargetFile {
  ioTarget(): IoTarget;
  pos: number;
}

export function isIoTargetFile(f: unknown): f is IoTargetFile {
  return typeof (f as { ioTarget?: unknown }).ioTarget === "function";
}

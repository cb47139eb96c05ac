/*
 * Regular files: real files of the host, opened beneath the directory a
 * Process was given (ProcessOptions.root). They are what io_uring READ/WRITE
 * and copy_file_range read and write besides dma-bufs and the storage device.
 *
 * Contract:
 *   openBeneath(root, path, flags)  the path is resolved beneath root, as
 *       openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) does: "/a/b" and "a/b"
 *       both name root/a/b; a ".." that would leave root is EXDEV; a symbolic
 *       link anywhere on the path is ELOOP (the last component is opened with
 *       O_NOFOLLOW too); a directory is EISDIR; a missing file ENOENT unless
 *       O_CREAT. Nothing outside root is ever opened or created.
 *   RegularFile  read/write (pos or the file position), llseek, fdinfo; with
 *       O_DIRECT every offset, length and buffer address (its arena offset,
 *       or byteOffset for a foreign view) must be a multiple of
 *       DIRECT_ALIGN (512), else EINVAL with nothing done. The host fd closes
 *       with the last reference.
 */
import { DmaBufError } from "../errno.js";
import { hostError, hostFs } from "../host_fs.js";
import { TARGET_REG, type IoTarget, type IoTargetFile } from "../io_uring/target.js";
import { isWrite, type RwSyscall } from "../dmabuf/rw.js";
import { OpenFile, type IoOptions } from "./file.js";
import { O_ACCMODE, O_CREAT, O_DIRECT, O_EXCL, O_RDONLY, O_TRUNC, O_WRONLY, SEEK_CUR, SEEK_END, SEEK_SET } from "./uapi.js";

/** The logical block size of O_DIRECT on regular files. */
export const DIRECT_ALIGN = 512;

/** The host path of `path` beneath `root`, every component checked (EXDEV, ELOOP, ENOTDIR). */
export function resolveBeneath(root: string, path: string, syscall: string): { host: string; exists: boolean } {
  const fs = hostFs(syscall);
  if (typeof path !== "string" || path.length === 0 || path.includes("\0")) {
    throw new DmaBufError("ENOENT", syscall, `path ${JSON.stringify(path)} is empty or not a string`);
  }
  const parts: string[] = [];
  for (const c of path.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (parts.length === 0) throw new DmaBufError("EXDEV", syscall, `${path}: '..' leaves the lab's directory`);
      parts.pop();
    } else {
      parts.push(c);
    }
  }
  if (parts.length === 0) throw new DmaBufError("EISDIR", syscall, `${path} is the lab's directory itself`);
  let host = root;
  for (const [i, c] of parts.entries()) {
    host = `${host}/${c}`;
    let st: ReturnType<typeof fs.lstatSync>;
    try {
      st = fs.lstatSync(host);
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") {
        if (i === parts.length - 1) return { host, exists: false };
        throw new DmaBufError("ENOENT", syscall, `${path}: directory '${parts.slice(0, i + 1).join("/")}' does not exist`);
      }
      throw hostError(e, syscall, path);
    }
    if (st.isSymbolicLink()) throw new DmaBufError("ELOOP", syscall, `${path}: '${parts.slice(0, i + 1).join("/")}' is a symbolic link (not followed)`);
    if (i < parts.length - 1 && !st.isDirectory()) throw new DmaBufError("ENOTDIR", syscall, `${path}: '${parts.slice(0, i + 1).join("/")}' is not a directory`);
    if (i === parts.length - 1 && st.isDirectory()) throw new DmaBufError("EISDIR", syscall, `${path} is a directory`);
  }
  return { host, exists: true };
}

/** open(2) of a regular file beneath root: a RegularFile holding the host fd. */
export function openBeneath(root: string, path: string, flags: number): RegularFile {
  const syscall = "openat";
  const fs = hostFs(syscall);
  const { host, exists } = resolveBeneath(root, path, syscall);
  if (!exists && (flags & O_CREAT) === 0) throw new DmaBufError("ENOENT", syscall, `${path}: no such file`);
  if (exists && (flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL)) throw new DmaBufError("EEXIST", syscall, `${path} exists (O_EXCL)`);
  const mode = flags & O_ACCMODE;
  if (mode === O_ACCMODE) throw new DmaBufError("EINVAL", syscall, `${path}: access mode 3 is not O_RDONLY, O_WRONLY or O_RDWR`);
  const c = fs.constants;
  let hostFlags = (mode === O_RDONLY ? c.O_RDONLY : mode === O_WRONLY ? c.O_WRONLY : c.O_RDWR) | c.O_NOFOLLOW;
  if ((flags & O_CREAT) !== 0) hostFlags |= c.O_CREAT | ((flags & O_EXCL) !== 0 ? c.O_EXCL : 0);
  if ((flags & O_TRUNC) !== 0 && mode !== O_RDONLY) hostFlags |= c.O_TRUNC;
  let fd: number;
  try {
    fd = fs.openSync(host, hostFlags, 0o644);
  } catch (e) {
    throw hostError(e, syscall, path);
  }
  return new RegularFile(fd, path, flags & (O_ACCMODE | O_DIRECT));
}

export class RegularFile extends OpenFile implements IoTargetFile {
  readonly kind = "regular" as const;

  /** Takes over the host fd `hostFd`. */
  constructor(readonly hostFd: number, readonly path: string, flags: number) {
    super(flags);
  }

  get direct(): boolean {
    return (this.flags & O_DIRECT) !== 0;
  }

  ioTarget(): IoTarget {
    return { kind: TARGET_REG, handle: this.hostFd, flags: this.flags & O_ACCMODE, blockSize: this.direct ? DIRECT_ALIGN : 0 };
  }

  /** The file's size now (fstat). */
  size(): number {
    return hostFs("fstat").fstatSync(this.hostFd).size;
  }

  protected drop(last: boolean): void {
    if (last) hostFs("close").closeSync(this.hostFd);
  }

  override rw(syscall: RwSyscall, iov: Uint8Array[], pos: number | undefined, _io?: IoOptions): number {
    const write = isWrite(syscall);
    const mode = this.flags & O_ACCMODE;
    if (write ? mode === O_RDONLY : mode === O_WRONLY) throw new DmaBufError("EBADF", syscall, `${this.path} is not open for ${write ? "writing" : "reading"}`);
    const at = pos ?? this.pos;
    if (!Number.isSafeInteger(at) || at < 0) throw new DmaBufError("EINVAL", syscall, `position ${at} is negative or not an integer`);
    for (const [i, v] of iov.entries()) {
      if (!(v instanceof Uint8Array)) throw new DmaBufError("EFAULT", syscall, `iovec ${i} is not a Uint8Array`);
      if (this.direct && (v.byteOffset % DIRECT_ALIGN !== 0 || v.byteLength % DIRECT_ALIGN !== 0)) {
        throw new DmaBufError("EINVAL", syscall, `O_DIRECT: iovec ${i} (address ${v.byteOffset}, ${v.byteLength} bytes) is not ${DIRECT_ALIGN}-byte aligned`);
      }
    }
    if (this.direct && at % DIRECT_ALIGN !== 0) throw new DmaBufError("EINVAL", syscall, `O_DIRECT: offset ${at} is not a multiple of ${DIRECT_ALIGN}`);
    const n = hostRw(this.hostFd, iov, at, write, syscall, this.path);
    if (pos === undefined) this.pos = at + n;
    return n;
  }

  override llseek(offset: number, whence: number): number {
    const base = whence === SEEK_SET ? 0 : whence === SEEK_CUR ? this.pos : whence === SEEK_END ? this.size() : NaN;
    if (Number.isNaN(base)) throw new DmaBufError("EINVAL", "lseek", `whence ${whence} is not SEEK_SET, SEEK_CUR or SEEK_END`);
    const to = base + offset;
    if (!Number.isSafeInteger(to) || to < 0) throw new DmaBufError("EINVAL", "lseek", `position ${to} is negative or not an integer`);
    this.pos = to;
    return to;
  }

  override fdinfo(): string {
    return `pos:\t${this.pos}\nflags:\t0${this.flags.toString(8)}\npath:\t${this.path}\n`;
  }
}

/**
 * Reads or writes the views at `pos` of a host fd, in order, straight
 * between the file and the views' memory (the arena's, for arena views: no
 * intermediate copy). A read stops at the end of the file. Host errors keep
 * their code.
 */
export function hostRw(hostFd: number, iov: readonly Uint8Array[], pos: number, write: boolean, syscall: string, what: string): number {
  const fs = hostFs(syscall);
  let n = 0;
  try {
    for (const v of iov) {
      let done = 0;
      while (done < v.byteLength) {
        const k = write ? fs.writeSync(hostFd, v, done, v.byteLength - done, pos + n + done) : fs.readSync(hostFd, v, done, v.byteLength - done, pos + n + done);
        if (k === 0) return n + done; // end of file
        done += k;
      }
      n += done;
    }
  } catch (e) {
    if (n > 0) return n; // a short transfer, as the kernel reports one
    throw hostError(e, syscall, what);
  }
  return n;
}

/*
 * The storage device's backing file, on the host's side (spawnStorage) and
 * on the device's (the nvme kernel in the device worker, workers/kernel-nvme.ts).
 *
 *   Node      a host file through Node's fs (src/host_fs.ts): the host opens
 *             it, sizes it (ftruncate up to the capacity, never down) and
 *             passes its fd in every job (workers share the process's fd
 *             table); the kernel moves bytes with fs.readSync/writeSync
 *             straight into views of the shared memory. A temporary file
 *             lives in a directory of its own, removed at close.
 *   browsers  a file of the Origin Private File System (OPFS), named by
 *             `path` (one name, no directory) or a temporary name: the host
 *             creates and sizes it with the asynchronous API
 *             (getFileHandle, createWritable().truncate); the kernel, loaded
 *             with ?opfs=<name>, opens a FileSystemSyncAccessHandle on it in
 *             the device's worker at the first request (sync handles exist
 *             only in dedicated workers; from then on the worker holds the
 *             file's lock until it ends, so write() works before any I/O) and
 *             reads and writes at the job's position, straight into views of
 *             the shared memory where the browser takes them, else through a
 *             non-shared bounce buffer of the worker's (found at the first
 *             transfer: a TypeError for a shared view). Chromium 156 takes
 *             views of a shared WebAssembly.Memory in read() and write(), so
 *             there the DMA is direct; the bounce path is for browsers that
 *             refuse them (it costs a copy: 2.3x slower per 128 KiB read in
 *             Chromium, README "In browsers"). A temporary file is
 *             removed at close, after the device's worker has ended.
 *
 * openBacking() (host) returns { path, fd, capacity, kernelUrl(url),
 * close() }; errors are DmaBufErrors with the host's code (ENOENT, EACCES,
 * ...), EINVAL for an OPFS name with a directory in it, ENOSYS where there
 * is neither Node's fs nor OPFS. deviceIo() (device side) is the one
 * transfer both kernels use.
 */
import { DmaBufError } from "../errno.js";
import { hostError, hostFs, type HostFs } from "../host_fs.js";

export interface HostBacking {
  kind: "fs" | "opfs";
  /** The host path, or the OPFS file's name. */
  path: string;
  /** The host fd the jobs carry (0 for OPFS: the kernel opened its own handle). */
  fd: number;
  /** The file's size once sized (at least the size asked for). */
  size: number;
  /** The kernel's URL for this backing (OPFS: ?opfs=<name>). */
  kernelUrl(url: URL): URL;
  /** Writes bytes into the file at `at` from the host side, as a tool writing a disk image (not through the device). */
  write(at: number, bytes: Uint8Array): Promise<void>;
  /** Closes the fd (Node) and removes a temporary file; call once the device's worker has ended. */
  close(): Promise<void>;
}

let serial = 0;
/** Removing a temporary OPFS file: tries 10 ms apart while the ended worker's lock is released. */
const CLOSE_TRIES = 100;

function nodeFs(): HostFs | undefined {
  try {
    return hostFs("nvme_probe");
  } catch {
    return undefined;
  }
}

/** The backing file of a storage device named `name`, at least `size` bytes. */
export async function openBacking(name: string, path: string | undefined, size: number, syscall: string): Promise<HostBacking> {
  const fs = nodeFs();
  if (fs !== undefined) return openHostFile(fs, name, path, size, syscall);
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?: () => Promise<OpfsDirectory> } } }).navigator?.storage;
  if (storage?.getDirectory === undefined) {
    throw new DmaBufError("ENOSYS", syscall, "a storage device needs a real file: Node's fs or the Origin Private File System, and this runtime has neither");
  }
  return openOpfsFile(await storage.getDirectory(), name, path, size, syscall);
}

function openHostFile(fs: HostFs, name: string, path: string | undefined, size: number, syscall: string): HostBacking {
  const temporary = path === undefined;
  let file = path ?? "";
  let fd: number;
  try {
    if (path === undefined) {
      const os = (globalThis as unknown as { process: { getBuiltinModule(id: string): { tmpdir(): string } } }).process.getBuiltinModule("node:os");
      file = `${fs.mkdtempSync(`${os.tmpdir()}/dmabuf-lab-nvme-`)}/${name}.img`;
      fd = fs.openSync(file, "w+", 0o600);
    } else {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    }
  } catch (e) {
    throw hostError(e, syscall, `backing file ${file}`);
  }
  let have: number;
  try {
    have = fs.fstatSync(fd).size;
    if (have < size) fs.ftruncateSync(fd, size);
  } catch (e) {
    fs.closeSync(fd);
    if (temporary) fs.rmSync(file.slice(0, file.lastIndexOf("/")), { recursive: true, force: true });
    throw hostError(e, syscall, `backing file ${file}`);
  }
  return {
    kind: "fs", path: file, fd, size: Math.max(have, size),
    kernelUrl: (url) => url,
    async write(at, bytes) {
      for (let done = 0; done < bytes.length;) done += fs.writeSync(fd, bytes, done, bytes.length - done, at + done);
    },
    async close() {
      fs.closeSync(fd);
      if (temporary) fs.rmSync(file.slice(0, file.lastIndexOf("/")), { recursive: true, force: true });
    },
  };
}

/** The parts of the OPFS API used here (lib.dom's types are not in this project's TypeScript lib). */
export interface OpfsDirectory {
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFile>;
  removeEntry(name: string): Promise<void>;
}
interface OpfsFile {
  getFile(): Promise<{ size: number }>;
  createWritable(options?: { keepExistingData?: boolean }): Promise<{
    truncate(size: number): Promise<void>;
    write(chunk: { type: "write"; position: number; data: Uint8Array }): Promise<void>;
    close(): Promise<void>;
  }>;
  createSyncAccessHandle?(): Promise<OpfsSyncHandle>;
}
export interface OpfsSyncHandle {
  read(buffer: Uint8Array, options: { at: number }): number;
  write(buffer: Uint8Array, options: { at: number }): number;
  flush(): void;
  close(): void;
}

async function openOpfsFile(root: OpfsDirectory, name: string, path: string | undefined, size: number, syscall: string): Promise<HostBacking> {
  const temporary = path === undefined;
  const file = path ?? `dmabuf-lab-${name}-${Date.now().toString(36)}-${++serial}.img`;
  if (file === "" || file === "." || file === ".." || /[/\\]/.test(file)) {
    throw new DmaBufError("EINVAL", syscall, `OPFS backing file '${file}' must be one name, without a directory`);
  }
  let have: number;
  try {
    const handle = await root.getFileHandle(file, { create: true });
    have = (await handle.getFile()).size;
    if (have < size) {
      const w = await handle.createWritable({ keepExistingData: true });
      await w.truncate(size);
      await w.close();
    }
  } catch (e) {
    throw new DmaBufError("EIO", syscall, `OPFS backing file '${file}': ${(e as Error).message ?? String(e)}`, { cause: e });
  }
  return {
    kind: "opfs", path: file, fd: 0, size: Math.max(have, size),
    kernelUrl: (url) => {
      const u = new URL(url);
      u.searchParams.set("opfs", file);
      return u;
    },
    async write(at, bytes) {
      try {
        const w = await (await root.getFileHandle(file)).createWritable({ keepExistingData: true });
        await w.write({ type: "write", position: at, data: bytes });
        await w.close();
      } catch (e) {
        throw new DmaBufError("EIO", "nvme_fill", `OPFS backing file '${file}': ${(e as Error).message ?? String(e)}`, { cause: e });
      }
    },
    async close() {
      if (!temporary) return;
      // The device's worker ended, but the browser releases its sync handle's lock a moment later: retry, bounded.
      for (let tries = 0; ; tries++) {
        try {
          await root.removeEntry(file);
          return;
        } catch (e) {
          if ((e as { name?: string }).name === "NotFoundError" || tries >= CLOSE_TRIES) return;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    },
  };
}

/**
 * The device side's OPFS file: its sync access handle, and whether it takes
 * views of the shared memory (`direct`, found at the first transfer) or needs
 * the bounce buffer.
 */
export interface DeviceFile { handle: OpfsSyncHandle; direct: boolean | undefined; bounce: Uint8Array }

/** The kernel's OPFS file for `url` (its ?opfs=), opened in the device's worker; undefined for a Node backing. */
export async function openDeviceFile(url: string): Promise<DeviceFile | undefined> {
  const name = new URL(url).searchParams.get("opfs");
  if (name === null) return undefined;
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?: () => Promise<OpfsDirectory> } } }).navigator?.storage;
  const root = await storage!.getDirectory!();
  const file = await root.getFileHandle(name);
  if (file.createSyncAccessHandle === undefined) throw new DmaBufError("ENOSYS", "nvme_probe", "OPFS sync access handles exist only in dedicated workers");
  return { handle: await file.createSyncAccessHandle(), direct: undefined, bounce: new Uint8Array(0) };
}

/** One OPFS transfer of view at `at`; the whole view or EIO. */
function opfsIo(file: DeviceFile, view: Uint8Array, at: number, write: boolean): void {
  const move = (v: Uint8Array) => (write ? file.handle.write(v, { at }) : file.handle.read(v, { at }));
  let n: number | undefined;
  if (file.direct !== false) {
    try {
      n = move(view);
      file.direct = true;
    } catch (e) {
      if (file.direct === true || !(e instanceof TypeError)) throw e;
      file.direct = false; // a view of shared memory refused: bounce from now on
    }
  }
  if (n === undefined) {
    if (file.bounce.byteLength < view.byteLength) file.bounce = new Uint8Array(view.byteLength);
    const bounce = file.bounce.subarray(0, view.byteLength);
    if (write) bounce.set(view);
    n = move(bounce);
    if (!write) view.set(bounce.subarray(0, n));
  }
  if (write) file.handle.flush();
  if (n !== view.byteLength) throw new DmaBufError("EIO", "nvme_io", write ? `the OPFS write at ${at} came up short` : `the backing file ended at ${at + n}`);
}

/**
 * Moves view's bytes from (or to, with write) the backing file at `at`, all
 * of them or EIO (a file that ended): through the OPFS handle when there is
 * one, else with Node's fs on the job's host fd.
 */
export function deviceIo(file: DeviceFile | undefined, fd: number, view: Uint8Array, at: number, write: boolean): void {
  if (file !== undefined) return opfsIo(file, view, at, write);
  const fs = hostFs("nvme_io");
  let done = 0;
  while (done < view.byteLength) {
    const n = write ? fs.writeSync(fd, view, done, view.byteLength - done, at + done) : fs.readSync(fd, view, done, view.byteLength - done, at + done);
    if (n === 0) throw new DmaBufError("EIO", "nvme_io", `the backing file ended at ${at + done}`);
    done += n;
  }
}

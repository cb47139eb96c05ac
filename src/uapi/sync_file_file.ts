/*
 * The file operations of a sync_file fd (drivers/dma-buf/sync_file.c), over
 * SyncFile (src/sync/sync_file.ts), which holds the rules.
 *
 * Contract:
 *   SYNC_IOC_MERGE {name, fd2, fence, flags, pad}  a free fd is found first
 *                    (EMFILE); flags or pad non-zero EINVAL; fd2 not an open
 *                    sync_file of this process ENOENT; fence <- a new
 *                    sync_file fd (close-on-exec) with the unwrap-merge.
 *   SYNC_IOC_FILE_INFO {num_fences, ...}  name, status, flags, num_fences
 *                    out; with num_fences > 0 also sync_fence_info[] (too
 *                    small: EINVAL).
 *   SYNC_IOC_SET_DEADLINE {deadline_ns, pad}  pad non-zero EINVAL.
 *   other ioctls ENOTTY; poll POLLIN once signalled (an error included).
 * The last reference closes the SyncFile (its fence reference goes).
 */
import { DmaBufError } from "../errno.js";
import { flagsArg, intArg, objectArg, stringArg, writableArg } from "../args.js";
import { SyncFile } from "../sync/sync_file.js";
import { ObjectFile, type FdToken, type Caller } from "./file.js";
import {
  SYNC_IOC_FILE_INFO, SYNC_IOC_MERGE, SYNC_IOC_SET_DEADLINE,
  type sync_file_info, type sync_merge_data, type sync_set_deadline,
} from "./uapi.js";

export class SyncFileFile extends ObjectFile<SyncFile> {
  readonly kind = "sync_file";

  get syncFile(): SyncFile {
    return this.object;
  }

  override ioctl(proc: Caller, request: number, arg: unknown): number {
    switch (request) {
      case SYNC_IOC_MERGE: {
        const data = writableArg<sync_merge_data>(arg, "SYNC_IOC_MERGE", ["fence"]);
        stringArg(data.name ?? "", "SYNC_IOC_MERGE", "name");
        flagsArg(data.flags ?? 0, "SYNC_IOC_MERGE");
        flagsArg(data.pad ?? 0, "SYNC_IOC_MERGE", "pad");
        data.fence = installSyncFile(proc, () => {
          const other = proc.lookup(data.fd2);
          return SyncFile.merge(this.syncFile, other instanceof SyncFileFile ? other.syncFile : undefined,
            { name: data.name ?? "", flags: data.flags, pad: data.pad });
        });
        return 0;
      }
      case SYNC_IOC_FILE_INFO: {
        const data = writableArg<sync_file_info>(arg, "SYNC_IOC_FILE_INFO", ["name", "status", "flags", "num_fences", "sync_fence_info"]);
        intArg(data.num_fences ?? 0, "SYNC_IOC_FILE_INFO", "num_fences", { max: 0xffffffff });
        flagsArg(data.flags ?? 0, "SYNC_IOC_FILE_INFO");
        flagsArg(data.pad ?? 0, "SYNC_IOC_FILE_INFO", "pad");
        const info = this.syncFile.info({ numFences: data.num_fences ?? 0, flags: data.flags, pad: data.pad });
        data.name = info.name;
        data.status = info.status;
        data.flags = info.flags;
        data.num_fences = info.numFences;
        if (info.fences !== undefined) {
          data.sync_fence_info = info.fences.map((f) => ({
            obj_name: f.objName, driver_name: f.driverName, status: f.status, flags: f.flags, timestamp_ns: f.timestampNs,
          }));
        }
        return 0;
      }
      case SYNC_IOC_SET_DEADLINE: {
        const data = objectArg<sync_set_deadline>(arg, "SYNC_IOC_SET_DEADLINE");
        flagsArg(data.pad ?? 0, "SYNC_IOC_SET_DEADLINE", "pad");
        this.syncFile.setDeadline({ deadlineNs: data.deadline_ns, pad: data.pad });
        return 0;
      }
      default:
        return super.ioctl(proc, request, arg);
    }
  }

  override poll(): number {
    return this.syncFile.poll();
  }

  override exportToken(): FdToken {
    if (this.syncFile.closed) throw new DmaBufError("EBADF", "exportFd", "the sync_file is closed");
    const { fence } = this.syncFile;
    return { kind: "sync_file", offset: fence.offset, generation: this.syncFile.sync.generationOf(fence.offset), flags: this.flags, name: this.syncFile.name };
  }
}

/**
 * Installs a new sync_file fd, close-on-exec, as every ioctl that returns one
 * does (get_unused_fd_flags(O_CLOEXEC)): the fd is found first (EMFILE, and
 * make() is not called), then make() gives the SyncFile the file takes over.
 */
export function installSyncFile(proc: Caller, make: () => SyncFile): number {
  return proc.installNew(() => new SyncFileFile(make(), 0), true);
}

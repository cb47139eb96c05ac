/*
 * The file operations of an sw_sync fd (drivers/dma-buf/sw_sync.c): one
 * timeline per open of /dev/sw_sync, over SwSyncTimeline (src/sync/sw_sync.ts).
 *
 * Contract:
 *   SW_SYNC_IOC_CREATE_FENCE {value, name, fence}  a free fd is found first
 *                    (EMFILE); fence <- a new sync_file fd (close-on-exec)
 *                    whose fence signals when the timeline reaches value.
 *   SW_SYNC_IOC_INC n  (the argument is the __u32 itself) advances the
 *                    timeline and signals every point reached, in order.
 *   SW_SYNC_GET_DEADLINE {deadline_ns, fence_fd, pad}  deadline_ns or pad
 *                    non-zero on input EINVAL; fence_fd not a sync_file
 *                    EINVAL; then SwSyncTimeline.getDeadline's rule
 *                    (EINVAL not an sw_sync point, ENOENT no deadline);
 *                    deadline_ns <- the earliest deadline set.
 *   other ioctls ENOTTY; poll DEFAULT_POLLMASK (sw_sync has no poll).
 * The last reference in this thread closes this thread's SwSyncTimeline
 * reference; the timeline's last (in any thread) signals every pending
 * point with ENOENT.
 */
import { DmaBufError } from "../errno.js";
import { intArg, stringArg, writableArg } from "../args.js";
import { SwSyncTimeline } from "../sync/sw_sync.js";
import { ObjectFile, type FdToken, type Caller } from "./file.js";
import { SyncFileFile, installSyncFile } from "./sync_file_file.js";
import {
  SW_SYNC_GET_DEADLINE, SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC, type sw_sync_create_fence_data, type sw_sync_get_deadline,
} from "./uapi.js";

export class SwSyncFile extends ObjectFile<SwSyncTimeline> {
  readonly kind = "sw_sync";

  override ioctl(proc: Caller, request: number, arg: unknown): number {
    switch (request) {
      case SW_SYNC_IOC_CREATE_FENCE:
      {
        // The new fd is written back: checked writable before the fence is made.
        const data = writableArg<sw_sync_create_fence_data>(arg, "SW_SYNC_IOC_CREATE_FENCE", ["fence"]);
        const value = intArg(data.value, "SW_SYNC_IOC_CREATE_FENCE", "value", { max: 0xffffffff });
        const name = stringArg(data.name ?? "", "SW_SYNC_IOC_CREATE_FENCE", "name");
        data.fence = installSyncFile(proc, () => this.object.createFence(value, name));
        return 0;
      }
      case SW_SYNC_IOC_INC:
        if (typeof arg !== "number") throw new DmaBufError("EFAULT", "SW_SYNC_IOC_INC", "the argument must be the increment, a __u32");
        this.object.inc(arg);
        return 0;
      case SW_SYNC_GET_DEADLINE: {
        const data = (arg ?? {}) as Partial<sw_sync_get_deadline>;
        const { deadline_ns: deadline = 0, pad = 0 } = data;
        if (deadline !== 0 || pad !== 0) {
          throw new DmaBufError("EINVAL", "SW_SYNC_GET_DEADLINE", `deadline_ns ${String(deadline)} and pad ${String(pad)} must be 0 on input`);
        }
        const file = proc.lookup(data.fence_fd);
        if (!(file instanceof SyncFileFile) || file.syncFile.closed) {
          throw new DmaBufError("EINVAL", "SW_SYNC_GET_DEADLINE", `fence_fd ${String(data.fence_fd)} is not a sync_file`);
        }
        data.deadline_ns = SwSyncTimeline.getDeadline(file.syncFile.fence);
        return 0;
      }
      default:
        return super.ioctl(proc, request, arg);
    }
  }

  override exportToken(): FdToken {
    return { kind: "sw_sync", offset: this.object.offset, generation: this.object.generation, flags: this.flags };
  }
}

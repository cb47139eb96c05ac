/*
 * The file operations of a dma-heap fd, /dev/dma_heap/<name>
 * (drivers/dma-buf/dma-heap.c), over Heap (src/dmabuf/heap.ts).
 *
 * Contract:
 *   The request's type must be 'H' and its number 0 (DMA_HEAP_IOCTL_ALLOC),
 *   else EINVAL (a dma-heap fd answers EINVAL, not ENOTTY, to unknown
 *   requests). The struct size is the one the request encodes
 *   (_IOC_SIZE): a field that starts at or past it reads as zero and is not
 *   written back; fields past the kernel's 24 bytes are ignored (the 16-byte
 *   and 48-byte structs of "alloc_compat").
 *   DMA_HEAP_IOCTL_ALLOC {len, fd, fd_flags, heap_flags}, in the kernel's
 *   order: fd not 0 EINVAL; fd_flags outside O_CLOEXEC|O_ACCMODE EINVAL;
 *   heap_flags not 0 EINVAL; len 0 EINVAL (len is rounded up to a page);
 *   no free fd EMFILE; out of pages ENOMEM. fd <- the new dma-buf's fd,
 *   whose file has the access mode of fd_flags and is close-on-exec when
 *   fd_flags has O_CLOEXEC. A failure changes nothing (no fd, no pages).
 *   Field values are JS numbers; one that is not a non-negative integer is
 *   a bad user pointer's EFAULT.
 */
import { DmaBufError } from "../errno.js";
import { describe, writableArg } from "../args.js";
import type { Heap } from "../dmabuf/heap.js";
import { DmaBufFile } from "./dma_buf_file.js";
import { OpenFile, type Caller } from "./file.js";
import {
  _IOC_NR, _IOC_SIZE, _IOC_TYPE, DMA_HEAP_IOC_MAGIC, DMA_HEAP_VALID_FD_FLAGS, DMA_HEAP_VALID_HEAP_FLAGS,
  O_ACCMODE, O_CLOEXEC, dma_heap_allocation_data_offsets, type dma_heap_allocation_data,
} from "./uapi.js";

const SYSCALL = "DMA_HEAP_IOCTL_ALLOC";

export class DmaHeapFile extends OpenFile {
  readonly kind = "dma-heap";

  constructor(readonly heap: Heap, flags: number) {
    super(flags);
  }

  protected drop(_last: boolean): void {}

  override ioctl(proc: Caller, request: number, arg: unknown): number {
    if (_IOC_TYPE(request) !== DMA_HEAP_IOC_MAGIC || _IOC_NR(request) !== 0) {
      throw new DmaBufError("EINVAL", "ioctl", `request 0x${request.toString(16)} is not an ioctl of a dma-heap`);
    }
    const size = _IOC_SIZE(request);
    const data = (arg ?? {}) as Partial<dma_heap_allocation_data>;
    const field = (name: keyof dma_heap_allocation_data): number => {
      if (dma_heap_allocation_data_offsets[name] >= size) return 0;
      const v = data[name] ?? 0;
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
        throw new DmaBufError("EFAULT", SYSCALL, `${name} ${describe(v)} is not an unsigned integer`);
      }
      return v;
    };
    const len = field("len");
    const fd = field("fd");
    const fdFlags = field("fd_flags");
    const heapFlags = field("heap_flags");
    if (fd !== 0) throw new DmaBufError("EINVAL", SYSCALL, `fd ${fd} must be 0 on input`);
    if ((fdFlags & ~DMA_HEAP_VALID_FD_FLAGS) !== 0 || fdFlags > 0xffffffff) {
      throw new DmaBufError("EINVAL", SYSCALL, `fd_flags 0x${fdFlags.toString(16)} has bits outside O_CLOEXEC|O_ACCMODE`);
    }
    if (heapFlags !== DMA_HEAP_VALID_HEAP_FLAGS) {
      throw new DmaBufError("EINVAL", SYSCALL, `heap_flags 0x${heapFlags.toString(16)} must be 0`);
    }
    if (len === 0) throw new DmaBufError("EINVAL", SYSCALL, "len 0");
    // The new fd is written back: a frozen argument fails before anything is made.
    const writesFd = dma_heap_allocation_data_offsets.fd < size;
    if (writesFd) writableArg(arg, SYSCALL, ["fd"]);
    const newFd = proc.installNew(() => {
      const buf = this.heap.alloc(len);
      try {
        return new DmaBufFile(buf, fdFlags & O_ACCMODE);
      } finally {
        buf.put();
      }
    }, (fdFlags & O_CLOEXEC) !== 0);
    if (writesFd) data.fd = newFd;
    return 0;
  }
}

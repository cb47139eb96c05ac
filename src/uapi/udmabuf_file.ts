/*
 * The file operations of /dev/udmabuf (drivers/dma-buf/udmabuf.c):
 *   UDMABUF_CREATE {memfd, flags, offset, size}  returns a new dma-buf fd
 *   UDMABUF_CREATE_LIST {flags, count, list[]}   the same over several ranges
 * An item's memfd fd not open, or open but not a memfd (fd 0, stdin,
 * included): EBADFD, as udmabuf_create's check_memfd_seals gives; every
 * other rule (alignment, seals, limits) is udmabufCreate's
 * (src/dmabuf/udmabuf.ts). count must match the list given (EINVAL). A
 * free fd is found first (EMFILE) and a failed call changes nothing. The
 * new fd is close-on-exec with UDMABUF_FLAGS_CLOEXEC. Other ioctls ENOTTY.
 */
import { DmaBufError } from "../errno.js";
import { describe, flagsArg, objectArg } from "../args.js";
import { UDMABUF_FLAGS_CLOEXEC, udmabufCreate, type UdmabufItem } from "../dmabuf/udmabuf.js";
import { DmaBufFile } from "./dma_buf_file.js";
import { OpenFile, type Caller } from "./file.js";
import { MemfdFile } from "./memfd_file.js";
import { O_RDWR, UDMABUF_CREATE, UDMABUF_CREATE_LIST, type udmabuf_create, type udmabuf_create_list } from "./uapi.js";

export class UdmabufDevFile extends OpenFile {
  readonly kind = "udmabuf";

  constructor(flags: number) {
    super(flags);
  }

  protected drop(_last: boolean): void {}

  override ioctl(proc: Caller, request: number, arg: unknown): number {
    if (request === UDMABUF_CREATE) {
      const a = objectArg<Partial<udmabuf_create>>(arg, "UDMABUF_CREATE");
      return this.create(proc, "UDMABUF_CREATE", a.flags ?? 0, [{ memfd: a.memfd, offset: a.offset ?? 0, size: a.size ?? 0 }]);
    }
    if (request === UDMABUF_CREATE_LIST) {
      const a = objectArg<Partial<udmabuf_create_list>>(arg, "UDMABUF_CREATE_LIST");
      const list = a.list ?? [];
      if (!Array.isArray(list)) throw new DmaBufError("EFAULT", "UDMABUF_CREATE_LIST", `list ${describe(list)} is not an array`);
      if (a.count !== list.length) {
        throw new DmaBufError("EINVAL", "UDMABUF_CREATE_LIST", `count ${describe(a.count)} does not match the ${list.length} items given`);
      }
      return this.create(proc, "UDMABUF_CREATE_LIST", a.flags ?? 0, list);
    }
    return super.ioctl(proc, request, arg);
  }

  private create(proc: Caller, syscall: string, flags: number, items: { memfd?: unknown; offset: number; size: number }[]): number {
    flagsArg(flags, syscall);
    const resolved: UdmabufItem[] = items.map((entry, i) => {
      const item = objectArg<{ memfd?: unknown; offset: number; size: number }>(entry, syscall, `item ${i}`);
      const file = proc.lookup(item.memfd);
      if (file === undefined) throw new DmaBufError("EBADFD", syscall, `item ${i}: fd ${describe(item.memfd)} is not open`);
      return { memfd: file instanceof MemfdFile ? file.memfd : file, offset: item.offset, size: item.size };
    });
    return proc.installNew(() => {
      const buf = udmabufCreate(proc.lab.sync, resolved);
      try {
        return new DmaBufFile(buf, O_RDWR);
      } finally {
        buf.put();
      }
    }, (flags & UDMABUF_FLAGS_CLOEXEC) !== 0, syscall);
  }
}

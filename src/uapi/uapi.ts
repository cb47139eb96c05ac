/*
 * The kernel's uapi constants and argument structs, as TypeScript.
 *
 * Contract: every name is the kernel's (include/uapi/linux/dma-buf.h,
 * dma-heap.h, sync_file.h, the sw_sync debugfs interface, asm-generic/fcntl.h,
 * poll.h, fs.h), and every ioctl number is computed as the kernel's
 * _IOW/_IOWR macros compute it on a 64-bit machine: dir << 30 | size << 16 |
 * type << 8 | nr. An ioctl's argument is a plain object shaped like the
 * struct, with the kernel's field names; the call reads the input fields and
 * writes the output ones into the same object (the copy_to_user).
 *
 * Struct size: the size encoded in the request number is the size of the
 * struct the caller passes. Only DMA_HEAP_IOCTL_ALLOC honours other sizes
 * (the "alloc_compat" selftest): dmaHeapAllocRequest(16) is the old struct
 * without heap_flags, (48) a newer, longer one; a field that starts at or
 * past the size reads as zero and is not written back, extra fields are
 * ignored.
 */

// ---- ioctl number encoding (asm-generic/ioctl.h) ----------------------------
export const _IOC_NONE = 0;
export const _IOC_WRITE = 1;
export const _IOC_READ = 2;

export const _IOC = (dir: number, type: number, nr: number, size: number): number =>
  ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
export const _IO = (type: number, nr: number): number => _IOC(_IOC_NONE, type, nr, 0);
export const _IOW = (type: number, nr: number, size: number): number => _IOC(_IOC_WRITE, type, nr, size);
export const _IOR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);
export const _IOC_DIR = (request: number): number => (request >>> 30) & 3;
export const _IOC_SIZE = (request: number): number => (request >>> 16) & 0x3fff;
export const _IOC_TYPE = (request: number): number => (request >>> 8) & 0xff;
export const _IOC_NR = (request: number): number => request & 0xff;

const ch = (c: string): number => c.charCodeAt(0);

// ---- open flags, fcntl, lseek, poll ------------------------------------------
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_ACCMODE = 0o3;
export const O_NONBLOCK = 0o4000;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
/** x86's O_DIRECT. */
export const O_DIRECT = 0o40000;
export const O_CLOEXEC = 0o2000000;

export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;

/** mmap(2) protections and flags (asm-generic/mman-common.h). */
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;

import { POLLIN } from "../sync/sync_file.js";

export { POLLIN };
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLNVAL = 0x20;
/** What a file without a poll operation reports (DEFAULT_POLLMASK, less the RDNORM/WRNORM bits). */
export const DEFAULT_POLLMASK = POLLIN | POLLOUT;

// ---- dma-buf (linux/dma-buf.h) -----------------------------------------------
export const DMA_BUF_BASE = ch("b");
export const DMA_BUF_SYNC_READ = 1 << 0;
export const DMA_BUF_SYNC_WRITE = 1 << 1;
export const DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
export const DMA_BUF_SYNC_START = 0 << 2;
export const DMA_BUF_SYNC_END = 1 << 2;
export const DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END;
export { DMA_BUF_NAME_LEN } from "../dmabuf/dma_buf.js";

/** struct dma_buf_sync { __u64 flags; } plus the lab's optional bound on START's wait. */
export interface dma_buf_sync {
  flags: number;
  /** Not in the kernel: START gives ETIMEDOUT after this many ms (undefined or null: waits forever, as read and write do). */
  timeoutMs?: number | null;
}

/** struct dma_buf_export_sync_file { __u32 flags; __s32 fd; } */
export interface dma_buf_export_sync_file {
  flags: number;
  /** Output: the new sync_file's fd. */
  fd?: number;
}

/** struct dma_buf_import_sync_file { __u32 flags; __s32 fd; } */
export interface dma_buf_import_sync_file {
  flags: number;
  fd: number;
}

export const DMA_BUF_IOCTL_SYNC = _IOW(DMA_BUF_BASE, 0, 8);
/** _IOW(DMA_BUF_BASE, 1, const char *): the argument is the name itself. */
export const DMA_BUF_SET_NAME = _IOW(DMA_BUF_BASE, 1, 8);
export const DMA_BUF_SET_NAME_A = _IOW(DMA_BUF_BASE, 1, 4);
export const DMA_BUF_SET_NAME_B = _IOW(DMA_BUF_BASE, 1, 8);
export const DMA_BUF_IOCTL_EXPORT_SYNC_FILE = _IOWR(DMA_BUF_BASE, 2, 8);
export const DMA_BUF_IOCTL_IMPORT_SYNC_FILE = _IOW(DMA_BUF_BASE, 3, 8);

/**
 * Tao Wang's RFC (not merged; later reworked as copy_file_range into a
 * dma-buf): struct dma_buf_rw_file { __u32 flags; __u32 fd; __u64
 * file_offset; __u64 buf_offset; __u64 buf_len; }. flags: exactly one
 * operation of DMA_BUF_RW_FLAGS_OP_MASK, READ (fill the buffer from the
 * file) or WRITE (save the buffer to the file), and optionally DIRECT
 * (direct I/O). The request number is the next free one of DMA_BUF_BASE.
 */
export interface dma_buf_rw_file {
  flags: number;
  fd: number;
  file_offset: number;
  buf_offset: number;
  buf_len: number;
}
export const DMA_BUF_RW_FLAGS_OP_MASK = 0xff;
export const DMA_BUF_RW_FLAGS_READ = 1 << 0;
export const DMA_BUF_RW_FLAGS_WRITE = 1 << 1;
export const DMA_BUF_RW_FLAGS_DIRECT = 2 ** 31;
export const DMA_BUF_IOCTL_RW_FILE = _IOW(DMA_BUF_BASE, 4, 32);

// ---- dma-heap (linux/dma-heap.h) ---------------------------------------------
export const DMA_HEAP_IOC_MAGIC = ch("H");
export const DMA_HEAP_VALID_FD_FLAGS = O_CLOEXEC | O_ACCMODE;
export const DMA_HEAP_VALID_HEAP_FLAGS = 0;

/**
 * struct dma_heap_allocation_data { __u64 len; __u32 fd; __u32 fd_flags;
 * __u64 heap_flags; }: 24 bytes; the fields' byte offsets are below.
 */
export interface dma_heap_allocation_data {
  len: number;
  /** Must be 0 on input; output: the new dma-buf's fd. */
  fd: number;
  fd_flags: number;
  heap_flags: number;
}
export const dma_heap_allocation_data_offsets = { len: 0, fd: 8, fd_flags: 12, heap_flags: 16 } as const;
export const DMA_HEAP_ALLOCATION_DATA_SIZE = 24;

/** DMA_HEAP_IOCTL_ALLOC as a caller built against a struct of `size` bytes encodes it. */
export const dmaHeapAllocRequest = (size: number): number => _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, size);
export const DMA_HEAP_IOCTL_ALLOC = dmaHeapAllocRequest(DMA_HEAP_ALLOCATION_DATA_SIZE);

// ---- sync_file (linux/sync_file.h) -------------------------------------------
export const SYNC_IOC_MAGIC = ch(">");

/** struct sync_merge_data { char name[32]; __s32 fd2; __s32 fence; __u32 flags; __u32 pad; } */
export interface sync_merge_data {
  name: string;
  fd2: number;
  /** Output: the merged sync_file's fd. */
  fence?: number;
  flags?: number;
  pad?: number;
}

/** struct sync_fence_info */
export interface sync_fence_info {
  obj_name: string;
  driver_name: string;
  status: number;
  flags: number;
  timestamp_ns: number;
}

/** struct sync_file_info; sync_fence_info (a user pointer there) receives the entries. */
export interface sync_file_info {
  name?: string;
  status?: number;
  flags?: number;
  num_fences: number;
  pad?: number;
  sync_fence_info?: sync_fence_info[];
}

/** struct sync_set_deadline { __u64 deadline_ns; __u64 pad; } */
export interface sync_set_deadline {
  deadline_ns: number;
  pad?: number;
}

export const SYNC_IOC_MERGE = _IOWR(SYNC_IOC_MAGIC, 3, 48);
export const SYNC_IOC_FILE_INFO = _IOWR(SYNC_IOC_MAGIC, 4, 56);
export const SYNC_IOC_SET_DEADLINE = _IOW(SYNC_IOC_MAGIC, 5, 16);

// ---- sw_sync (drivers/dma-buf/sw_sync.c) -------------------------------------
export const SW_SYNC_IOC_MAGIC = ch("W");

/** struct sw_sync_create_fence_data { __u32 value; char name[32]; __s32 fence; } */
export interface sw_sync_create_fence_data {
  value: number;
  name?: string;
  /** Output: the new sync_file's fd. */
  fence?: number;
}

export const SW_SYNC_IOC_CREATE_FENCE = _IOWR(SW_SYNC_IOC_MAGIC, 0, 40);
/** _IOW(SW_SYNC_IOC_MAGIC, 1, __u32): the argument is the increment itself. */
export const SW_SYNC_IOC_INC = _IOW(SW_SYNC_IOC_MAGIC, 1, 4);
/** struct sw_sync_get_deadline: deadline_ns (out; must be 0 in), fence_fd, pad (must be 0). */
export interface sw_sync_get_deadline {
  deadline_ns?: number;
  fence_fd: number;
  pad?: number;
}
export const SW_SYNC_GET_DEADLINE = _IOWR(SW_SYNC_IOC_MAGIC, 2, 16);

// ---- device paths --------------------------------------------------------------
export const DMA_HEAP_DIR = "/dev/dma_heap/";
export const SW_SYNC_PATH = "/dev/sw_sync";
export const UDMABUF_PATH = "/dev/udmabuf";

// ---- memfd and udmabuf (include/uapi/linux/fcntl.h, memfd.h, udmabuf.h) -----

/** F_LINUX_SPECIFIC_BASE + 9 and + 10. */
export const F_ADD_SEALS = 1033;
export const F_GET_SEALS = 1034;
export { MFD_CLOEXEC, MFD_ALLOW_SEALING, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE } from "../dmabuf/memfd.js";

/** struct udmabuf_create { __u32 memfd; __u32 flags; __u64 offset; __u64 size; } */
export interface udmabuf_create {
  memfd: number;
  flags: number;
  offset: number;
  size: number;
}

/** struct udmabuf_create_item { __u32 memfd; __u32 __pad; __u64 offset; __u64 size; } */
export interface udmabuf_create_item {
  memfd: number;
  offset: number;
  size: number;
}

/** struct udmabuf_create_list { __u32 flags; __u32 count; struct udmabuf_create_item list[]; } */
export interface udmabuf_create_list {
  flags: number;
  count: number;
  list: udmabuf_create_item[];
}

const UDMABUF_IOC_MAGIC = 0x75; // 'u'
export const UDMABUF_CREATE = _IOW(UDMABUF_IOC_MAGIC, 0x42, 24);
export const UDMABUF_CREATE_LIST = _IOW(UDMABUF_IOC_MAGIC, 0x43, 8);
export { UDMABUF_FLAGS_CLOEXEC } from "../dmabuf/udmabuf.js";

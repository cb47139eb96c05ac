/*
 * The kernel-shaped uapi: a Process with an fd table and the system calls of
 * dma-heaps, dma-buf, sync_file and sw_sync fds. Constants and argument
 * structs carry the kernel's names (uapi.ts).
 */
export * from "./uapi.js";
export { Process, FIRST_FD, DEFAULT_MAX_FDS, type PollFd, type ProcessOptions } from "./process.js";
export { OpenFile, ObjectFile, type FdToken, type FileKind, type IoOptions } from "./file.js";
export { DmaBufMapping } from "./mapping.js";
export { DmaBufFile, cpuAccessHook } from "./dma_buf_file.js";
export { DmaHeapFile } from "./dma_heap.js";
export { SyncFileFile } from "./sync_file_file.js";
export { SwSyncFile } from "./sw_sync_file.js";
export { MemfdFile } from "./memfd_file.js";
export { UdmabufDevFile } from "./udmabuf_file.js";
export { RegularFile, openBeneath, DIRECT_ALIGN } from "./regular_file.js";
export { BlockDevFile } from "./blockdev_file.js";
export { IoUringFile, type IoUringBuffer } from "./io_uring_file.js";

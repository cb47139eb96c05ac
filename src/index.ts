/*
 * dmabuf-lab: the public API. Layers, bottom up: memory (the arena and its
 * allocators), engine (the wasm copy engine), the Lab that ties them
 * together for one thread, and the thread host for workers. The
 * browser_workers import registers the shipped workers in the form bundlers
 * find (src/thread/entries.ts).
 */
import "./browser_workers.js";
export { DmaBufError, errnoNumbers, type ErrnoCode } from "./errno.js";
export { Lab } from "./api/lab.js";
export type { LabOptions, LabHandle, AllocOptions } from "./lab.js";
export { DmaBuf, DmaHeap, type Direction } from "./api/dma_buf.js";
export { BufferQueue, QueueBuffer, type QueueOptions, type WaitOptions, type QueueFence } from "./api/queue.js";
export type { Shared } from "./api/share.js";
export { shareKinds, type ShareKind, type ShareToken } from "./sync/flight.js";
export { QUEUE_MAX_BUFFERS } from "./dmabuf/buffer_queue.js";
export { Arena } from "./memory/arena.js";
export { BuddyAllocator, type BuddyStats } from "./memory/buddy.js";
export { Mutex, type MutexStats } from "./memory/mutex.js";
export { canBlock } from "./memory/futex.js";
export * as layout from "./memory/layout.js";
export { Engine } from "./engine/engine.js";
export { SgTable, SegmentList, type SegmentSource } from "./engine/tables.js";
export { strategies, strategyNames, type StrategyName, type FixedStrategy } from "./engine/strategy.js";
export { defaultCalibration, setDefaultCalibration, type Calibration } from "./engine/calibration.js";
export { lineSplit, type LineSplit } from "./engine/lines.js";
export { loadEngineModule } from "./engine/module.js";
export { spawnLabThread, type LabThread } from "./thread/host.js";
export {
  spawnDevice, Device, type DeviceOptions, type AttachOptions, type ShutdownOptions, type DeviceBuffer, type Job, type Range, type InFence,
} from "./devices/device.js";
export type { DeviceStats } from "./devices/device_record.js";
export { DeviceHandle } from "./devices/handle.js";
export type { BufferLike, JobCommon, SubmitTarget } from "./devices/submit.js";
export type { Kernel, KernelContext } from "./devices/runtime.js";
export { Iommu, IOMMU_READ, IOMMU_WRITE } from "./dmabuf/iommu.js";
export { DmaBufAttachment, dmaBufAttach, dmaBufDynamicAttach, dmaBufRevoke, REVOKE_DMA_TIMEOUT_MS, type DmaSgTable, type RevokeOptions } from "./dmabuf/attachment.js";
export { Sync } from "./sync/sync.js";
export { Heap, heapNames, SYSTEM_HEAP_ORDERS, type HeapName } from "./dmabuf/heap.js";
export {
  DmaBufRecord, mergeAdjacent, exporterNames, CACHING_CACHED, CACHING_WRITE_COMBINE, CACHING_UNCACHED,
  type Caching, type ExporterName, type PagePiece, type Segment,
} from "./dmabuf/dma_buf.js";
export {
  Memfd, MFD_CLOEXEC, MFD_ALLOW_SEALING, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE,
} from "./dmabuf/memfd.js";
export { CpuCache, isCoherent, type Maintenance } from "./dmabuf/coherence.js";
export { preadv, pwritev, preadvAsync, pwritevAsync, type RwOptions, type RwSyncOptions, type RwAsyncOptions, type RwSyscall, type SyncWaitStep, type WaitStep } from "./dmabuf/rw.js";
export { udmabufCreate, UDMABUF_SIZE_LIMIT, UDMABUF_LIST_LIMIT, UDMABUF_FLAGS_CLOEXEC, type UdmabufItem } from "./dmabuf/udmabuf.js";
export { Fence, type FenceCallback, type FenceNames } from "./sync/fence.js";
export { FenceArray } from "./sync/fence_array.js";
export { FenceChain } from "./sync/fence_chain.js";
export { unwrap, merge } from "./sync/fence_unwrap.js";
export {
  SyncFile, POLLIN, type SyncFileInfo, type SyncFenceInfo, type SyncMergeArgs, type SyncFileInfoArgs, type SyncSetDeadlineArgs,
} from "./sync/sync_file.js";
export type { HasSync } from "./sync/records.js";
export { SwSyncTimeline } from "./sync/sw_sync.js";
export { Timeline, type TimelineOptions } from "./sync/timeline.js";
export {
  Resv, usageRw, usageNames, type ResvUsage, type ResvEntry,
  DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_WRITE, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_BOOKKEEP,
} from "./sync/resv.js";
export * from "./uapi/index.js";
export * from "./io_uring/io_uring.js";
export * from "./io_uring/liburing.js";
export { spawnStorage, StorageDevice, type StorageOptions } from "./devices/storage.js";
export { runPipeline, type PipelineOptions, type PipelineResult, type PipelineIntegrity, type FrameReport, type ReaderFrame } from "./demo/pipeline.js";
export { runIoDemo, checkIoDemoOptions, type IoDemoOptions, type IoDemoResult } from "./demo/io.js";
export { Tracer, type TraceStartOptions } from "./trace/recorder.js";
export { chromeTrace, type ChromeTrace, type ChromeEvent } from "./trace/chrome.js";
export { checkChromeTrace, type TraceCheck } from "./trace/validate.js";
export type { AccessSide, Race, SanitizeReport } from "./sanitize/check.js";
export type { SanitizeOptions } from "./sanitize/agent.js";
export { CATEGORIES as traceCategories, type TraceCategory, type TraceData, type TraceThread, type RawEvent } from "./trace/events.js";

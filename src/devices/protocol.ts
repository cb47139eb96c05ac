/*
 * The control plane of a device worker (workers/device.ts) and of the
 * lab's watchdog (workers/watchdog.ts), called over comlink. Only numbers
 * (arena offsets) and plain data cross; jobs and completions go through
 * the ring and fences in the arena.
 */
import type { LabHandle } from "../lab.js";
import type { DeviceStats } from "./device_record.js";

export interface DeviceWorkerData {
  handle: LabHandle;
  /** The device record (device_record.ts). */
  device: number;
  name: string;
}

/** What attach() answers: the attachment and its device-address mapping. */
export interface AttachResult {
  attachment: number;
  iova: number;
  bytes: number;
}

export interface DeviceApi {
  /** Once the worker runs its loop. */
  hello(): string;
  /** dma_buf_attach (static) or dma_buf_dynamic_attach, then map: the driver attaches. */
  attach(buffer: number, dynamic: boolean): AttachResult;
  /** Unmaps and detaches. */
  detach(attachment: number): void;
  /** dma_buf_map_attachment again: the sg table of device addresses. */
  map(attachment: number): { iova: number; bytes: number; entries: { dmaAddress: number; length: number }[] };
  /** Imports a kernel module; its id for JOB_KERNEL jobs. */
  loadKernel(url: string): Promise<number>;
  /** Attachments the exporter revoked since attach (move_notify seen), by offset. */
  revoked(): number[];
  stats(): DeviceStats;
  /** Ends the loop (after the queued jobs with drain) and detaches everything; resolves when done. */
  stop(drain: boolean): Promise<void>;
}

export interface WatchdogData {
  handle: LabHandle;
  periodMs: number;
  silenceMs: number;
}

export interface WatchdogApi {
  hello(): string;
  watch(device: number): void;
  unwatch(device: number): void;
}

/*
 * Device nodes that higher layers add to a lab's /dev (the storage device's
 * /dev/nvme0n1): Process.open() looks a path up here after its own nodes.
 * The opener makes the open file description; it is called only once the
 * fd slot is known to be free.
 */
import type { LabCore } from "../lab.js";
import type { OpenFile } from "./file.js";

export type DevNodeOpener = (flags: number) => OpenFile;

const nodes = new WeakMap<LabCore, Map<string, DevNodeOpener>>();

/** Adds `path` to the lab's device nodes (EEXIST-free: a later one replaces it); returns the remover. */
export function registerDevNode(lab: LabCore, path: string, open: DevNodeOpener): () => void {
  let m = nodes.get(lab);
  if (m === undefined) nodes.set(lab, (m = new Map()));
  m.set(path, open);
  return () => { if (m.get(path) === open) m.delete(path); };
}

export function devNode(lab: LabCore, path: string): DevNodeOpener | undefined {
  return nodes.get(lab)?.get(path);
}

const blockDevices = new WeakMap<LabCore, number[]>();

/**
 * Adds a storage device (its record) to the lab's block devices; returns
 * the remover. The first one still there holds the lab's directory
 * (ProcessOptions.root): its DMA moves the bytes of a regular file's direct
 * I/O to and from dma-bufs (copy_file_range, DMA_BUF_IOCTL_RW_FILE).
 */
export function registerBlockDevice(lab: LabCore, record: number): () => void {
  let list = blockDevices.get(lab);
  if (list === undefined) blockDevices.set(lab, (list = []));
  list.push(record);
  return () => {
    const at = list.indexOf(record);
    if (at >= 0) list.splice(at, 1);
  };
}

/** The storage record under the lab's directory (see registerBlockDevice), or undefined. */
export function rootBlockDevice(lab: LabCore): number | undefined {
  return blockDevices.get(lab)?.[0];
}

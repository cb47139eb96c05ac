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

/*
 * dmabuf-lab copy engine: the exports of the WebAssembly module.
 *
 * Contract: one compiled module, instantiated once per thread over the one
 * shared memory (imported as env.memory). Each instance calls engine_init()
 * before anything else; its globals (bounds, fault index) are its own, all
 * other state is in the arena. Nothing here allocates. Every call that takes
 * offsets validates them first and returns 0 or a negative errno; on error
 * no byte has moved and lastFaultIndex() names the first bad entry (-1 when
 * the table itself, or an argument, was bad).
 */
import { setBounds } from "./bounds";
import { setSyncBounds } from "./fence";

/**
 * Sets this instance's DMA range, the AUTO calibration table, the sync heap
 * (where fence records live) and the control block.
 */
export function engine_init(dmaLo: usize, dmaHi: usize, autoTable: usize, syncLo: usize, syncHi: usize, control: usize): void {
  setBounds(dmaLo, dmaHi, autoTable);
  setSyncBounds(syncLo, syncHi, control);
}

export { lastFaultIndex as last_fault_index } from "./bounds";
export { copy, sgCopy as sg_copy, sgGather as sg_gather, sgScatter as sg_scatter, fill } from "./sg";
export { sgChecksum as sg_checksum } from "./xxhash";
export { fenceInit as fence_init, fenceSignal as fence_signal, fenceWait as fence_wait } from "./fence";
export { resvAddFence as resv_add_fence, resvReindex as resv_reindex } from "./resv";
export { rwFast as rw_fast } from "./rw";

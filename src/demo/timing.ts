/*
 * When each stage of a demo frame could start, from fence timestamps (ns,
 * lab clock), for the fence timeline of the demo page.
 *
 * A stage's job starts no earlier than its submission and than its
 * device's previous job's fence (a device runs its jobs in order). With
 * implicit sync it also waits for the fences of the device jobs that last
 * used its buffers before it, of frame k and of frame k-N on the same slot:
 *   camera k   the gpu of k-N (it read the camera frame)
 *   gpu k      the camera of k (write), the display of k-N (it read the output)
 *   display k  the gpu of k (write)
 * The CPU reader's and the verdict's reads are left out: they are short.
 * With bypassFences no job waits for another's fence.
 */
import type { FrameReport } from "./options.js";

type Times = Pick<FrameReport, "submitNs" | "cameraNs" | "gpuNs" | "displayNs">;
type Starts = Pick<FrameReport, "cameraStartNs" | "gpuStartNs" | "displayStartNs">;

/** prev: frame k-1; onSlot: frame k-N (either undefined at the start). */
export function stageStarts(t: Times, prev: Times | undefined, onSlot: Times | undefined, fenced: boolean): Starts {
  const after = (...ns: (number | undefined)[]) => Math.max(t.submitNs, ...ns.filter((n): n is number => n !== undefined));
  return {
    cameraStartNs: after(prev?.cameraNs, fenced ? onSlot?.gpuNs : undefined),
    gpuStartNs: after(prev?.gpuNs, ...(fenced ? [t.cameraNs, onSlot?.displayNs] : [])),
    displayStartNs: after(prev?.displayNs, fenced ? t.gpuNs : undefined),
  };
}

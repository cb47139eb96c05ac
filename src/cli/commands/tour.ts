/*
 * `dmabuf-lab tour` (also what `dmabuf-lab` alone runs): a one-screen tour
 * on embedded defaults. --json prints the TourResult.
 */
import type { Command } from "../command.js";
import { parseOptions } from "../options.js";
import { runTour, type TourResult } from "../tour.js";
import { formatBytes, table } from "../../report.js";

function render(r: TourResult): string {
  const l = r.layout;
  const mib = (n: number) => formatBytes(n);
  const lines = [
    "dmabuf-lab tour: a shared WebAssembly memory playing DMA memory",
    "",
    `arena ${mib(l.memoryBytes)}: control + allocator state ${mib(l.metaBytes + 4096)}, sync region ${mib(l.syncBytes)}, ` +
      `page pool ${mib(l.poolBytes)} @ 0x${l.poolBase.toString(16)}, user memory ${mib(l.userBytes)} @ 0x${l.userBase.toString(16)}`,
    "",
    `copy engine, ${mib(r.copies[0].bytes)} contiguous copy inside the arena:`,
    table(["strategy", "GB/s", "verified"], r.copies.map((c) => [c.strategy, c.gbps.toFixed(1), c.verified ? "yes" : "NO"])),
    "",
    `scatter-gather: ${r.scatterGather.pages} scattered 4 KiB pages gathered in one engine call: ` +
      `${r.scatterGather.gbps.toFixed(1)} GB/s, verified ${r.scatterGather.verified ? "yes" : "NO"}`,
    `a worker thread (lab thread '${r.worker.name}') checksummed the copy through its own engine: ` +
      `${r.worker.matches ? "matches" : "DIFFERS"} (xxh32 0x${r.worker.checksum.toString(16).padStart(8, "0")})`,
    `dma-buf: ${mib(r.dmabuf.bytes)} from the system heap in ${r.dmabuf.segments} scattered chunks, through pwrite ` +
      `${r.dmabuf.writeGbps.toFixed(1)} GB/s and pread ${r.dmabuf.readGbps.toFixed(1)} GB/s (fences and all), ` +
      `verified ${r.dmabuf.verified ? "yes" : "NO"}`,
    `page pool: ${mib(r.pages.freeBytes)} free of ${mib(r.pages.totalBytes)}, fragmentation ${(r.pages.fragmentation * 100).toFixed(0)}%; ` +
      `user memory: ${mib(r.user.freeBytes)} free`,
    "",
    "next: dmabuf-lab demo                 (camera -> gpu -> display: three devices over implicit fences)",
    "      dmabuf-lab contend              (writers, readers and devices on shared dma-bufs; --bypass-fences)",
    "      dmabuf-lab bench copy --quick   (strategies against native memcpy and TypedArray.set)",
    "      dmabuf-lab bench fence --quick  (fences, resv and locks against raw Atomics)",
    "      dmabuf-lab serve                (the demo page in a browser, with the isolation headers)",
  ];
  return lines.join("\n") + "\n";
}

export const tour: Command = {
  name: "tour",
  summary: "a one-screen tour on embedded defaults (what `dmabuf-lab` alone runs)",
  usage: "usage: dmabuf-lab tour [--json]\n\n  --json   print the result as JSON\n",
  async run(argv, io) {
    const values = parseOptions(argv, { json: { type: "boolean" } });
    const result = await runTour({ onProgress: (m) => io.stderr(`tour: ${m}\n`) });
    io.stdout(values.json ? JSON.stringify(result, null, 2) + "\n" : render(result));
    const ok = result.copies.every((c) => c.verified) && result.scatterGather.verified && result.worker.matches &&
      result.dmabuf.verified;
    return ok ? 0 : 1;
  },
};

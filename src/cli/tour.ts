/*
 * The tour: what `dmabuf-lab` with no arguments shows. It creates a lab on
 * embedded defaults, allocates from both allocators, copies with every
 * strategy (verifying each copy against an independent checksum), runs a
 * scatter-gather copy over scattered pages, and has a real worker thread
 * check the result through its own engine instance, and writes and reads a
 * system-heap dma-buf through the read/write path. Returns data; the
 * command renders it.
 */
import { Lab } from "../api/lab.js";
import { spawnLabThread } from "../thread/host.js";
import { strategyNames, type StrategyName } from "../engine/strategy.js";
import type { Layout } from "../memory/layout.js";
import type { BuddyStats } from "../memory/buddy.js";
import { PAGE_SIZE } from "../memory/layout.js";
import { DmaBufFile } from "../uapi/dma_buf_file.js";

export interface TourOptions {
  /** Bytes per strategy copy; default 4 MiB. */
  copyBytes?: number;
  /** Time spent measuring each strategy, in ms; default 150. */
  measureMs?: number;
  onProgress?: (message: string) => void;
}

export interface TourResult {
  layout: Layout;
  copies: { strategy: StrategyName; bytes: number; gbps: number; verified: boolean }[];
  scatterGather: { pages: number; bytes: number; gbps: number; verified: boolean };
  /** The lab thread that checksummed the copy: its name, its checksum, whether it matches. */
  worker: { name: string; checksum: number; matches: boolean };
  dmabuf: { bytes: number; segments: number; writeGbps: number; readGbps: number; verified: boolean };
  pages: BuddyStats;
  user: BuddyStats;
}

function measure(fn: () => void, budgetMs: number): number {
  fn(); // warm-up
  let runs = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    fn();
    runs++;
    elapsed = performance.now() - start;
  } while (elapsed < budgetMs);
  return elapsed / runs;
}

export async function runTour(options: TourOptions = {}): Promise<TourResult> {
  const bytes = options.copyBytes ?? 4 * 1024 * 1024;
  const budget = options.measureMs ?? 150;
  const progress = options.onProgress ?? (() => {});
  progress("creating the lab (256 MiB shared memory)");
  const lab = await Lab.create();
  const { engine } = lab;
  try {
    const src = lab.alloc(bytes, { zero: false });
    const dst = lab.alloc(bytes, { zero: false });
    for (let i = 0; i < bytes; i += 4096) crypto.getRandomValues(src.subarray(i, i + 4096));
    const srcOff = lab.offsetOf(src);
    const dstOff = lab.offsetOf(dst);
    const expected = engine.checksumRange(srcOff, bytes);

    const copies: TourResult["copies"] = [];
    for (const strategy of strategyNames) {
      progress(`copying ${bytes} bytes with '${strategy}'`);
      engine.fill(dstOff, 0, bytes);
      const ms = measure(() => engine.copy(dstOff, srcOff, bytes, strategy), strategy === "bytes" ? budget / 3 : budget);
      const verified = Buffer.compare(Buffer.from(src.buffer, srcOff, bytes), Buffer.from(dst.buffer, dstOff, bytes)) === 0;
      copies.push({ strategy, bytes, gbps: bytes / ms / 1e6, verified });
    }

    progress("gathering scattered pages in one engine call");
    const pageCount = 256;
    const orderZero = Array.from({ length: pageCount * 2 }, () => lab.allocPages(0));
    // Free every other page so the remaining ones are not contiguous.
    const pages = orderZero.filter((_, i) => i % 2 === 0);
    orderZero.filter((_, i) => i % 2 === 1).forEach((p) => lab.freePages(p, 0));
    const list = lab.segmentList(pageCount);
    for (const p of pages) list.push(p, PAGE_SIZE);
    const sgBytes = pageCount * PAGE_SIZE;
    engine.scatter(list, srcOff);
    engine.fill(dstOff, 0, sgBytes);
    const sgMs = measure(() => engine.gather(list, dstOff), budget);
    const sgVerified = engine.checksum(list) === engine.checksumRange(srcOff, sgBytes) &&
      engine.checksumRange(dstOff, sgBytes) === engine.checksumRange(srcOff, sgBytes);

    progress("asking a worker thread to checksum the same bytes");
    const thread = await spawnLabThread(lab, { name: "tour" });
    let worker: TourResult["worker"];
    try {
      const checksum = await thread.api.checksumRange(dstOff, bytes);
      worker = { name: thread.name, checksum, matches: checksum === expected };
    } finally {
      await thread.terminate();
    }

    progress("writing and reading a system-heap dma-buf through the read/write path");
    const buf = lab.heap("system").alloc(bytes);
    let dmabuf: TourResult["dmabuf"];
    try {
      const writeMs = measure(() => buf.write(src, 0), budget);
      engine.fill(dstOff, 0, bytes);
      const readMs = measure(() => buf.read(dst, 0), budget);
      const verified = engine.checksumRange(dstOff, bytes) === expected;
      const segments = (lab.process.file(buf.fd) as DmaBufFile).buf.segments().length;
      dmabuf = { bytes, segments, writeGbps: bytes / writeMs / 1e6, readGbps: bytes / readMs / 1e6, verified };
    } finally {
      buf.close();
    }

    list.free();
    pages.forEach((p) => lab.freePages(p, 0));
    lab.free(src);
    lab.free(dst);
    const result: TourResult = {
      layout: lab.layout,
      copies,
      scatterGather: { pages: pageCount, bytes: sgBytes, gbps: sgBytes / sgMs / 1e6, verified: sgVerified },
      worker,
      dmabuf,
      pages: lab.arena.pages.stats(),
      user: lab.arena.user.stats(),
    };
    return result;
  } finally {
    lab.close();
  }
}

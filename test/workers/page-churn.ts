/*
 * A test worker (bundled to build/test-workers/page-churn.mjs) that churns
 * the lab's page allocator from its own thread, for test/threads.test.ts.
 *
 * It attaches to the lab, says "ready", waits for the shared start flag (so
 * that every worker begins at once), then runs a seeded loop of random
 * allocPages/freePages (orders 0..maxOrder). Each block it holds carries its
 * tag in the first word of every page and in the block's last word; the tags
 * are checked before the block is freed, so a page handed to two threads at
 * once shows up as a stamp overwritten by the other. It ends with a
 * PageChurnReport: counts, broken stamps, and the blocks it still holds
 * (which the main thread checks and frees).
 */
import { DmaBufError } from "../../src/errno.js";
import { Lab } from "../../src/api/lab.js";
import type { LabHandle } from "../../src/lab.js";
import { PAGE_SIZE } from "../../src/memory/layout.js";
import { prng, takeRandom } from "../helpers/prng.js";
import { readyThenAwaitStart, runWorker } from "./protocol.js";

export interface PageChurnData {
  handle: LabHandle;
  /** Worker number, 0..254: the top byte of every tag it writes is index + 1. */
  index: number;
  seed: number;
  steps: number;
  /** At most this many blocks held at once. */
  maxHeld: number;
  maxOrder: number;
  /** Word 0 of this array becomes non-zero when the workers may start. */
  start: Int32Array;
  timeoutMs: number;
}

export interface HeldBlock {
  offset: number;
  order: number;
  tag: number;
}

export interface PageChurnReport {
  type: "done";
  index: number;
  allocs: number;
  frees: number;
  enomem: number;
  /** Descriptions of stamps found overwritten. */
  corrupt: string[];
  held: HeldBlock[];
}

/** The word indices a block's tag is written to: each page's first word, and the block's last word. */
function stampWords(offset: number, order: number): number[] {
  const pages = 2 ** order;
  const words: number[] = [];
  for (let i = 0; i < pages; i++) words.push((offset + i * PAGE_SIZE) >>> 2);
  words.push((offset + pages * PAGE_SIZE - 4) >>> 2);
  return words;
}

async function main(data: PageChurnData): Promise<PageChurnReport> {
  const lab = await Lab.attach(data.handle);
  const u32 = lab.arena.u32;
  const rng = prng(data.seed);
  const report: PageChurnReport = { type: "done", index: data.index, allocs: 0, frees: 0, enomem: 0, corrupt: [], held: [] };
  const held = report.held;
  let serial = 0;

  const check = (b: HeldBlock, when: string) => {
    for (const w of stampWords(b.offset, b.order)) {
      if (u32[w] !== b.tag) {
        report.corrupt.push(`${when}: block 0x${b.offset.toString(16)} (order ${b.order}, tag 0x${b.tag.toString(16)}): ` +
          `word at 0x${(w * 4).toString(16)} holds 0x${u32[w].toString(16)}`);
        return;
      }
    }
  };

  readyThenAwaitStart(data.start, data.timeoutMs, `worker ${data.index}`);

  for (let step = 0; step < data.steps; step++) {
    if (held.length > 0 && (held.length >= data.maxHeld || rng.next() < 0.5)) {
      const b = takeRandom(rng, held);
      check(b, "before free");
      lab.freePages(b.offset, b.order);
      report.frees++;
    } else {
      const order = rng.int(0, data.maxOrder);
      let offset: number;
      try {
        offset = lab.allocPages(order);
      } catch (e) {
        if (e instanceof DmaBufError && e.code === "ENOMEM") {
          report.enomem++;
          continue;
        }
        throw e;
      }
      report.allocs++;
      const b: HeldBlock = { offset, order, tag: (((data.index + 1) << 24) | (++serial & 0xffffff)) >>> 0 };
      for (const w of stampWords(offset, order)) u32[w] = b.tag;
      held.push(b);
    }
  }
  for (const b of held) check(b, "at the end");
  lab.close();
  return report;
}

runWorker(main);

/*
 * A lab thread: a worker that attaches to the lab's shared memory with its
 * own engine instance and serves LabThreadApi over comlink. Bundled by the
 * build to build/workers/lab-thread.mjs; started by spawnLabThread().
 */
import * as Comlink from "comlink";
import { Lab } from "../src/api/lab.js";
import { threadToken } from "../src/memory/futex.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import type { LabThreadApi, LabThreadData } from "../src/thread/protocol.js";
import { workerContext } from "../src/thread/spawn.js";

installErrorTransfer();
const { data, endpoint } = await workerContext<LabThreadData>();
const lab = await Lab.attach(data.handle);
lab.trace.setThread(data.name);
const { engine } = lab;
const descriptors = lab.sgTable();

const api: LabThreadApi = {
  hello: () => ({ threadId: threadToken(), name: data.name }),
  copy: (dst, src, len, strategy) => engine.copy(dst, src, len, strategy),
  fill: (dst, value, len) => engine.fill(dst, value, len),
  checksumRange: (offset, len, seed) => engine.checksumRange(offset, len, seed),
  sgCopy(flat, strategy) {
    descriptors.clear();
    for (let i = 0; i + 2 < flat.length; i += 3) descriptors.push(flat[i], flat[i + 1], flat[i + 2]);
    engine.sgCopy(descriptors, strategy);
  },
  alloc: (bytes) => lab.offsetOf(lab.alloc(bytes)),
  free: (offset) => lab.arena.user.free(offset, undefined, "free"),
  allocPages: (order) => lab.allocPages(order),
  freePages: (offset, order) => lab.freePages(offset, order),
  stats: () => lab.stats(),
};

Comlink.expose(api, endpoint);

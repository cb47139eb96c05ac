/*
 * A CPU thread of the contention experiment (`dmabuf-lab contend`): attaches
 * to the lab, sets up a writer or reader (src/contend/cpu.ts) over the
 * buffers it is given, and serves ContendCpuApi over comlink: hello() once
 * ready, run() for the whole loop. Spawned and terminated by
 * src/contend/run.ts; counters go to the control block in the arena.
 */
import * as Comlink from "comlink";
import { Lab } from "../src/api/lab.js";
import { CpuThread } from "../src/contend/cpu.js";
import type { ContendCpuApi, CpuThreadData } from "../src/contend/protocol.js";
import { installErrorTransfer } from "../src/thread/errors.js";
import { workerContext } from "../src/thread/spawn.js";

installErrorTransfer();
const { data, endpoint } = await workerContext<CpuThreadData>();
const lab = await Lab.attach(data.handle);
lab.trace.setThread(`${data.role} ${data.index}`);
const thread = new CpuThread(lab, data);

const api: ContendCpuApi = {
  hello: () => `${data.role} ${data.index}`,
  async run() {
    try {
      const result = await thread.run();
      return Comlink.transfer(result, [result.waitsNs.buffer]);
    } finally {
      thread.close();
      lab.close();
    }
  },
};

Comlink.expose(api, endpoint);

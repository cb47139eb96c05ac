// dmabuf-lab embedded in a Node program: a dma-buf from the system heap,
// written and read like a file, copied by a device (a worker thread) that
// waits for the CPU's write by itself (implicit sync).
// Run: node examples/node-embed.mjs   (after npm install; in this repository, after npm run build)
import { Lab } from "dmabuf-lab";

const lab = await Lab.create({ memoryBytes: 64 << 20 });
const gpu = await lab.spawnDevice({ name: "gpu" });
const a = lab.heap("system").alloc(1 << 20);
const b = lab.heap("system").alloc(1 << 20);
a.write(new Uint8Array(1 << 20).fill(42), 0);

const copy = gpu.submit({ kind: "copy", src: await gpu.attach(a), dst: await gpu.attach(b) });
const out = new Uint8Array(1 << 20);
b.read(out, 0); // waits for the copy's fence
console.log(`device copy: status ${copy.status}, ${out.every((v) => v === 42) ? "every byte arrived" : "BYTES MISSING"}`);

copy.put();
await gpu.shutdown();
a.close();
b.close();
lab.close();

// A contention experiment in a few lines: a CPU writer and two devices (one
// copies, one checksums) take turns on one shared dma-buf, ordered only by
// its implicit fences. Each round the writer stamps a new generation; the
// checksum device must see the copy of exactly that generation. The full
// experiment (threads, wait strategies, --bypass-fences, charts) is
// `dmabuf-lab contend`.
// Run: node examples/contention.mjs [ROUNDS]
import { Lab } from "dmabuf-lab";

const rounds = Number(process.argv[2] ?? 50);
const size = 1 << 16;
const lab = await Lab.create({ memoryBytes: 64 << 20 });
const [copier, checker] = await Promise.all([lab.spawnDevice({ name: "copier" }), lab.spawnDevice({ name: "checker" })]);
const shared = lab.heap("system").alloc(size);
const mirror = lab.heap("system").alloc(size);
const sum = lab.heap("system").alloc(4096);
const [cs, cm, km, ks] = [await copier.attach(shared), await copier.attach(mirror), await checker.attach(mirror), await checker.attach(sum)];

let torn = 0;
const page = new Uint8Array(size);
for (let g = 1; g <= rounds; g++) {
  shared.write(page.fill(g & 0xff), 0); // the CPU writes generation g (waits for the last copy's read)
  const copy = copier.submit({ kind: "copy", src: cs, dst: cm }); // waits for the CPU's write
  const check = checker.submit({ kind: "checksum", src: km, dst: { buffer: ks, offset: 0, length: 4 } }); // waits for the copy
  const got = new Uint8Array(4);
  sum.read(got, 0); // waits for the checksum
  const again = new Uint8Array(size);
  mirror.read(again, 0);
  if (!again.every((v) => v === (g & 0xff))) torn++;
  copy.put();
  check.put();
}
console.log(`${rounds} rounds, 2 devices and the CPU on one buffer: ${torn} torn reads; ` +
  `copier ${copier.stats().jobsDone} jobs, checker ${checker.stats().jobsDone} jobs`);
await Promise.all([copier.shutdown(), checker.shutdown()]);
for (const b of [shared, mirror, sum]) b.close();
lab.close();
process.exitCode = torn === 0 ? 0 : 1;

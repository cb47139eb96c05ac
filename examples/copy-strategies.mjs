// A copy-strategy study: every strategy of the copy engine against
// Uint8Array.set on the same shared memory, for sizes from 256 B to 4 MiB,
// as GB/s (median of 15 timed batches). `dmabuf-lab bench copy` is the full
// benchmark, with native memcpy as the peer and charts.
// Run: node examples/copy-strategies.mjs [--quick]
import { Lab, strategyNames } from "dmabuf-lab";

const quick = process.argv.includes("--quick");
const sizes = quick ? [4096, 1 << 20] : [256, 4096, 65536, 1 << 20, 4 << 20];
const lab = await Lab.create({ memoryBytes: 64 << 20 });
const src = lab.alloc(4 << 20);
const dst = lab.alloc(4 << 20);
crypto.getRandomValues(src.subarray(0, 65536));

/** GB/s of one method at one size: the median of 15 batches of about 1 ms each. */
function gbps(bytes, copyOnce) {
  const batch = Math.max(1, Math.round((1 << 22) / bytes));
  const times = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    for (let j = 0; j < batch; j++) copyOnce();
    times.push((performance.now() - t0) / batch);
  }
  times.sort((x, y) => x - y);
  return bytes / (times[7] * 1e6);
}

const methods = [...strategyNames.map((s) => [s, (n) => () => lab.copy(dst.subarray(0, n), src.subarray(0, n), s)]),
  ["Uint8Array.set", (n) => () => dst.set(src.subarray(0, n))]];
console.log(["size".padEnd(8), ...methods.map(([name]) => name.padStart(15))].join(""));
for (const n of sizes) {
  const row = methods.map(([, make]) => gbps(n, make(n)).toFixed(1).padStart(15));
  console.log([(n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`).padEnd(8), ...row].join(""));
}
const ok = dst.subarray(0, sizes.at(-1)).every((v, i) => v === src[i]);
console.log(`GB/s; the last copy ${ok ? "verified" : "DIFFERS"}`);
lab.close();
process.exitCode = ok ? 0 : 1;

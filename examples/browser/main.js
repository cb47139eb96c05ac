// dmabuf-lab in a web page, through a bundler: a device worker copies one
// dma-buf into another, and the page shows what it read back. Build it with
// Vite (vite.config.js here) or esbuild (README, "In the browser"); serve it
// with the cross-origin isolation headers. CI builds it from the packed
// tarball with both and runs it in Chromium (test-browser/bundlers.test.ts),
// which reads window.__results or window.__error.
import { Lab } from "dmabuf-lab";

try {
  const lab = await Lab.create({ memoryBytes: 64 << 20 });
  const dev = await lab.spawnDevice({ name: "bundled" });
  const a = lab.heap("system").alloc(65536);
  const b = lab.heap("system").alloc(65536);
  await a.writeAsync(new Uint8Array(65536).fill(7), 0);
  const copy = dev.submit({ kind: "copy", src: await dev.attach(a), dst: await dev.attach(b) });
  const signalled = (await copy.waitAsync(10_000)) > 0;
  const out = new Uint8Array(65536);
  await b.readAsync(out, 0);
  window.__results = { signalled, status: copy.status, sevens: out.filter((v) => v === 7).length, jobsDone: dev.stats().jobsDone };
  document.body.textContent = `copied on a device: ${JSON.stringify(window.__results)}`;
  copy.put();
  await dev.shutdown();
  a.close();
  b.close();
  lab.close();
} catch (e) {
  window.__error = `${e?.name} ${e?.code ?? ""}: ${e?.message ?? e}`;
  document.body.textContent = window.__error;
}

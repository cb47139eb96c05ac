// A small app that uses dmabuf-lab as a package, built by the bundler tests
// (test-browser/bundlers.test.ts): a device worker copies a dma-buf into
// another, and the page reports what it read back (window.__results) or the
// error (window.__error: its name, code and message).
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
  copy.put();
  await dev.shutdown();
  a.close();
  b.close();
  lab.close();
} catch (e) {
  window.__error = `${e?.name} ${e?.code ?? ""}: ${e?.message ?? e}`;
}

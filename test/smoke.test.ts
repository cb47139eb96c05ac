import { test, expect } from "vitest";
import { Lab, spawnLabThread } from "../src/index.js";
test("smoke", async () => {
  const lab = await Lab.create();
  console.log(lab.layout);
  const a = lab.alloc(1000), b = lab.alloc(1000);
  for (let i = 0; i < 1000; i++) a[i] = i * 7;
  for (const s of ["bulk","simd","words","bytes","reference","auto"] as const) { b.fill(0); lab.copy(b, a, s); expect(Buffer.compare(Buffer.from(b), Buffer.from(a))).toBe(0); }
  console.log(lab.engine.checksumRange(lab.offsetOf(a), 1000).toString(16));
  const p = lab.allocPages(8); console.log(p, lab.stats().pages.freeBlocks);
  lab.freePages(p, 8); console.log(lab.stats().pages);
  expect(() => lab.engine.copy(0, 0, 10)).toThrow(/EFAULT/);
  const t = await spawnLabThread(lab);
  try { console.log(await t.api.hello(), (await t.api.checksumRange(lab.offsetOf(a), 1000)).toString(16));
    await expect(t.api.copy(0,0,5)).rejects.toMatchObject({code:'EFAULT', errno:14});
  } finally { await t.terminate(); }
});

/*
 * AUTO calibrated at first use (src/engine/autotune.ts): the measurement
 * decides only the buckets where bulk and simd trade places and keeps the
 * shipped table elsewhere; Lab.create() installs it (measured once per
 * realm, reused by later labs), "static" keeps calibration.json, a bad
 * choice is EINVAL; copies under the measured table move the right bytes.
 * No timing threshold: which strategy wins is the machine's business.
 */
import { describe, expect, test } from "vitest";
import { Lab } from "../src/api/lab.js";
import { MEASURED_BUCKETS, SCRATCH_BYTES, measureAutoTable } from "../src/engine/autotune.js";
import { defaultCalibration, encodeCalibration } from "../src/engine/calibration.js";
import { CTL_AUTO_TABLE } from "../src/memory/layout.js";
import { AUTO_TABLE_SIZE } from "../src/engine/abi.js";
import { expectErrnoAsync } from "./helpers/errors.js";
import { brokenCanary, guard } from "./helpers/canary.js";

const MARGIN = 64;

const tableOf = (lab: Lab): Uint8Array => lab.arena.u8.slice(lab.arena.control(CTL_AUTO_TABLE), lab.arena.control(CTL_AUTO_TABLE) + AUTO_TABLE_SIZE);

describe("AUTO calibrated at first use", () => {
  test("measures bulk against simd in the contested buckets only, keeps the shipped table elsewhere", async () => {
    const lab = await Lab.create({ calibration: "static" });
    try {
      const dst = lab.alloc(SCRATCH_BYTES);
      const src = lab.alloc(SCRATCH_BYTES);
      const m = measureAutoTable(lab.engine, dst, src);
      expect(m.rounds).toBeGreaterThanOrEqual(3);
      expect(m.cells.map((c) => [c.bucket, c.misaligned])).toEqual(MEASURED_BUCKETS.flatMap((b) => [[b, false], [b, true]]));
      for (const c of m.cells) {
        expect(32 - Math.clz32(c.bytes), "the size lies in its bucket").toBe(c.bucket);
        expect(c.ns.bulk).toBeGreaterThan(0);
        expect(c.ns.simd).toBeGreaterThan(0);
        const chosen = (c.misaligned ? m.table.misaligned : m.table.aligned)[c.bucket];
        expect(["bulk", "simd"]).toContain(chosen);
        // simd only when it beat bulk by the margin.
        if (chosen === "simd") expect(c.ns.simd).toBeLessThan(c.ns.bulk);
      }
      for (const row of ["aligned", "misaligned"] as const) {
        m.table[row].forEach((s, b) => {
          if (!(MEASURED_BUCKETS as readonly number[]).includes(b)) expect(s, `${row}[${b}]`).toBe(defaultCalibration[row][b]);
        });
      }
      lab.free(dst);
      lab.free(src);
    } finally {
      lab.close();
    }
  });

  test("Lab.create installs the measured table, later labs reuse it; \"static\" keeps calibration.json", async () => {
    const a = await Lab.create();
    const b = await Lab.create({ calibration: "measure" });
    const s = await Lab.create({ calibration: "static" });
    try {
      expect(tableOf(b)).toEqual(tableOf(a));
      expect(tableOf(s)).toEqual(encodeCalibration(defaultCalibration));
      // The scratch went back: the user memory is as free as a static lab's.
      expect(a.stats().user.freeBytes).toBe(s.stats().user.freeBytes);
      // AUTO copies right under the measured table, in and around the measured sizes.
      for (const bytes of [300, 24 * 1024 + 5, 48 * 1024, 200 * 1024 + 3, 768 * 1024]) {
        for (const [d, o] of [[0, 0], [13, 3]]) {
          const src = a.alloc(bytes + 64);
          const dst = a.alloc(bytes + 16 + 2 * MARGIN);
          for (let i = 0; i < src.length; i++) src[i] = (i * 7 + bytes) & 0x7f;
          const g = guard(dst, MARGIN + d, bytes, MARGIN);
          a.engine.copy(dst.byteOffset + MARGIN + d, src.byteOffset + o, bytes, "auto");
          expect(brokenCanary(g, MARGIN), `${bytes} B at +${d}/+${o}`).toBeUndefined();
          expect(Buffer.compare(Buffer.from(dst.subarray(MARGIN + d, MARGIN + d + bytes)), Buffer.from(src.subarray(o, o + bytes)))).toBe(0);
          a.free(src);
          a.free(dst);
        }
      }
    } finally {
      for (const l of [a, b, s]) l.close();
    }
  });

  test("a calibration that is not \"measure\", \"static\" or a table is EINVAL", async () => {
    await expectErrnoAsync(() => Lab.create({ calibration: "fast" as "static" }), "EINVAL");
  });
});

/*
 * Lab.create's options and the saved calibration: an unknown option is
 * EINVAL naming it (a misspelt option must not be silently ignored), and a
 * table saved by `bench calibrate --write` goes to the user's cache
 * directory, never into the package, and comes back checked.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Lab } from "../src/api/lab.js";
import { DmaBufError } from "../src/errno.js";
import { currentDefaultCalibration, defaultCalibration, setDefaultCalibration } from "../src/engine/calibration.js";
import { calibrationPath, loadCalibration, saveCalibration } from "../src/cli/calibration_file.js";

describe("Lab.create options", () => {
  it("an unknown option is EINVAL naming it, and no lab is made", async () => {
    const err = await Lab.create({ memoryBytes: 32 * 2 ** 20, coherentt: false } as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DmaBufError);
    expect((err as DmaBufError).code).toBe("EINVAL");
    expect((err as DmaBufError).message).toContain("unknown option coherentt");
  });
});

describe("saved calibration", () => {
  const cache = mkdtempSync(join(os.tmpdir(), "dmabuf-lab-cache-"));
  const before = process.env.XDG_CACHE_HOME;
  afterEach(() => {
    if (before === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = before;
    setDefaultCalibration(defaultCalibration);
    rmSync(cache, { recursive: true, force: true });
  });

  it("is written to the user's cache directory and read back; a bad file is refused naming it", () => {
    process.env.XDG_CACHE_HOME = cache;
    expect(loadCalibration()).toBeUndefined();
    const table = { ...defaultCalibration, source: "test machine", aligned: defaultCalibration.aligned.map(() => "simd" as const) };
    const path = saveCalibration(table);
    expect(path).toBe(join(cache, "dmabuf-lab", "calibration.json"));
    expect(path).toBe(calibrationPath());
    expect(JSON.parse(readFileSync(path, "utf8")).source).toBe("test machine");
    const loaded = loadCalibration()!;
    setDefaultCalibration(loaded);
    expect(currentDefaultCalibration().aligned[20]).toBe("simd");
    writeFileSync(path, JSON.stringify({ ...table, aligned: ["nope"] }));
    expect(() => loadCalibration()).toThrow(/aligned must list/);
    expect(() => setDefaultCalibration({ ...table, misaligned: [] })).toThrow(DmaBufError);
    expect(currentDefaultCalibration().aligned[20]).toBe("simd");
  });
});

/*
 * The AUTO calibration of this machine, saved by `dmabuf-lab bench calibrate
 * --write` in the user's cache directory ($XDG_CACHE_HOME/dmabuf-lab, else
 * ~/.cache/dmabuf-lab; never inside the package, which may sit read-only in
 * node_modules) and read back by the CLI at start-up, so that every lab the
 * command creates uses it. Programs pass a table themselves:
 * Lab.create({ calibration }).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { encodeCalibration, type Calibration } from "../engine/calibration.js";

export function calibrationPath(): string {
  const cache = process.env.XDG_CACHE_HOME || join(os.homedir(), ".cache");
  return join(cache, "dmabuf-lab", "calibration.json");
}

/** Checks and saves a table; returns the file's path. */
export function saveCalibration(table: Calibration): string {
  encodeCalibration(table);
  const path = calibrationPath();
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, JSON.stringify(table, null, 1) + "\n");
  return path;
}

/** The saved table, or undefined when there is none; a file that does not parse or check is an error naming it. */
export function loadCalibration(): Calibration | undefined {
  const path = calibrationPath();
  if (!existsSync(path)) return undefined;
  let table: Calibration;
  try {
    table = JSON.parse(readFileSync(path, "utf8")) as Calibration;
  } catch (e) {
    throw new Error(`${path} is not JSON (${(e as Error).message}); remove it or run bench calibrate --write again`);
  }
  encodeCalibration(table);
  return table;
}

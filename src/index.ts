/*
 * dmabuf-lab: the public API. Layers, bottom up: memory (the arena and its
 * allocators), engine (the wasm copy engine), the Lab that ties them
 * together for one thread, and the thread host for workers.
 */
export { DmaBufError, errnoNumbers, type ErrnoCode } from "./errno.js";
export { Lab, type LabOptions, type LabHandle, type AllocOptions } from "./lab.js";
export { Arena } from "./memory/arena.js";
export { BuddyAllocator, type BuddyStats } from "./memory/buddy.js";
export { Mutex, type MutexStats } from "./memory/mutex.js";
export { canBlock } from "./memory/futex.js";
export * as layout from "./memory/layout.js";
export { Engine } from "./engine/engine.js";
export { SgTable, SegmentList } from "./engine/tables.js";
export { strategies, strategyNames, type StrategyName, type FixedStrategy } from "./engine/strategy.js";
export { defaultCalibration, type Calibration } from "./engine/calibration.js";
export { lineSplit, type LineSplit } from "./engine/lines.js";
export { loadEngineModule } from "./engine/module.js";
export { spawnLabThread, type LabThread } from "./thread/host.js";

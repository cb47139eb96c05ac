/*
 * Labs in tests.
 *
 * LabSet: the labs a test file creates for single tests. create() makes one
 * (the set's defaults, overridden by the options given) and keeps it;
 * closeAll() closes every one made so far, all of them even when one close
 * throws.
 *
 * cleanUpAfterEach(): registers the file's afterEach, which first terminates
 * the file's workers (they use the labs' memory) and then closes its labs,
 * whatever the test's outcome.
 *
 * heapBalanced(): wraps a test body so that the test fails unless the lab's
 * sync heap has as many free bytes after the body as before (every record
 * the body made was released).
 */
import { afterEach, expect } from "vitest";
import { Lab } from "../../src/api/lab.js";
import type { LabOptions } from "../../src/lab.js";
import type { WorkerSet } from "./workers.js";

export class LabSet {
  private readonly labs: Lab[] = [];

  constructor(private readonly defaults: LabOptions = {}) {}

  async create(options: LabOptions = {}): Promise<Lab> {
    const lab = await Lab.create({ ...this.defaults, ...options });
    this.labs.push(lab);
    return lab;
  }

  closeAll(): void {
    const errors: unknown[] = [];
    for (const lab of this.labs.splice(0)) {
      try {
        lab.close();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

export function cleanUpAfterEach({ workers, labs }: { workers?: WorkerSet; labs?: LabSet }): void {
  afterEach(async () => {
    try {
      await workers?.terminateAll();
    } finally {
      labs?.closeAll();
    }
  });
}

export function heapBalanced(lab: () => Lab): (body: () => void | Promise<void>) => () => Promise<void> {
  const heapFree = (): number => lab().stats().sync.freeBytes;
  return (body) => async () => {
    const before = heapFree();
    await body();
    expect(heapFree(), "sync heap bytes after the test").toBe(before);
  };
}

/*
 * Labs in tests.
 *
 * LabSet: the labs a test file creates for single tests. create() makes one
 * (the set's defaults, overridden by the options given) and keeps it;
 * closeAll() closes every one made so far, all of them even when one close
 * throws.
 *
 * cleanUpAfterEach(): registers the file's afterEach, which first terminates
 * the file's workers (they use the labs' memory), then ends its devices
 * (helpers/devices.ts) and then closes its labs, whatever the test's outcome.
 *
 * DMABUF_LAB_SANITIZE=1 (`npm run test:sanitize`): every lab a LabSet makes
 * without a sanitize option of its own runs the race detector
 * (src/sanitize), and closeAll() fails when such a lab has a race. Labs
 * that ask for { sanitize: false } (tests that race on purpose) stay off.
 *
 * heapBalanced(): wraps a test body so that the test fails unless the lab's
 * sync heap has as many free bytes after the body as before (every record
 * the body made was released).
 */
import { afterEach, expect } from "vitest";
import { Lab } from "../../src/api/lab.js";
import type { LabOptions } from "../../src/lab.js";
import type { WorkerSet } from "./workers.js";
import type { DeviceSet } from "./devices.js";
import { raceVerdict, describeSide } from "../../src/sanitize/text.js";

/** Every LabSet lab without a sanitize option of its own is sanitized and checked (see above). */
const SANITIZE_ALL = process.env.DMABUF_LAB_SANITIZE === "1";

export class LabSet {
  private readonly labs: Lab[] = [];
  /** The labs sanitized because of DMABUF_LAB_SANITIZE, checked at closeAll(). */
  private readonly checked = new Set<Lab>();

  constructor(private readonly defaults: LabOptions = {}) {}

  async create(options: LabOptions = {}): Promise<Lab> {
    const asked = options.sanitize ?? this.defaults.sanitize;
    const lab = await Lab.create({ ...this.defaults, ...options, ...(asked === undefined && SANITIZE_ALL ? { sanitize: true } : {}) });
    this.labs.push(lab);
    if (asked === undefined && SANITIZE_ALL) this.checked.add(lab);
    return lab;
  }

  closeAll(): void {
    const errors: unknown[] = [];
    for (const lab of this.labs.splice(0)) {
      try {
        if (this.checked.delete(lab)) {
          const report = lab.sanitizer.report();
          if (report.raceCount > 0) {
            const [race] = report.races;
            errors.push(new Error(`${raceVerdict(report)}; first: ${describeSide(race.a)} vs ${describeSide(race.b)}`));
          }
        }
        lab.close();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

/** After each test: the workers terminated, then the devices ended, then the labs closed (each step however the one before ended). */
export function cleanUpAfterEach({ workers, devices, labs }: { workers?: WorkerSet; devices?: DeviceSet; labs?: LabSet }): void {
  afterEach(async () => {
    try {
      await workers?.terminateAll();
    } finally {
      try {
        await devices?.endAll();
      } finally {
        labs?.closeAll();
      }
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

/*
 * The job record's codec (src/devices/job.ts): JobRecord.encode is the one
 * writer of a job record and JobRecord's accessors its one reader, with one
 * map between the host API's access names and the IOMMU bits. Seeded random
 * jobs (a fixed seed; DMABUF_SEED chooses another) round-trip field by field
 * with canaries around the record, which stay untouched.
 */
import { describe, expect, test } from "vitest";
import { IOMMU_READ, IOMMU_WRITE } from "../src/dmabuf/iommu.js";
import {
  JOB_KERNEL, JOB_MAX_ARGS, JOB_MAX_BUFS, JOB_RECORD_SIZE, JobRecord, jobAccessBits, jobAccessName, jobKinds, type JobAccess, type JobFields,
} from "../src/devices/job.js";
import { RecordType } from "../src/memory/record.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { withSeed } from "./helpers/prng.js";

const MiB = 1024 * 1024;
const SEED = process.env.DMABUF_SEED !== undefined ? Number(process.env.DMABUF_SEED) >>> 0 : 0x10b5;
const labs = new LabSet({ memoryBytes: 32 * MiB, poolBytes: 8 * MiB });
cleanUpAfterEach({ labs });

describe("JobRecord, the job record's one codec", () => {
  test("seeded random jobs encode and decode to the same fields; the canaries around the record stay", async () => {
    const lab = await labs.create();
    const { sync } = lab;
    // A record with a canary record on each side of it, in the sync heap.
    const size = sync.arena.syncHeap.granuleBytes * 2 ** sync.arena.syncHeap.orderFor(JOB_RECORD_SIZE);
    const block = sync.allocRecord(RecordType.dmaBufBacking, 3 * size, "job_test");
    const rec = block + size;
    const canary = (v: number) => [sync.u8.subarray(block, rec), sync.u8.subarray(rec + size, rec + 2 * size)].forEach((c) => c.fill(v));
    await withSeed((rng) => {
      for (let round = 0; round < 500; round++) {
        canary(0xa5);
        sync.u8.fill(0, rec, rec + size);
        const job: JobFields = {
          kind: rng.int(0, JOB_KERNEL),
          fence: rng.int(0, 0xffffffff),
          dep: rng.int(0, 0xffffffff),
          kernelId: rng.int(0, 0xffffffff),
          args: Array.from({ length: rng.int(0, JOB_MAX_ARGS) }, () => rng.int(0, 0xffffffff)),
          submitNs: rng.next() * 1e15,
          buffers: Array.from({ length: rng.int(0, JOB_MAX_BUFS) }, () => ({
            iova: rng.int(0, 0xffffffff), len: rng.int(0, 0xffffffff), access: rng.pick(Object.values(jobAccessBits)),
            buffer: rng.int(0, 0xffffffff), offset: rng.int(0, 0xffffffff),
          })),
        };
        expect(JobRecord.encode(sync.arena, rec, job).decode()).toEqual(job);
        expect(new JobRecord(sync.arena, rec).decode(), "a second view reads the same").toEqual(job);
        for (const c of [sync.u8.subarray(block, rec), sync.u8.subarray(rec + size, rec + 2 * size)]) expect(c.every((v) => v === 0xa5)).toBe(true);
      }
    }, SEED);
    sync.freeRecord(block, RecordType.dmaBufBacking);
  });

  test("more arguments or buffers than a record holds are EINVAL, and nothing is written", async () => {
    const lab = await labs.create();
    const rec = lab.sync.allocRecord(RecordType.job, JOB_RECORD_SIZE, "job_test");
    const base: JobFields = { kind: jobKinds.nop, fence: 0, dep: 0, kernelId: 0, args: [], submitNs: 0, buffers: [] };
    const buffer = { iova: 1, len: 1, access: IOMMU_READ, buffer: 0, offset: 0 };
    expectErrno(() => JobRecord.encode(lab.arena, rec, { ...base, args: Array(JOB_MAX_ARGS + 1).fill(1) }), "EINVAL");
    expectErrno(() => JobRecord.encode(lab.arena, rec, { ...base, buffers: Array(JOB_MAX_BUFS + 1).fill(buffer) }), "EINVAL");
    expect(lab.arena.u8.subarray(rec, rec + JOB_RECORD_SIZE).every((v) => v === 0)).toBe(true);
    lab.sync.freeRecord(rec, RecordType.job);
  });

  test("the one access map: names and IOMMU bits are inverses; bits that name no access are EINVAL", () => {
    const names: JobAccess[] = ["read", "write", "read-write"];
    expect(names.map((n) => jobAccessBits[n])).toEqual([IOMMU_READ, IOMMU_WRITE, IOMMU_READ | IOMMU_WRITE]);
    for (const n of names) expect(jobAccessName(jobAccessBits[n])).toBe(n);
    for (const bits of [0, 4, IOMMU_WRITE | 4]) expectErrno(() => jobAccessName(bits), "EINVAL");
  });
});

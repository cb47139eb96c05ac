/*
 * udmabuf and memfd: the kernel's udmabuf selftests (half-page offset,
 * half-page size, a non-memfd, a sealed 4-page memfd), every validation
 * rule with nothing changed, pages shared with the memfd and kept alive
 * after it closes, CREATE_LIST, and memfd sealing and truncation.
 */
import { describe, expect, test } from "vitest";
import {
  F_SEAL_FUTURE_WRITE, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, UDMABUF_LIST_LIMIT,
  UDMABUF_SIZE_LIMIT, type Lab, type Memfd,
} from "../src/index.js";
import { PAGE_SIZE } from "../src/memory/layout.js";
import { expectErrno } from "./helpers/errors.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";

const MiB = 1024 * 1024;
const labs = new LabSet({ memoryBytes: 256 * MiB, poolBytes: 96 * MiB });
cleanUpAfterEach({ labs });

/** What a refused call must leave alone. */
function state(lab: Lab) {
  const { pages, sync, user } = lab.stats();
  return { pages: pages.freeBytes, sync: sync.freeBytes, user: user.freeBytes };
}

/** A memfd of `pages` pages, sealed against shrinking (what udmabuf needs). */
function sealedMemfd(lab: Lab, pages: number, seals = F_SEAL_SHRINK): Memfd {
  const m = lab.memfd("udmabuf-test", MFD_ALLOW_SEALING);
  m.truncate(pages * PAGE_SIZE);
  m.addSeals(seals);
  return m;
}

describe("udmabuf selftests", () => {
  test("a half-page offset fails, a half-page size fails, a non-memfd fails, a sealed 4-page memfd works", async () => {
    const lab = await labs.create();
    const memfd = sealedMemfd(lab, 4);
    const before = state(lab);
    expectErrno(() => lab.udmabuf([{ memfd, offset: PAGE_SIZE / 2, size: PAGE_SIZE }]), "EINVAL");
    expectErrno(() => lab.udmabuf([{ memfd, offset: 0, size: PAGE_SIZE / 2 }]), "EINVAL");
    const notMemfd = lab.exporter("system").alloc(4 * PAGE_SIZE);
    expectErrno(() => lab.udmabuf([{ memfd: notMemfd, offset: 0, size: PAGE_SIZE }]), "EBADFD");
    notMemfd.put();
    expect(state(lab)).toEqual(before);
    const buf = lab.udmabuf([{ memfd, offset: 0, size: 4 * PAGE_SIZE }]);
    expect(buf.size).toBe(4 * PAGE_SIZE);
    expect(buf.exporter).toBe("udmabuf");
    buf.put();
    memfd.put();
  });
});

describe("udmabuf rules", () => {
  test("F_SEAL_SHRINK is required; F_SEAL_WRITE and F_SEAL_FUTURE_WRITE are refused (EINVAL, nothing changed)", async () => {
    const lab = await labs.create();
    const unsealed = lab.memfd("plain", MFD_ALLOW_SEALING);
    unsealed.truncate(PAGE_SIZE);
    const before = state(lab);
    expect(expectErrno(() => lab.udmabuf([{ memfd: unsealed, offset: 0, size: PAGE_SIZE }]), "EINVAL").message).toContain("F_SEAL_SHRINK");
    for (const seal of [F_SEAL_WRITE, F_SEAL_FUTURE_WRITE]) {
      const m = sealedMemfd(lab, 1, F_SEAL_SHRINK | seal);
      const mine = state(lab);
      expect(expectErrno(() => lab.udmabuf([{ memfd: m, offset: 0, size: PAGE_SIZE }]), "EINVAL").message).toContain("writing");
      expect(state(lab)).toEqual(mine);
      m.put();
    }
    expect(state(lab)).toEqual(before);
    unsealed.put();
  });

  test("past the memfd's end, a total of 0, over the size limit, or over the list limit: EINVAL, nothing changed", async () => {
    const lab = await labs.create();
    const small = sealedMemfd(lab, 2);
    const big = sealedMemfd(lab, UDMABUF_SIZE_LIMIT / PAGE_SIZE + 1);
    const before = state(lab);
    expectErrno(() => lab.udmabuf([{ memfd: small, offset: PAGE_SIZE, size: 2 * PAGE_SIZE }]), "EINVAL");
    expectErrno(() => lab.udmabuf([{ memfd: small, offset: 0, size: 0 }]), "EINVAL");
    expectErrno(() => lab.udmabuf([]), "EINVAL");
    expect(expectErrno(() => lab.udmabuf([{ memfd: big, offset: 0, size: UDMABUF_SIZE_LIMIT + PAGE_SIZE }]), "EINVAL").message)
      .toContain(String(UDMABUF_SIZE_LIMIT));
    const tooMany = Array.from({ length: UDMABUF_LIST_LIMIT + 1 }, () => ({ memfd: small, offset: 0, size: PAGE_SIZE }));
    expectErrno(() => lab.udmabuf(tooMany), "EINVAL");
    // A bad item after good ones: nothing was taken for the good ones either.
    expectErrno(() => lab.udmabuf([{ memfd: small, offset: 0, size: PAGE_SIZE }, { memfd: small, offset: 1, size: PAGE_SIZE }]), "EINVAL");
    expect(state(lab)).toEqual(before);
    // Exactly at the limits works.
    lab.udmabuf([{ memfd: big, offset: 0, size: UDMABUF_SIZE_LIMIT }]).put();
    lab.udmabuf(Array.from({ length: UDMABUF_LIST_LIMIT }, () => ({ memfd: small, offset: 0, size: PAGE_SIZE }))).put();
    expect(state(lab)).toEqual(before);
    small.put();
    big.put();
  });
});

describe("udmabuf pages", () => {
  test("the buffer's pages are the memfd's: writes through either side are seen through the other", async () => {
    const lab = await labs.create();
    const memfd = sealedMemfd(lab, 4);
    memfd.page(1).fill(0x5a);
    const buf = lab.udmabuf([{ memfd, offset: PAGE_SIZE, size: 2 * PAGE_SIZE }]);
    try {
      const [first] = buf.segments();
      expect(lab.arena.u8[first.addr]).toBe(0x5a);
      lab.engine.fill(first.addr + PAGE_SIZE, 0xc3, PAGE_SIZE); // the buffer's second page is the memfd's page 2
      expect(memfd.page(2).every((b) => b === 0xc3)).toBe(true);
      expect(memfd.page(3).every((b) => b === 0)).toBe(true);
    } finally {
      buf.put();
      memfd.put();
    }
  });

  test("pages outlive the closed memfd and go back to the pool with the buffer", async () => {
    const lab = await labs.create();
    const before = state(lab);
    const memfd = sealedMemfd(lab, 3);
    memfd.page(0).fill(7);
    const buf = lab.udmabuf([{ memfd, offset: 0, size: 3 * PAGE_SIZE }]);
    memfd.put();
    expect(lab.arena.u8[buf.segments()[0].addr]).toBe(7);
    expect(state(lab)).not.toEqual(before);
    buf.put();
    expect(state(lab)).toEqual(before);
  });

  test("CREATE_LIST joins ranges of several memfds into one buffer, in order", async () => {
    const lab = await labs.create();
    const a = sealedMemfd(lab, 2);
    const b = sealedMemfd(lab, 3);
    a.page(1).fill(1);
    b.page(0).fill(2);
    b.page(2).fill(3);
    const buf = lab.udmabuf([{ memfd: a, offset: PAGE_SIZE, size: PAGE_SIZE }, { memfd: b, offset: 0, size: 3 * PAGE_SIZE }]);
    try {
      expect(buf.size).toBe(4 * PAGE_SIZE);
      const firstBytes = buf.pieces().map((p) => lab.arena.u8[p.offset]);
      expect(firstBytes).toEqual([1, 2, 0, 3]);
    } finally {
      buf.put();
      a.put();
      b.put();
    }
  });
});

describe("memfd", () => {
  test("truncate grows with zeroed pages and shrinks, zeroing the tail of the last page", async () => {
    const lab = await labs.create();
    const before = state(lab);
    const m = lab.memfd("grow");
    m.truncate(3 * PAGE_SIZE);
    expect(m.pages()).toHaveLength(3);
    m.page(2).fill(9);
    m.truncate(2 * PAGE_SIZE + 100);
    expect(m.size).toBe(2 * PAGE_SIZE + 100);
    const last = m.page(2);
    expect(last.subarray(0, 100).every((x) => x === 9)).toBe(true);
    expect(last.subarray(100).every((x) => x === 0)).toBe(true);
    m.truncate(40 * PAGE_SIZE); // past the page list's first capacity
    expect(m.pages()).toHaveLength(40);
    expect(new Set(m.pages()).size).toBe(40);
    m.put();
    expect(state(lab)).toEqual(before);
  });

  test("seals: without MFD_ALLOW_SEALING it is sealed with F_SEAL_SEAL; F_SEAL_SHRINK/GROW refuse truncation (EPERM)", async () => {
    const lab = await labs.create();
    const plain = lab.memfd("no-sealing");
    expect(plain.seals).toBe(F_SEAL_SEAL);
    expectErrno(() => plain.addSeals(F_SEAL_SHRINK), "EPERM");
    plain.put();
    const m = lab.memfd("sealing", MFD_ALLOW_SEALING);
    m.truncate(2 * PAGE_SIZE);
    m.addSeals(F_SEAL_SHRINK | F_SEAL_GROW);
    expectErrno(() => m.truncate(PAGE_SIZE), "EPERM");
    expectErrno(() => m.truncate(3 * PAGE_SIZE), "EPERM");
    expect(m.size).toBe(2 * PAGE_SIZE);
    m.addSeals(F_SEAL_SEAL);
    expectErrno(() => m.addSeals(F_SEAL_WRITE), "EPERM");
    expectErrno(() => m.addSeals(0x100), "EINVAL");
    expect(m.seals).toBe(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    m.put();
    expectErrno(() => lab.memfd("bad-flags", 0x80), "EINVAL");
  });

  test("out of pages while growing: ENOMEM and the file is unchanged", async () => {
    const lab = await labs.create({ memoryBytes: 32 * MiB, poolBytes: 4 * MiB });
    const m = lab.memfd("full");
    m.truncate(PAGE_SIZE);
    const before = state(lab);
    expectErrno(() => m.truncate(lab.layout.poolBytes + PAGE_SIZE), "ENOMEM");
    expect(m.size).toBe(PAGE_SIZE);
    expect(state(lab)).toEqual(before);
    m.put();
  });
});

/*
 * dmabuf-lab/kernel: KUnit suites of drivers/dma-buf ported line by line to
 * the kernel-shaped API (st-dma-fence.c, st-dma-resv.c for every usage,
 * st-dma-fence-chain.c, st-dma-fence-unwrap.c), each named after its KUnit
 * case; a KUNIT_FAIL / pr_err branch is a thrown Error. Then the API's own
 * rules: one JavaScript value per kernel object, the references it counts
 * (the sync heap is back where it was), dma_buf_get / sync_file_get_fence on
 * fds, ERR_PTR, and the subpath export of the built package.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, test } from "vitest";
import * as k from "../src/kernel/index.js";
import type { Fence, Lab } from "../src/index.js";
import { DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_SYNC_WRITE, DMA_HEAP_IOCTL_ALLOC, O_RDWR } from "../src/uapi/uapi.js";
import { FenceAgent } from "./helpers/fence-agent.js";
import { LabSet, cleanUpAfterEach } from "./helpers/lab.js";
import { sleep } from "./helpers/waits.js";
import { WorkerSet } from "./helpers/workers.js";

const MiB = 1024 * 1024;
const workers = new WorkerSet();
const labs = new LabSet({ memoryBytes: 32 * MiB });
cleanUpAfterEach({ workers, labs });
afterEach(() => k.use_lab(null));

/**
 * A lab for the kernel functions, and a check that the test gave back every
 * record it took. A callback's watch lets its reference go when its
 * waitAsync settles, a task later, so the check gives the event loop a
 * bounded moment first.
 */
async function kernel(): Promise<{ lab: Lab; balanced: () => Promise<void> }> {
  const lab = await labs.create();
  k.use_lab(lab);
  const free = (): number => lab.stats().sync.freeBytes;
  const before = free();
  const balanced = async (): Promise<void> => {
    for (let i = 0; i < 100 && free() !== before; i++) await sleep(5);
    expect(free(), "sync heap bytes after the test").toBe(before);
  };
  return { lab, balanced };
}

function KUNIT_FAIL(msg: string): never {
  throw new Error(msg);
}

// ---------------------------------------------------------------------------
// drivers/dma-buf/st-dma-fence.c

const mock_name = (_f: Fence): string => "mock";
const mock_ops: k.dma_fence_ops = { get_driver_name: mock_name, get_timeline_name: mock_name };

function mock_fence(): Fence | null {
  return k.dma_fence_init(mock_ops, null, 0, 0);
}

interface simple_cb { seen: boolean }

function simple_callback(_f: Fence, cb: object): void {
  (cb as simple_cb).seen = true;
}

describe("st-dma-fence (KUnit dma-buf-fence) through dmabuf-lab/kernel", () => {
  test("test_sanitycheck", async () => {
    const { balanced } = await kernel();
    const f = mock_fence();
    expect(f).not.toBeNull();
    k.dma_fence_enable_signaling(f!);
    k.dma_fence_signal(f!);
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_signaling", async () => {
    const { balanced } = await kernel();
    const f = mock_fence()!;
    k.dma_fence_enable_signaling(f);
    if (k.dma_fence_is_signaled(f)) KUNIT_FAIL("Fence unexpectedly signaled on creation");
    if (k.dma_fence_check_and_signal(f)) KUNIT_FAIL("Fence reported being already signaled");
    if (!k.dma_fence_is_signaled(f)) KUNIT_FAIL("Fence not reporting signaled");
    if (!k.dma_fence_test_signaled_flag(f)) KUNIT_FAIL("Fence reported not being already signaled");
    if (k.dma_fence_signal(f) !== -k.EINVAL) KUNIT_FAIL("A second dma_fence_signal did not report -EINVAL");
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_add_callback", async () => {
    const { balanced } = await kernel();
    const cb: simple_cb = { seen: false };
    const f = mock_fence()!;
    if (k.dma_fence_add_callback(f, cb, simple_callback)) KUNIT_FAIL("Failed to add callback, fence already signaled!");
    k.dma_fence_signal(f);
    if (!cb.seen) KUNIT_FAIL("Callback failed!");
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_late_add_callback", async () => {
    const { balanced } = await kernel();
    const cb: simple_cb = { seen: false };
    const f = mock_fence()!;
    k.dma_fence_enable_signaling(f);
    k.dma_fence_signal(f);
    if (!k.dma_fence_add_callback(f, cb, simple_callback)) KUNIT_FAIL("Added callback, but fence was already signaled!");
    expect(k.dma_fence_add_callback(f, cb, simple_callback)).toBe(-k.ENOENT);
    k.dma_fence_signal(f);
    if (cb.seen) KUNIT_FAIL("Callback called after failed attachment!");
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_rm_callback", async () => {
    const { balanced } = await kernel();
    const cb: simple_cb = { seen: false };
    const f = mock_fence()!;
    if (k.dma_fence_add_callback(f, cb, simple_callback)) KUNIT_FAIL("Failed to add callback, fence already signaled!");
    if (!k.dma_fence_remove_callback(f, cb)) KUNIT_FAIL("Failed to remove callback!");
    k.dma_fence_signal(f);
    if (cb.seen) KUNIT_FAIL("Callback still signaled after removal!");
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_late_rm_callback", async () => {
    const { balanced } = await kernel();
    const cb: simple_cb = { seen: false };
    const f = mock_fence()!;
    if (k.dma_fence_add_callback(f, cb, simple_callback)) KUNIT_FAIL("Failed to add callback, fence already signaled!");
    k.dma_fence_signal(f);
    if (!cb.seen) KUNIT_FAIL("Callback failed!");
    if (k.dma_fence_remove_callback(f, cb)) KUNIT_FAIL("Callback removal succeeded after being executed!");
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_status", async () => {
    const { balanced } = await kernel();
    const f = mock_fence()!;
    k.dma_fence_enable_signaling(f);
    if (k.dma_fence_get_status(f)) KUNIT_FAIL("Fence unexpectedly has signaled status on creation");
    k.dma_fence_signal(f);
    if (!k.dma_fence_get_status(f)) KUNIT_FAIL("Fence not reporting signaled status");
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_error", async () => {
    const { balanced } = await kernel();
    const f = mock_fence()!;
    k.dma_fence_enable_signaling(f);
    k.dma_fence_set_error(f, -k.EIO);
    if (k.dma_fence_get_status(f)) KUNIT_FAIL("Fence unexpectedly has error status before signal");
    k.dma_fence_signal(f);
    if (k.dma_fence_get_status(f) !== -k.EIO) KUNIT_FAIL(`Fence not reporting error status, got ${k.dma_fence_get_status(f)}`);
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_wait", async () => {
    const { balanced } = await kernel();
    const f = mock_fence()!;
    k.dma_fence_enable_signaling(f);
    if (k.dma_fence_wait_timeout(f, false, 0) !== 0) KUNIT_FAIL("Wait reported complete before being signaled");
    k.dma_fence_signal(f);
    if (k.dma_fence_wait_timeout(f, false, 0) !== 1) KUNIT_FAIL("Wait reported incomplete after being signaled");
    k.dma_fence_signal(f);
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_wait_timeout (the timer is a worker's, which signals while this thread waits)", async () => {
    const { lab, balanced } = await kernel();
    const agent = await FenceAgent.start(workers, lab, "kunit-timer");
    const wt = { f: mock_fence()!, fired: new Int32Array(new SharedArrayBuffer(4)) };
    k.dma_fence_enable_signaling(wt.f);
    if (k.dma_fence_wait_timeout(wt.f, false, 1) !== 0) KUNIT_FAIL("Wait reported complete before being signaled");
    await agent.request({ op: "timer-signal", offset: wt.f.offset, delayMs: 1, fired: wt.fired }); // mod_timer(&wt.timer, jiffies + 1)
    if (k.dma_fence_wait_timeout(wt.f, false, 20 * k.HZ) === 0) KUNIT_FAIL("Wait reported incomplete after timeout");
    await agent.event("fired");
    k.dma_fence_signal(wt.f);
    k.dma_fence_put(wt.f);
    await balanced();
  });

  test("test_stub", async () => {
    const { balanced } = await kernel();
    const f: Fence[] = [];
    let i: number;
    for (i = 0; i < 64; i++) {
      f[i] = k.dma_fence_get_stub();
      if (!k.dma_fence_is_signaled(f[i])) KUNIT_FAIL("Obtained unsignaled stub fence!");
    }
    while (i--) k.dma_fence_put(f[i]);
    await balanced();
  });
});

// ---------------------------------------------------------------------------
// drivers/dma-buf/st-dma-resv.c (each case for every usage)

const alloc_fence = (): Fence | null => k.dma_fence_init({ get_driver_name: () => "selftest", get_timeline_name: () => "selftest" }, null, 0, 0);
/** The common opening of every st-dma-resv case: a fence added at `usage` to a new, locked object. */
function locked_resv_with_fence(usage: k.dma_resv_usage): { f: Fence; resv: k.dma_resv } {
  const f = alloc_fence()!;
  const resv = new k.dma_resv();
  k.dma_resv_init(resv);
  if (k.dma_resv_lock(resv, null)) KUNIT_FAIL("Resv locking failed");
  if (k.dma_resv_reserve_fences(resv, 1)) KUNIT_FAIL("Resv shared slot allocation failed");
  k.dma_resv_add_fence(resv, f, usage);
  return { f, resv };
}

const usages = [k.DMA_RESV_USAGE_KERNEL, k.DMA_RESV_USAGE_WRITE, k.DMA_RESV_USAGE_READ, k.DMA_RESV_USAGE_BOOKKEEP] as const;

describe.each(usages)("st-dma-resv (KUnit dma-buf-resv) through dmabuf-lab/kernel, usage %i", (usage) => {
  test("sanitycheck", async () => {
    const { balanced } = await kernel();
    const f = alloc_fence()!;
    k.dma_fence_signal(f);
    k.dma_fence_put(f);
    const resv = new k.dma_resv();
    k.dma_resv_init(resv);
    const r = k.dma_resv_lock(resv, null);
    if (r) KUNIT_FAIL("Resv locking failed");
    else k.dma_resv_unlock(resv);
    k.dma_resv_fini(resv);
    await balanced();
  });

  test("test_signaling", async () => {
    const { balanced } = await kernel();
    const { f, resv } = locked_resv_with_fence(usage);
    if (k.dma_resv_test_signaled(resv, usage)) KUNIT_FAIL("Resv unexpectedly signaled");
    k.dma_fence_signal(f);
    if (!k.dma_resv_test_signaled(resv, usage)) KUNIT_FAIL("Resv not reporting signaled");
    k.dma_resv_unlock(resv);
    k.dma_resv_fini(resv);
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_for_each", async () => {
    const { balanced } = await kernel();
    const cursor = new k.dma_resv_iter();
    const { f, resv } = locked_resv_with_fence(usage);
    let r = -k.ENOENT;
    for (const fence of k.dma_resv_for_each_fence(cursor, resv, usage)) {
      if (!r) KUNIT_FAIL("More than one fence found");
      if (f !== fence) KUNIT_FAIL("Unexpected fence");
      if (k.dma_resv_iter_usage(cursor) !== usage) KUNIT_FAIL("Unexpected fence usage");
      r = 0;
    }
    if (r) KUNIT_FAIL("No fence found");
    k.dma_fence_signal(f);
    k.dma_resv_unlock(resv);
    k.dma_resv_fini(resv);
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_for_each_unlocked", async () => {
    const { balanced } = await kernel();
    const cursor = new k.dma_resv_iter();
    const { f, resv } = locked_resv_with_fence(usage);
    k.dma_resv_unlock(resv);
    let r = -k.ENOENT;
    let seen = 0;
    k.dma_resv_iter_begin(cursor, resv, usage);
    for (const fence of k.dma_resv_for_each_fence_unlocked(cursor)) {
      seen++;
      if (!r) KUNIT_FAIL("More than one fence found");
      if (!k.dma_resv_iter_is_restarted(cursor)) KUNIT_FAIL("No restart flag");
      if (f !== fence) KUNIT_FAIL("Unexpected fence");
      if (k.dma_resv_iter_usage(cursor) !== usage) KUNIT_FAIL("Unexpected fence usage");
      // We use r as state here
      if (r === -k.ENOENT) {
        r = -k.EINVAL;
        // That should trigger an restart
        cursor.seq--;
      } else if (r === -k.EINVAL) {
        r = 0;
      }
    }
    if (r) KUNIT_FAIL("No fence found");
    expect(seen).toBe(2); // once, then again after the restart
    k.dma_resv_iter_end(cursor);
    k.dma_fence_signal(f);
    k.dma_resv_fini(resv);
    k.dma_fence_put(f);
    await balanced();
  });

  test("test_get_fences", async () => {
    const { balanced } = await kernel();
    const fences: k.Ptr<Fence[] | null> = { value: null };
    const i: k.Ptr<number> = { value: 0 };
    const { f, resv } = locked_resv_with_fence(usage);
    k.dma_resv_unlock(resv);
    const r = k.dma_resv_get_fences(resv, usage, i, fences);
    if (r) KUNIT_FAIL("get_fences failed");
    if (i.value !== 1 || fences.value![0] !== f) KUNIT_FAIL("get_fences returned unexpected fence");
    k.dma_fence_signal(f);
    while (i.value--) k.dma_fence_put(fences.value![i.value]);
    k.dma_resv_fini(resv);
    k.dma_fence_put(f);
    await balanced();
  });
});

// ---------------------------------------------------------------------------
// drivers/dma-buf/st-dma-fence-chain.c

function mock_chain(prev: Fence | null, fence: Fence, seqno: number): Fence | null {
  const f = k.dma_fence_chain_alloc();
  if (!f) return null;
  k.dma_fence_chain_init(f, k.dma_fence_get(prev), k.dma_fence_get(fence), seqno);
  return f;
}

interface fence_chains {
  chain_length: number;
  fences: Fence[];
  chains: Fence[];
  tail: Fence | null;
}

const seqno_inc = (i: number): number => i + 1;
const seqno_inc2 = (i: number): number => 2 * i + 2;

function fence_chains_init(count: number, seqno_fn: (i: number) => number): fence_chains {
  const fc: fence_chains = { chain_length: 0, fences: [], chains: [], tail: null };
  let i: number;
  for (i = 0; i < count; i++) {
    fc.fences[i] = mock_fence()!;
    fc.chains[i] = mock_chain(fc.tail, fc.fences[i], seqno_fn(i))!;
    fc.tail = fc.chains[i];
  }
  fc.chain_length = i;
  return fc;
}

function fence_chains_fini(fc: fence_chains): void {
  for (let i = 0; i < fc.chain_length; i++) {
    k.dma_fence_signal(fc.fences[i]);
    k.dma_fence_put(fc.fences[i]);
  }
  for (let i = 0; i < fc.chain_length; i++) k.dma_fence_put(fc.chains[i]);
}

describe("st-dma-fence-chain (selftest dma_fence_chain) through dmabuf-lab/kernel", () => {
  test("sanitycheck", async () => {
    const { balanced } = await kernel();
    const f = mock_fence()!;
    const chain = mock_chain(null, f, 1);
    if (!chain) KUNIT_FAIL("-ENOMEM");
    k.dma_fence_signal(f);
    k.dma_fence_put(f);
    k.dma_fence_put(chain);
    await balanced();
  });

  test("find_seqno", async () => {
    const { balanced } = await kernel();
    const fc = fence_chains_init(64, seqno_inc);
    const fence: k.Ptr<Fence | null> = { value: k.dma_fence_get(fc.tail) };
    let err = k.dma_fence_chain_find_seqno(fence, 0);
    k.dma_fence_put(fence.value);
    if (err) KUNIT_FAIL(`Reported ${err} for find_seqno(0)!`);
    for (let i = 0; i < fc.chain_length; i++) {
      fence.value = k.dma_fence_get(fc.tail);
      err = k.dma_fence_chain_find_seqno(fence, i + 1);
      k.dma_fence_put(fence.value);
      if (err) KUNIT_FAIL(`Reported ${err} for find_seqno(${fc.chain_length + 1}:${i + 1})!`);
      if (fence.value !== fc.chains[i]) KUNIT_FAIL(`Incorrect fence reported by find_seqno(${fc.chain_length + 1}:${i + 1})`);

      k.dma_fence_get(fence.value);
      err = k.dma_fence_chain_find_seqno(fence, i + 1);
      k.dma_fence_put(fence.value);
      if (err) KUNIT_FAIL("Error reported for finding self");
      if (fence.value !== fc.chains[i]) KUNIT_FAIL("Incorrect fence reported by find self");

      k.dma_fence_get(fence.value);
      err = k.dma_fence_chain_find_seqno(fence, i + 2);
      k.dma_fence_put(fence.value);
      if (!err) KUNIT_FAIL(`Error not reported for future fence: find_seqno(${i + 1}:${i + 2})!`);

      k.dma_fence_get(fence.value);
      err = k.dma_fence_chain_find_seqno(fence, i);
      k.dma_fence_put(fence.value);
      if (err) KUNIT_FAIL("Error reported for previous fence!");
      if (i > 0 && fence.value !== fc.chains[i - 1]) KUNIT_FAIL(`Incorrect fence reported by find_seqno(${i + 1}:${i})`);
    }
    fence_chains_fini(fc);
    await balanced();
  });

  test("find_signaled", async () => {
    const { balanced } = await kernel();
    const fc = fence_chains_init(2, seqno_inc);
    k.dma_fence_signal(fc.fences[0]);
    const fence: k.Ptr<Fence | null> = { value: k.dma_fence_get(fc.tail) };
    const err = k.dma_fence_chain_find_seqno(fence, 1);
    k.dma_fence_put(fence.value);
    if (err) KUNIT_FAIL(`Reported ${err} for find_seqno()!`);
    if (fence.value && fence.value !== fc.chains[0]) KUNIT_FAIL(`Incorrect chain-fence.seqno:${fence.value.seqno} reported for completed seqno:1`);
    fence_chains_fini(fc);
    await balanced();
  });

  test("find_out_of_order", async () => {
    const { balanced } = await kernel();
    const fc = fence_chains_init(3, seqno_inc);
    k.dma_fence_signal(fc.fences[1]);
    const fence: k.Ptr<Fence | null> = { value: k.dma_fence_get(fc.tail) };
    const err = k.dma_fence_chain_find_seqno(fence, 2);
    k.dma_fence_put(fence.value);
    if (err) KUNIT_FAIL(`Reported ${err} for find_seqno()!`);
    // Fence 1 is still pending: it is the one to wait on for point 2.
    if (fence.value !== fc.chains[0]) KUNIT_FAIL(`Incorrect chain-fence.seqno:${fence.value?.seqno ?? 0} reported for completed seqno:2`);
    fence_chains_fini(fc);
    await balanced();
  });

  test("find_gap", async () => {
    const { balanced } = await kernel();
    const fc = fence_chains_init(64, seqno_inc2);
    for (let i = 0; i < fc.chain_length; i++) {
      const fence: k.Ptr<Fence | null> = { value: k.dma_fence_get(fc.tail) };
      let err = k.dma_fence_chain_find_seqno(fence, 2 * i + 1);
      k.dma_fence_put(fence.value);
      if (err) KUNIT_FAIL(`Reported ${err} for find_seqno(${fc.chain_length + 1}:${2 * i + 1})!`);
      if (fence.value !== fc.chains[i]) KUNIT_FAIL(`Incorrect fence.seqno:${fence.value?.seqno} reported by find_seqno(${2 * i + 1})`);
      k.dma_fence_get(fence.value);
      err = k.dma_fence_chain_find_seqno(fence, 2 * i + 2);
      k.dma_fence_put(fence.value);
      if (err) KUNIT_FAIL("Error reported for finding self");
      if (fence.value !== fc.chains[i]) KUNIT_FAIL("Incorrect fence reported by find self");
    }
    fence_chains_fini(fc);
    await balanced();
  });

  test("signal_forward", async () => {
    const { balanced } = await kernel();
    const fc = fence_chains_init(64, seqno_inc);
    for (let i = 0; i < fc.chain_length; i++) {
      k.dma_fence_signal(fc.fences[i]);
      if (!k.dma_fence_is_signaled(fc.chains[i])) KUNIT_FAIL(`chain[${i}] not signaled!`);
      if (i + 1 < fc.chain_length && k.dma_fence_is_signaled(fc.chains[i + 1])) KUNIT_FAIL(`chain[${i}] is signaled!`);
    }
    fence_chains_fini(fc);
    await balanced();
  });

  test("signal_backward", async () => {
    const { balanced } = await kernel();
    const fc = fence_chains_init(64, seqno_inc);
    for (let i = fc.chain_length; i--;) {
      k.dma_fence_signal(fc.fences[i]);
      if (i > 0 && k.dma_fence_is_signaled(fc.chains[i])) KUNIT_FAIL(`chain[${i}] is signaled!`);
    }
    for (let i = 0; i < fc.chain_length; i++) {
      if (!k.dma_fence_is_signaled(fc.chains[i])) KUNIT_FAIL(`chain[${i}] was not signaled!`);
    }
    fence_chains_fini(fc);
    await balanced();
  });
});

// ---------------------------------------------------------------------------
// drivers/dma-buf/st-dma-fence-unwrap.c

function unwrap_mock_fence(): Fence | null {
  return k.dma_fence_init(mock_ops, null, k.dma_fence_context_alloc(1), 1);
}

function mock_array(...fences: Fence[]): Fence | null {
  return k.dma_fence_array_create(fences.length, fences, k.dma_fence_context_alloc(1), 1, false);
}

describe("st-dma-fence-unwrap (KUnit dma-buf-fence-unwrap) through dmabuf-lab/kernel", () => {
  test("unwrap_array", async () => {
    const { balanced } = await kernel();
    let f1 = unwrap_mock_fence();
    let f2 = unwrap_mock_fence();
    const array = mock_array(f1!, f2!)!;
    const iter = new k.dma_fence_unwrap();
    for (const fence of k.dma_fence_unwrap_for_each(array, iter)) {
      if (fence === f1) f1 = null;
      else if (fence === f2) f2 = null;
      else KUNIT_FAIL("Unexpected fence!");
    }
    if (f1 || f2) KUNIT_FAIL("Not all fences seen!");
    for (const f of k.dma_fence_unwrap_for_each(array)) k.dma_fence_signal(f);
    k.dma_fence_put(array);
    await balanced();
  });

  test("unwrap_chain", async () => {
    const { balanced } = await kernel();
    let f1 = unwrap_mock_fence();
    let f2 = unwrap_mock_fence();
    const chain = mock_chain(null, f1!, 1)!;
    const tail = mock_chain(chain, f2!, 2)!;
    const [a, b] = [f1!, f2!];
    k.dma_fence_put(chain);
    for (const fence of k.dma_fence_unwrap_for_each(tail)) {
      if (fence === f1) f1 = null;
      else if (fence === f2) f2 = null;
      else KUNIT_FAIL("Unexpected fence!");
    }
    if (f1 || f2) KUNIT_FAIL("Not all fences seen!");
    for (const f of [a, b]) {
      k.dma_fence_signal(f);
      k.dma_fence_put(f);
    }
    k.dma_fence_put(tail);
    await balanced();
  });

  test("unwrap_merge", async () => {
    const { balanced } = await kernel();
    let f1 = unwrap_mock_fence();
    let f2 = unwrap_mock_fence();
    const f3 = k.dma_fence_unwrap_merge(f1!, f2!)!;
    for (const fence of k.dma_fence_unwrap_for_each(f3)) {
      if (fence === f1) {
        k.dma_fence_signal(f1);
        k.dma_fence_put(f1);
        f1 = null;
      } else if (fence === f2) {
        k.dma_fence_signal(f2);
        k.dma_fence_put(f2);
        f2 = null;
      } else {
        KUNIT_FAIL("Unexpected fence!");
      }
    }
    if (f1 || f2) KUNIT_FAIL("Not all fences seen!");
    k.dma_fence_put(f3);
    await balanced();
  });
});

// ---------------------------------------------------------------------------
// The API's own rules

describe("dmabuf-lab/kernel: identity, references, fds", () => {
  test("one kernel object is one JavaScript value while held: fences from iterators, chains, merges and fds are ===", async () => {
    const { lab, balanced } = await kernel();
    const a = mock_fence()!;
    const b = mock_fence()!;
    const array = k.dma_fence_array_create(2, [k.dma_fence_get(a), k.dma_fence_get(b)], k.dma_fence_context_alloc(1), 1, false)!;
    expect(k.to_dma_fence_array(array)).toBe(array);
    expect([...k.dma_fence_unwrap_for_each(array)]).toEqual([a, b]);
    expect([...k.dma_fence_unwrap_for_each(array)][0]).toBe(a);
    const resv = new k.dma_resv();
    k.dma_resv_init(resv);
    expect(k.dma_resv_lock(resv, null)).toBe(0);
    expect(k.dma_resv_reserve_fences(resv, 2)).toBe(0);
    k.dma_resv_add_fence(resv, a, k.DMA_RESV_USAGE_WRITE);
    k.dma_resv_unlock(resv);
    const single: k.Ptr<Fence | null> = { value: null };
    expect(k.dma_resv_get_singleton(resv, k.DMA_RESV_USAGE_READ, single)).toBe(0);
    expect(single.value).toBe(a);
    k.dma_fence_put(single.value);
    // A sync_file fd of the lab's own making gives the same value back.
    const proc = lab.process;
    const heap = proc.open("/dev/dma_heap/system", O_RDWR);
    const alloc = { len: 4096, fd: 0, fd_flags: O_RDWR, heap_flags: 0 };
    proc.ioctl(heap, DMA_HEAP_IOCTL_ALLOC, alloc);
    const buf = k.dma_buf_get(alloc.fd);
    if (k.IS_ERR(buf)) throw new Error(`dma_buf_get: ${k.PTR_ERR(buf)}`);
    expect(k.dma_buf_get(alloc.fd)).toBe(buf);
    k.dma_buf_put(buf);
    expect(buf.size).toBe(4096);
    expect(buf.exp_name).toBe("system");
    expect(buf.resv).toBe(buf.resv);
    expect(proc.fdinfo(alloc.fd)).toMatch(/count:\t2\n/);
    expect(k.dma_resv_lock(buf.resv, null)).toBe(0);
    expect(k.dma_resv_reserve_fences(buf.resv, 1)).toBe(0);
    k.dma_resv_add_fence(buf.resv, b, k.DMA_RESV_USAGE_WRITE);
    k.dma_resv_unlock(buf.resv);
    const exp = { flags: DMA_BUF_SYNC_WRITE, fd: 0 };
    proc.ioctl(alloc.fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, exp);
    const got = k.sync_file_get_fence(exp.fd);
    expect(got).toBe(b);
    expect(k.dma_fence_wait_timeout(b, false, 0)).toBe(0);
    k.dma_fence_signal(b);
    expect(k.dma_fence_wait(got!, true)).toBe(0);
    k.dma_fence_put(got);
    expect(k.dma_buf_get(heap)).toEqual(k.ERR_PTR(-k.EINVAL));
    expect(k.PTR_ERR(k.dma_buf_get(999) as k.ErrPtr)).toBe(-k.EBADF);
    expect(k.sync_file_get_fence(alloc.fd)).toBeNull();
    k.dma_buf_put(buf);
    expect(() => k.dma_buf_put(buf)).toThrow(/no reference/);
    proc.close(exp.fd);
    proc.close(alloc.fd);
    proc.close(heap);
    k.dma_fence_signal(a);
    k.dma_resv_fini(resv);
    for (const f of [array, a, b]) k.dma_fence_put(f);
    await balanced();
  });

  test("callbacks on arrays and chains run when the container signals; the cb object is the caller's", async () => {
    const { balanced } = await kernel();
    const a = mock_fence()!;
    const b = mock_fence()!;
    const array = k.dma_fence_array_create(2, [k.dma_fence_get(a), k.dma_fence_get(b)], k.dma_fence_context_alloc(1), 1, true)!;
    const chain = mock_chain(null, a, 1)!;
    const seen: string[] = [];
    const cb1 = { name: "array" };
    const cb2 = { name: "chain" };
    const func = (f: Fence, cb: object): void => {
      seen.push(`${(cb as { name: string }).name}:${f === array || f === chain}`);
    };
    expect(k.dma_fence_add_callback(array, cb1, func)).toBe(0);
    expect(k.dma_fence_add_callback(chain, cb2, func)).toBe(0);
    k.dma_fence_signal(b);
    expect(seen).toEqual(["array:true"]);
    k.dma_fence_signal(a);
    expect(seen).toEqual(["array:true", "chain:true"]);
    for (const f of [chain, array, a, b]) k.dma_fence_put(f);
    await balanced();
  });

  test("dma_fence_init: names from ops, the kernel's 3- and 4-argument forms, behaviour ops refused; no lab is EINVAL", async () => {
    const { lab, balanced } = await kernel();
    const f = k.dma_fence_init({ get_driver_name: () => "drv", get_timeline_name: () => "tl", release: () => {} }, 7n, 9)!;
    expect([k.dma_fence_driver_name(f), k.dma_fence_timeline_name(f), f.context, f.seqno]).toEqual(["drv", "tl", 7n, 9n]);
    const g = k.dma_fence_init(null, 5, 6)!;
    expect([g.context, g.seqno, k.dma_fence_driver_name(g)]).toEqual([5n, 6n, "dmabuf-lab"]);
    expect(() => k.dma_fence_init({ signaled: () => true } as k.dma_fence_ops, 1, 1)).toThrow(/signaled/);
    for (const x of [f, g]) k.dma_fence_put(x);
    expect(k.dma_fence_array_create(1, [], 1, 1, false)).toBeNull();
    await balanced();
    k.use_lab(null);
    expect(() => k.dma_fence_get_stub()).toThrow(/use_lab/);
    k.use_lab(lab);
  });
});

describe("the package's dmabuf-lab/kernel export", () => {
  test("the built package resolves dmabuf-lab/kernel, and its functions work on a Lab from dmabuf-lab", async () => {
    const root = fileURLToPath(new URL("..", import.meta.url));
    const script = `
      import * as k from "dmabuf-lab/kernel";
      import { Lab, Fence } from "dmabuf-lab";
      const lab = await Lab.create({ memoryBytes: 16 << 20 });
      k.use_lab(lab);
      const f = k.dma_fence_init(null, k.dma_fence_context_alloc(1), 1);
      const chain = k.dma_fence_chain_alloc();
      k.dma_fence_chain_init(chain, null, k.dma_fence_get(f), 1);
      const ok = f instanceof Fence && k.dma_fence_is_chain(chain) && k.dma_fence_chain_contained(chain) === f;
      k.dma_fence_signal(f);
      console.log(JSON.stringify({ ok, signaled: k.dma_fence_is_signaled(chain) }));
      k.dma_fence_put(chain); k.dma_fence_put(f); lab.close();`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["--input-type=module", "-e", script], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
    expect(JSON.parse(out)).toEqual({ ok: true, signaled: true });
  });
});

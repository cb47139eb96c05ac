/*
 * dmabuf-lab/kernel: the in-kernel dma-buf API (dma_fence_*, dma_resv_*,
 * dma_buf_get, sync_file_get_fence) with the kernel's names, arguments and
 * return conventions over the lab's real objects, so that KUnit tests and
 * driver code port line by line:
 *
 *   import * as k from "dmabuf-lab/kernel";
 *   k.use_lab(lab);
 *   const f = k.dma_fence_init(mock_ops, 0, 0);
 *   if (k.dma_fence_add_callback(f, cb, simple_callback)) ...
 *
 * core.ts holds the rules every function follows (the current lab, one
 * JavaScript value per kernel object, references, -errno / NULL / ERR_PTR);
 * each module's comment says where the lab's shape shows through. This
 * layer sits above the object API and imports only the package's root.
 */
/**
 * The in-kernel dma-buf API with the kernel's names, over a lab's objects
 * (`import * as k from "dmabuf-lab/kernel"`).
 * @module dmabuf-lab/kernel
 */
export * from "./core.js";
export * from "./dma_fence.js";
export * from "./dma_resv.js";
export * from "./dma_buf.js";

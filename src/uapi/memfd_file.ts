/*
 * The file operations of a memfd (memfd_create(2)): ftruncate and the seal
 * fcntls over Memfd (src/dmabuf/memfd.ts). Its one use here is as the page
 * source of udmabuf.
 *
 * Contract: ftruncate grows with zeroed pages or shrinks (EPERM under
 * F_SEAL_GROW / F_SEAL_SHRINK); F_ADD_SEALS adds seals (EPERM once
 * F_SEAL_SEAL is set, EINVAL for unknown bits); F_GET_SEALS answers them.
 * The last reference closes the memfd; its pages live on while a udmabuf
 * holds them.
 */
import type { Memfd } from "../dmabuf/memfd.js";
import { ObjectFile } from "./file.js";

export class MemfdFile extends ObjectFile<Memfd> {
  readonly kind = "memfd";

  get memfd(): Memfd {
    return this.object;
  }

  truncate(size: number): void {
    this.object.truncate(size);
  }

  addSeals(seals: number): void {
    this.object.addSeals(seals);
  }

  get seals(): number {
    return this.object.seals;
  }
}

/*
 * Section "a dma-buf round trip": allocates a dma-buf from the system heap,
 * writes a line into it and reads it back through the read/write path,
 * using the Promise forms (a browser's main thread may not block).
 */
export const title = "a dma-buf round trip";

export async function run(lab) {
  const buf = lab.heap("system").alloc(64 * 1024);
  try {
    const text = `hello from a ${buf.size} byte dma-buf, ${new Date().toISOString()}`;
    const written = await buf.writeAsync(new TextEncoder().encode(text), 0);
    const back = new Uint8Array(written);
    const read = await buf.readAsync(back, 0);
    const echoed = new TextDecoder().decode(back);
    if (echoed !== text) throw new Error(`read back "${echoed}", wrote "${text}"`);
    return [
      `DMA_HEAP_IOCTL_ALLOC: fd ${buf.fd}, ${buf.size} bytes`,
      `pwrite: ${written} bytes; pread: ${read} bytes`,
      `read back: ${echoed}`,
      "",
      buf.fdinfo().trimEnd(),
    ].join("\n");
  } finally {
    buf.close();
  }
}

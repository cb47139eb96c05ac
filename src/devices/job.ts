/*
 * Device jobs: the record a submitter writes and a device executes.
 *
 * A job is a record in the sync heap (JOB_*, 128 bytes); the ring carries
 * its offset. The submitter fills every word before pushing it (the ring's
 * HEAD store publishes the record); after that only the device touches it,
 * until the device (or, for a dead device, the host that reaps it) frees it.
 *
 *   JOB_KIND     u32: JOB_NOP, JOB_COPY, JOB_FILL, JOB_CHECKSUM, JOB_KERNEL
 *   JOB_FENCE    u32: the out-fence (the job holds one reference)
 *   JOB_DEP      u32: the one fence to wait for first (a fence array when
 *                there were several dependencies; a reference), 0 for none
 *   JOB_NBUFS    u32: buffer ranges used (0..JOB_MAX_BUFS)
 *   JOB_KERNEL_ID u32: JOB_KERNEL: the kernel the device loaded
 *   JOB_NARGS    u32, JOB_ARGS u32[JOB_MAX_ARGS]: JOB_FILL: the byte value;
 *                JOB_KERNEL: the kernel's arguments
 *   JOB_SUBMIT_NS f64: lab clock at submission (latency statistics)
 *   JOB_BUFS     {iova, len, access, buffer, offset}[JOB_MAX_BUFS]: device
 *                address ranges; access is IOMMU_READ and/or IOMMU_WRITE;
 *                buffer and offset name the dma-buf record and the range's
 *                start in it, for a coherent device's cache snooping (the
 *                DMA itself goes by iova only)
 *
 * Buffer roles: COPY reads buffer 0 and writes buffer 1 (the shorter
 * length); FILL writes buffer 0; CHECKSUM reads buffer 0 and writes the
 * xxHash32 of it, little-endian, into the first 4 bytes of buffer 1;
 * KERNEL gives the kernel every range with the access it declared.
 */
export const JOB_KIND = 0;
export const JOB_FENCE = 4;
export const JOB_DEP = 8;
export const JOB_NBUFS = 12;
export const JOB_KERNEL_ID = 16;
export const JOB_NARGS = 20;
export const JOB_ARGS = 24;
export const JOB_MAX_ARGS = 4;
export const JOB_SUBMIT_NS = 40;
export const JOB_BUFS = 48;
export const JOB_BUF_SIZE = 20;
export const JOB_BUF_IOVA = 0;
export const JOB_BUF_LEN = 4;
export const JOB_BUF_ACCESS = 8;
export const JOB_BUF_BUFFER = 12;
export const JOB_BUF_OFFSET = 16;
export const JOB_MAX_BUFS = 4;
export const JOB_RECORD_SIZE = JOB_BUFS + JOB_MAX_BUFS * JOB_BUF_SIZE;

export const JOB_NOP = 0;
export const JOB_COPY = 1;
export const JOB_FILL = 2;
export const JOB_CHECKSUM = 3;
export const JOB_KERNEL = 4;

/** JOB_KIND by the kind's name in the host API. */
export const jobKinds = { nop: JOB_NOP, copy: JOB_COPY, fill: JOB_FILL, checksum: JOB_CHECKSUM, kernel: JOB_KERNEL } as const;

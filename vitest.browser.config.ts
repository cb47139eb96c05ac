/*
 * The browser tests (npm run test:browser): test-browser/*.test.ts run in
 * Node and drive Debian's Chromium through playwright-core against real
 * `dmabuf-lab serve` processes (test-browser/setup.ts). Plain `npm test`
 * (vitest.config.ts) does not include them.
 */
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test-browser/**/*.test.ts"],
    globalSetup: ["test-browser/setup.ts"],
    reporters: ["default", "./test/reporters/summary.ts"],
    // One Chromium at a time on a 2-core machine; every wait inside has its own timeout.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

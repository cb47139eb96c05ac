import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // vitest's table for people, then one plain "N passed, N failed" line for CI.
    reporters: ["default", "./test/reporters/summary.ts"],
    // Cross-thread tests start real workers on a 2-core machine: generous
    // per-test time, while every wait inside a test has its own timeout.
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});

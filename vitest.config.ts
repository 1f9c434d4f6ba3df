import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Real child processes, real torch and real servers: two cores are shared by at most two files at once.
    maxWorkers: 2,
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // End-to-end tests train real models on a 2-core machine.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // tfjs keeps one global backend per process: isolate test files in their own processes.
    pool: 'forks',
    maxWorkers: 2,
  },
});

import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import the page's modules, which import imgclf's public browser entries by name: the
// sources, as the page's build (web/vite.config.ts) resolves them.
const source = (file: string) => fileURLToPath(new URL(`./src/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^imgclf\/core$/, replacement: source('core/index.ts') },
      { find: /^imgclf\/backend$/, replacement: source('backend/browser.ts') },
    ],
  },
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

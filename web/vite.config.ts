// The page is built into web/dist and served by `imgclf serve`. During `vite dev` the API is
// proxied to a server started with `imgclf serve --port 8080`.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The page imports imgclf as a user would, through the package's public browser entries, and is
// built from their sources (web/tsconfig.json maps them the same way for the type check).
const source = (file: string) => fileURLToPath(new URL(`../src/${file}`, import.meta.url));

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  resolve: {
    alias: [
      { find: /^imgclf\/core$/, replacement: source('core/index.ts') },
      { find: /^imgclf\/backend$/, replacement: source('backend/browser.ts') },
    ],
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // TensorFlow.js alone is over 1 MB minified; one bundle for a local tool is fine.
    // onnxruntime-web is a chunk of its own, loaded when a backbone is chosen, and its .wasm
    // file (28 MB) an asset of the build, whose URL web/src/ort.ts imports (`?url`).
    chunkSizeWarningLimit: 4000,
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});

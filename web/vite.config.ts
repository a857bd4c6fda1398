// The page is built into web/dist and served by `imgclf serve`. During `vite dev` the API is
// proxied to a server started with `imgclf serve --port 8080`.
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // TensorFlow.js alone is over 1 MB minified; one bundle for a local tool is fine.
    chunkSizeWarningLimit: 4000,
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});

#!/usr/bin/env node
// Entry point: runs the compiled CLI. `npm install` (prepare) and `npm test` build dist/.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("imgclf: error: dist/ is missing; run 'npm run build' (or 'npm install') first\n");
  process.exit(2);
}
const { main } = await import(entry.href);
const code = await main(process.argv);
// Exit explicitly: the wasm backend keeps handles open, and an exit code must not be lost.
process.exit(code);

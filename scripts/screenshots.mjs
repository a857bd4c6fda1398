#!/usr/bin/env node
// Remakes the pictures of the page the docs show (docs/screenshots/app.png, own-classes.png,
// own-backbone.png). They are views of the three browser tests, which keep them in a temp folder unless
// IMGCLF_SCREENSHOT_DIR says where: a plain `npm test` leaves the checkout unchanged.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args, env = {}) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run(process.execPath, ['scripts/setup.mjs', '--browser']);
run(
  'npx',
  ['vitest', 'run', 'test/web.test.ts', 'test/page-own-classes.test.ts', 'test/page-backbone.test.ts'],
  {
    IMGCLF_SCREENSHOT_DIR: path.join(root, 'docs', 'screenshots'),
  },
);

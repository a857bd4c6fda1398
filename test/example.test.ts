/** The worked example in docs/own-images.md runs as documented and meets its own checks. */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers.js';

it('scripts/example-folder.mjs draws a folder, trains, hits the cache, evaluates and predicts', () => {
  const work = tempDir();
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'example-folder.mjs'), work], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, XDG_CACHE_HOME: path.join(work, 'cache') },
    timeout: 300_000,
  });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/160 train \/ 40 test images, 1 unreadable skipped/);
  expect(r.stdout).toMatch(/\(cache miss\), then \d+\.\d+s \(cache hit\)/);
  expect(r.stdout).toMatch(/my-triangle\.png predicted as triangle/);
});

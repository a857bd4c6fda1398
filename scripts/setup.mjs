#!/usr/bin/env node
// Installs what is missing, and nothing else, so `npm run demo` and `npm test` work on a fresh
// machine and cost nothing the second time:
//   1. npm dependencies (when node_modules is missing or older than package-lock.json)
//   2. the compiled CLI in dist/ (when any source file is newer)
//   3. the web page in web/dist (when web/ or src/, which it bundles, has newer files)
//   4. Fashion-MNIST from Debian's dataset-fashion-mnist (when no local copy exists and apt is usable;
//      otherwise imgclf downloads it itself from the upstream mirrors)
//   5. with --browser: Debian's chromium and CJK fonts, for the browser and picture tests, and
//      strace, for the tests that kill a run mid-save
//   6. with --torch: Debian's python3-torch/torchvision, for the side-by-side benchmark
// Plain Node only: this runs before any dependency is installed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const log = (m) => process.stderr.write(`setup: ${m}\n`);

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit'], cwd: root, ...opts });
  if (r.status !== 0) {
    log(`'${cmd} ${argv.join(' ')}' failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

function mtime(p) {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

function newest(dir) {
  let t = 0;
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    t = Math.max(t, entry.isDirectory() ? newest(p) : mtime(p));
  }
  return t;
}

// 1. npm dependencies.
const installed = path.join(root, 'node_modules', '.package-lock.json');
if (
  !existsSync(installed) ||
  mtime(path.join(root, 'package-lock.json')) > mtime(installed) ||
  mtime(path.join(root, 'package.json')) > mtime(installed)
) {
  log('installing npm dependencies');
  // `npm install`, not `npm ci`: npm 11's ci rejects this lock file over an optional
  // platform-specific package of vitest's, while install resolves it.
  run('npm', ['install', '--no-audit', '--no-fund']);
}

// 2. The compiled CLI.
const builtMarker = path.join(root, 'dist', 'src', 'cli', 'main.js');
if (mtime(builtMarker) < Math.max(newest(path.join(root, 'src')), mtime(path.join(root, 'package.json')))) {
  log('building dist/');
  run('npx', ['tsc', '-p', 'tsconfig.build.json']);
}

// 3. The web page served by `imgclf serve` (it bundles the core from src/ too).
const webBuilt = mtime(path.join(root, 'web', 'dist', 'index.html'));
const webSources = Math.max(
  newest(path.join(root, 'web', 'src')),
  mtime(path.join(root, 'web', 'index.html')),
  mtime(path.join(root, 'web', 'vite.config.ts')),
  newest(path.join(root, 'src')),
  mtime(path.join(root, 'package.json')),
);
if (existsSync(path.join(root, 'web', 'index.html')) && webBuilt < webSources) {
  log('building web/dist');
  run('npx', ['vite', 'build', '--logLevel', 'warn', '-c', 'web/vite.config.ts']);
}

// 4. Fashion-MNIST.
const files = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
];
const hasAll = (dir) =>
  dir && files.every((f) => existsSync(path.join(dir, f + '.gz')) || existsSync(path.join(dir, f)));
const cache = path.join(
  process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'),
  'imgclf',
  'fashion-mnist',
);
const dataDirs = [process.env.IMGCLF_DATA_DIR, cache, '/usr/share/datasets/fashion-mnist'];
const aptPackages = [];
if (!dataDirs.some(hasAll)) aptPackages.push('dataset-fashion-mnist');
if (args.has('--browser')) {
  if (!existsSync('/usr/bin/chromium')) aptPackages.push('chromium');
  if (!existsSync('/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc'))
    aptPackages.push('fonts-noto-cjk');
  // The crash tests kill a training run at a chosen system call, as a power cut would.
  if (!existsSync('/usr/bin/strace')) aptPackages.push('strace');
}
if (args.has('--torch')) {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
  if (probe.status !== 0) aptPackages.push('python3-torch', 'python3-torchvision');
}
if (aptPackages.length) {
  const isRoot = process.getuid?.() === 0;
  const hasApt = spawnSync('which', ['apt-get'], { stdio: 'ignore' }).status === 0;
  if (isRoot && hasApt) {
    log(`installing Debian packages: ${aptPackages.join(' ')}`);
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', ...aptPackages], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } else {
    log(`missing Debian packages ${aptPackages.join(' ')} and cannot install them (need root and apt-get).`);
    log('Fashion-MNIST will be downloaded by imgclf itself; browser and torch tests are skipped.');
  }
}

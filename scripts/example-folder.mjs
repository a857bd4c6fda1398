#!/usr/bin/env node
// Worked example: train on your own folder of images. It draws a small image folder (four
// shape classes in mixed sizes and in PNG, JPEG, WebP and GIF, plus one broken file), then runs
// the same commands a user would: train, train again (the decoded images come from the cache),
// evaluate, and predict a picture the model has never seen.
//
//   npm run example:folder                  # in a temporary folder
//   node scripts/example-folder.mjs DIR     # keep the images and the run in DIR
//
// Exits non-zero when a step fails or test accuracy is below 0.9, so CI can run it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shapesModule = path.join(root, 'dist', 'src', 'node', 'data', 'shapes.js');
if (!existsSync(shapesModule)) {
  process.stderr.write("example: dist/ is missing; run 'npm run build' first\n");
  process.exit(2);
}
const { renderSvg, shapeSvg, writeShapesFolder } = await import(shapesModule);
const { Rng } = await import(path.join(root, 'dist', 'src', 'core', 'data', 'rng.js'));

const work = process.argv[2]
  ? path.resolve(process.argv[2])
  : mkdtempSync(path.join(os.tmpdir(), 'imgclf-example-'));
const images = path.join(work, 'shapes');
const run = path.join(work, 'run');

function imgclf(args) {
  process.stdout.write(`\n$ imgclf ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'imgclf.js'), ...args, '--json'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) {
    process.stderr.write(`example: 'imgclf ${args.join(' ')}' failed (exit ${r.status})\n`);
    process.exit(1);
  }
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

const t0 = performance.now();
if (!existsSync(images)) {
  const files = await writeShapesFolder(images, { perClass: 50, seed: 1 });
  writeFileSync(path.join(images, 'circle', 'broken.jpg'), 'this is not a JPEG');
  process.stdout.write(`drew ${files.length} images (+1 broken file) into ${images}\n`);
}

const train = [
  'train',
  '--data',
  images,
  '--channels',
  '3',
  '--val-split',
  '0.2',
  '--epochs',
  '30',
  '--batch-size',
  '32',
  '--lr',
  '0.01',
  '--out',
  run,
];
const first = imgclf(train);
// The same run again, to show the decoded cache: --force replaces the run the first one wrote.
const second = imgclf([...train, '--force']);
const evaluation = imgclf(['evaluate', '--run', run]);

const picture = path.join(work, 'my-triangle.png');
writeFileSync(picture, await renderSvg(shapeSvg('triangle', 200, new Rng(2024)), 'png'));
const prediction = imgclf(['predict', '--run', run, picture]);

const label = prediction.predictions[0].label;
process.stdout.write(
  `\nclasses: ${first.data.classes.join(', ')}; ${first.data.train} train / ${first.data.test} test images, ` +
    `${first.data.skipped.length} unreadable skipped\n` +
    `data loaded in ${first.data.seconds.toFixed(2)}s (cache ${first.data.cache}), ` +
    `then ${second.data.seconds.toFixed(2)}s (cache ${second.data.cache})\n` +
    `test accuracy ${evaluation.test_accuracy.toFixed(3)}; ${path.basename(picture)} predicted as ${label}\n` +
    `total ${((performance.now() - t0) / 1000).toFixed(1)}s; run directory ${run}\n`,
);
if (second.data.cache !== 'hit' || evaluation.test_accuracy < 0.9 || label !== 'triangle') {
  process.stderr.write('example: FAILED (expected a cache hit, accuracy >= 0.9 and a triangle)\n');
  process.exit(1);
}

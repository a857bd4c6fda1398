#!/usr/bin/env node
// Writes Fashion-MNIST (from wherever imgclf finds it) in the two "own data" formats, to try
// them on a known dataset and compare with the IDX original:
//
//   node scripts/export-fashion-mnist.mjs csv DIR [--train N] [--test N]
//       DIR/train.csv and DIR/test.csv, Kaggle-style (label,pixel1..pixel784, with a header)
//   node scripts/export-fashion-mnist.mjs folder DIR [--train N] [--test N]
//       DIR/train/<class>/<i>.png and DIR/test/<class>/<i>.png
//
// N defaults to the whole split (60000 train, 10000 test). Needs dist/ ('npm run build').
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [format, dir, ...rest] = process.argv.slice(2);
if (!['csv', 'folder'].includes(format) || !dir) {
  process.stderr.write('usage: export-fashion-mnist.mjs csv|folder DIR [--train N] [--test N]\n');
  process.exit(2);
}
const arg = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? Number(rest[i + 1]) : undefined;
};
const dist = (p) => import(path.join(root, 'dist', 'src', p));
const { FASHION_MNIST, loadIdxDataset } = await dist('node/data/datasets.js');
const { toImageCsv } = await dist('core/data/csv.js');
const { pixelsAsFloat } = await dist('core/data/dataset.js');
const { dataset } = await loadIdxDataset(FASHION_MNIST);
const parts = { train: arg('--train') ?? dataset.train.count, test: arg('--test') ?? dataset.test.count };

mkdirSync(dir, { recursive: true });
for (const [name, count] of Object.entries(parts)) {
  const split = dataset[name];
  const n = Math.min(count, split.count);
  const pixels = Uint8Array.from(pixelsAsFloat(split.images, 0, n * 784), (v) => Math.round(v * 255));
  if (format === 'csv') {
    const labels = Array.from(split.labels.subarray(0, n), String);
    writeFileSync(path.join(dir, `${name}.csv`), toImageCsv(pixels, labels, [28, 28, 1]));
  } else {
    const { default: sharp } = await import('sharp');
    // Folder names must sort in label order for the class indices to match the IDX labels.
    const folders = dataset.classNames.map((c, i) => `${i}-${c.replace('/', '-').replace(' ', '-')}`);
    for (const f of folders) mkdirSync(path.join(dir, name, f), { recursive: true });
    for (let i = 0; i < n; i++) {
      const file = path.join(dir, name, folders[split.labels[i]], `${i}.png`);
      await sharp(pixels.subarray(i * 784, (i + 1) * 784), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(file);
    }
  }
  process.stdout.write(`${name}: ${n} images\n`);
}

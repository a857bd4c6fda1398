/**
 * The other IDX datasets (MNIST, KMNIST): their specs, checksums by `.gz` MD5, downloads against
 * a server on 127.0.0.1 with synthetic files, and training on them through the CLI.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MNIST_CLASSES } from '../src/core/data/classes.js';
import {
  download,
  idxSpec,
  type IdxDatasetSpec,
  KMNIST,
  loadIdxDataset,
  MNIST,
} from '../src/node/data/datasets.js';
import { md5, verifyFile } from '../src/node/checksum.js';
import { BIN, cli, type CliResult, expectCleanError, cliCwd, idx, tempDir } from './helpers.js';

const NAMES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
];
// Synthetic digits: each class is a bright bar in its own row band, so even 1 epoch learns it.
function digits(n: number): { images: Uint8Array; labels: Uint8Array } {
  const images = new Uint8Array(n * 784);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 10;
    const row = 2 + labels[i] * 2 + (i % 2);
    for (let x = 4; x < 24; x++) images[i * 784 + row * 28 + x] = 255;
  }
  return { images, labels };
}
const train = digits(200);
const test = digits(50);
const raw: Record<string, Uint8Array> = {
  [NAMES[0]]: idx([200, 28, 28], train.images),
  [NAMES[1]]: idx([200], train.labels),
  [NAMES[2]]: idx([50, 28, 28], test.images),
  [NAMES[3]]: idx([50], test.labels),
};
const gz: Record<string, Uint8Array> = Object.fromEntries(NAMES.map((n) => [n + '.gz', gzipSync(raw[n])]));

/** MNIST's spec with the synthetic files' MD5s: exercises the same code path as the real one. */
const synthetic: IdxDatasetSpec = {
  ...MNIST,
  name: 'synthetic-mnist',
  trainImages: { name: NAMES[0], gzMd5: md5(gz[NAMES[0] + '.gz']) },
  trainLabels: { name: NAMES[1], gzMd5: md5(gz[NAMES[1] + '.gz']) },
  testImages: { name: NAMES[2], gzMd5: md5(gz[NAMES[2] + '.gz']) },
  testLabels: { name: NAMES[3], gzMd5: md5(gz[NAMES[3] + '.gz']) },
  mirrors: [],
};

let server: http.Server;
let url = '';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const body = gz[path.basename(req.url ?? '')];
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(() => server?.close());

/** The CLI without blocking this process (the server above must keep answering). */
function cliAsync(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: cliCwd(), env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('MNIST and KMNIST specs', () => {
  it('know their names, class names and torchvision checksums', () => {
    expect(idxSpec('mnist')).toBe(MNIST);
    expect(idxSpec('kmnist')).toBe(KMNIST);
    expect(idxSpec('fashion-mnist').trainImages.sha256).toMatch(/^c59f468a/);
    expect(MNIST.trainImages.gzMd5).toBe('f68b3c2dcbeaaa9fbdd348bbdeb94873');
    expect(KMNIST.testLabels.gzMd5).toBe('7320c461ea6c1c855c0b718fb2a4b134');
    expect(MNIST.classNames).toHaveLength(10);
    expect(KMNIST.classNames).toEqual(['o', 'ki', 'su', 'tsu', 'na', 'ha', 'ma', 'ya', 're', 'wo']);
    expect(() => idxSpec('cifar10')).toThrow(
      /unknown dataset 'cifar10'; choose one of fashion-mnist, mnist, kmnist/,
    );
  });

  it('verify a .gz by MD5; a decompressed copy cannot be verified', () => {
    const f = synthetic.trainLabels;
    expect(verifyFile(f, raw[NAMES[1]], gz[NAMES[1] + '.gz'])).toMatchObject({
      verified: true,
      method: 'gz-md5',
    });
    expect(verifyFile(f, raw[NAMES[1]])).toMatchObject({ verified: false, method: 'none' });
    expect(verifyFile(MNIST.trainLabels, raw[NAMES[1]], gz[NAMES[1] + '.gz'])).toMatchObject({
      verified: false,
      method: 'gz-md5',
    });
  });

  it('download from a mirror and verify by MD5', async () => {
    const dir = tempDir();
    await download(synthetic, dir, { mirrors: [url] });
    expect(readdirSync(dir).sort()).toEqual(NAMES.map((n) => n + '.gz').sort());
    const loaded = await loadIdxDataset(synthetic, { dataDir: dir });
    expect(loaded.files.every((f) => f.verified && f.method === 'gz-md5')).toBe(true);
    expect(loaded.dataset.train.count).toBe(200);
    expect(loaded.dataset.classNames).toEqual(MNIST_CLASSES);
    // Decompressed copies load, reported as unverifiable rather than as a mismatch.
    const rawDir = tempDir();
    for (const n of NAMES) writeFileSync(path.join(rawDir, n), raw[n]);
    const fromRaw = await loadIdxDataset(synthetic, { dataDir: rawDir });
    expect(fromRaw.files.map((f) => f.method)).toEqual(['none', 'none', 'none', 'none']);
    expect(fromRaw.dataset.test.count).toBe(50);
  });

  it('the real MNIST and KMNIST specs reject files whose MD5 differs, leaving nothing behind', async () => {
    for (const spec of [MNIST, KMNIST]) {
      const dir = tempDir();
      await expect(download(spec, dir, { mirrors: [url] })).rejects.toThrow(
        /could not download train-images-idx3-ubyte\.gz from any mirror .*checksum mismatch \(got md5 [0-9a-f]{12}…\).*pass --data-dir/,
      );
      expect(readdirSync(dir)).toEqual([]);
    }
  });
});

describe('train --dataset', () => {
  it('kmnist downloads into the user cache from $IMGCLF_MIRRORS and refuses unverified files', async () => {
    const cache = tempDir();
    const r = await cliAsync(['train', '--dataset', 'kmnist'], {
      XDG_CACHE_HOME: cache,
      IMGCLF_MIRRORS: url,
      IMGCLF_DATA_DIR: '',
    });
    expect(r.stdout).toContain(`downloading ${url}train-images-idx3-ubyte.gz`);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim()).toMatch(/^imgclf: error: could not download .*checksum mismatch \(got md5/);
    expect(existsSync(path.join(cache, 'imgclf', 'kmnist', 'train-images-idx3-ubyte.gz'))).toBe(false);
  });

  it('mnist from --data-dir trains; evaluate reloads it from the run metadata', () => {
    const work = tempDir();
    const dir = path.join(work, 'mnist');
    mkdirSync(dir);
    for (const n of NAMES) writeFileSync(path.join(dir, n + '.gz'), gz[n + '.gz']);
    const run = path.join(work, 'run');
    const r = cli([
      'train',
      '--dataset',
      'mnist',
      '--data-dir',
      dir,
      '--epochs',
      '3',
      '--batch-size',
      '20',
      '--out',
      run,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    // Synthetic files are not the official release: a warning per file, training goes on.
    expect(r.stderr).toContain(
      `warning: ${path.join(dir, NAMES[0] + '.gz')} differs from the official release`,
    );
    expect(r.json!.test_accuracy).toBeGreaterThan(0.9);
    const meta = JSON.parse(readFileSync(path.join(run, 'metadata.json'), 'utf8'));
    expect(meta.dataset).toBe('mnist');
    expect(meta.classNames).toEqual(MNIST_CLASSES);
    expect(meta.data).toEqual({ kind: 'idx', dataset: 'mnist', dataDir: dir });
    const ev = cli(['evaluate', '--model', run, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json!.test_accuracy).toBe(r.json!.test_accuracy);
    const info = cli(['data', 'info', '--dataset', 'mnist', '--data-dir', dir, '--json']);
    expect(info.code, info.stderr).toBe(0);
    expect(info.json).toMatchObject({ dataset: 'mnist', train: 200, test: 50, verified: false });
    expectCleanError(
      cli(['train', '--dataset', 'cifar10']),
      /unknown dataset 'cifar10'; choose one of fashion-mnist, mnist, kmnist/,
    );
  });
});

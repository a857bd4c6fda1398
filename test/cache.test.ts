/**
 * The one cache (node/cache.ts): hits, invalidation on a changed source, one entry per label,
 * recovery from corruption, and a write failure that costs speed but never the run.
 */
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type IdxDatasetSpec, loadIdxDataset } from '../src/node/data/datasets.js';
import { sha256 } from '../src/node/checksum.js';
import { loadImageFolder } from '../src/node/data/folder.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { idx, tempDir } from './helpers.js';

const images = idx([5, 3, 3]);
const labels = idx([5], Uint8Array.from([0, 1, 1, 0, 1]));
const spec: IdxDatasetSpec = {
  name: 'tiny-cache',
  classNames: ['a', 'b'],
  trainImages: { name: 'ti', sha256: sha256(images) },
  trainLabels: { name: 'tl', sha256: sha256(labels) },
  testImages: { name: 'vi', sha256: sha256(images) },
  testLabels: { name: 'vl', sha256: sha256(labels) },
  mirrors: [],
  systemDirs: [],
};

let dataDir = '';
let cache = '';
const saved = process.env.XDG_CACHE_HOME;

beforeEach(() => {
  dataDir = tempDir();
  cache = tempDir();
  process.env.XDG_CACHE_HOME = cache;
  for (const [name, body] of [
    ['ti', images],
    ['tl', labels],
    ['vi', images],
    ['vl', labels],
  ] as const) {
    writeFileSync(path.join(dataDir, name + '.gz'), gzipSync(body));
  }
});

afterEach(() => {
  process.env.XDG_CACHE_HOME = saved;
});

const decodedDir = () => path.join(cache, 'imgclf', 'decoded');
const load = () => loadIdxDataset(spec, { dataDir, decodedCache: true });

describe('decoded cache', () => {
  it('a second load reads the same data from the cache', async () => {
    const first = await load();
    const files = readdirSync(decodedDir());
    expect(files).toHaveLength(2);
    const second = await load();
    expect(Array.from(second.dataset.train.images)).toEqual(Array.from(first.dataset.train.images));
    expect(Array.from(second.dataset.test.labels)).toEqual([0, 1, 1, 0, 1]);
    expect(second.files.every((f) => f.verified)).toBe(true);
    expect(readdirSync(decodedDir())).toEqual(files);
  });

  it('a changed source file gets a new entry', async () => {
    await load();
    const changed = idx([5, 3, 3], new Uint8Array(45).fill(255));
    const p = path.join(dataDir, 'ti.gz');
    writeFileSync(p, gzipSync(changed));
    const t = new Date(statSync(p).mtimeMs + 5000);
    utimesSync(p, t, t);
    const r = await load();
    expect(r.dataset.train.images[0]).toBe(255);
    expect(r.files.find((f) => f.name === 'ti')?.verified).toBe(false);
    // The stale entry of that split is gone: one entry per split.
    expect(readdirSync(decodedDir())).toHaveLength(2);
  });

  it('a truncated entry is deleted and rebuilt from the sources', async () => {
    await load();
    for (const f of readdirSync(decodedDir())) truncateSync(path.join(decodedDir(), f), 10);
    const r = await load();
    expect(r.dataset.train.count).toBe(5);
    expect(r.dataset.train.images[4]).toBe(4);
    for (const f of readdirSync(decodedDir()))
      expect(statSync(path.join(decodedDir(), f)).size).toBeGreaterThan(100);
  });

  it('a cache that cannot be written warns, and the load still succeeds', async () => {
    // A file where the cache folder should be: unwritable even for root.
    mkdirSync(path.join(cache, 'imgclf'), { recursive: true });
    writeFileSync(decodedDir(), 'not a folder');
    const messages: string[] = [];
    const r = await loadIdxDataset(spec, { dataDir, decodedCache: true, log: (m) => messages.push(m) });
    expect(r.dataset.train.count).toBe(5);
    expect(messages.join('\n')).toMatch(/warning: cannot write the cache file .*the next run decodes again/);
  });
});

describe('folder cache', () => {
  it('keeps one entry per folder and options: a changed folder replaces its entry', async () => {
    const folder = path.join(tempDir(), 'shapes');
    await writeShapesFolder(folder, { perClass: 4, minSize: 16, maxSize: 20, seed: 3 });
    const cacheDir = path.join(cache, 'folders');
    const opts = { imageSize: 8, channels: 1 as const, resizeMode: 'fill' as const, cacheDir };
    expect((await loadImageFolder(folder, opts)).cache).toBe('miss');
    expect(readdirSync(cacheDir)).toHaveLength(1);
    // Another size of the same folder is another label: both entries stay.
    await loadImageFolder(folder, { ...opts, imageSize: 10 });
    expect(readdirSync(cacheDir)).toHaveLength(2);
    // A new image changes the key; the old entry of that label is pruned.
    const classDir = path.join(folder, readdirSync(folder).sort()[0]);
    const first = readdirSync(classDir)[0];
    writeFileSync(path.join(classDir, 'copy-' + first), readFileSync(path.join(classDir, first)));
    const again = await loadImageFolder(folder, opts);
    expect(again.cache).toBe('miss');
    expect(readdirSync(cacheDir)).toHaveLength(2);
    expect((await loadImageFolder(folder, opts)).cache).toBe('hit');
  });
});

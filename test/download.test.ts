/**
 * Downloads against servers on 127.0.0.1: a good mirror, a dead one and a corrupt one, with a
 * small synthetic dataset, plus the real Fashion-MNIST files served locally.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { download, FASHION_MNIST, type IdxDatasetSpec, loadIdxDataset } from '../src/node/data/datasets.js';
import { sha256 } from '../src/node/checksum.js';
import { idx, tempDir } from './helpers.js';

const images = idx([4, 2, 2]);
const labels = idx([4], Uint8Array.from([0, 1, 0, 1]));
const files: Record<string, Uint8Array> = {
  'ti.gz': gzipSync(images),
  'tl.gz': gzipSync(labels),
  'vi.gz': gzipSync(images),
  'vl.gz': gzipSync(labels),
};

const spec: IdxDatasetSpec = {
  name: 'tiny',
  classNames: ['a', 'b'],
  trainImages: { name: 'ti', sha256: sha256(images) },
  trainLabels: { name: 'tl', sha256: sha256(labels) },
  testImages: { name: 'vi', sha256: sha256(images) },
  testLabels: { name: 'vl', sha256: sha256(labels) },
  mirrors: [],
  systemDirs: [],
};

let good: http.Server;
let corrupt: http.Server;
let real: http.Server;
let goodUrl = '';
let corruptUrl = '';
let realUrl = '';
let deadUrl = '';
const hits: string[] = [];

function serve(handler: http.RequestListener): Promise<[http.Server, string]> {
  return new Promise((resolve) => {
    const s = http.createServer(handler);
    s.listen(0, '127.0.0.1', () => resolve([s, `http://127.0.0.1:${(s.address() as AddressInfo).port}/`]));
  });
}

beforeAll(async () => {
  [good, goodUrl] = await serve((req, res) => {
    hits.push(req.url ?? '');
    const body = files[(req.url ?? '').slice(1)];
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200).end(body);
  });
  // Serves gzip that decompresses to the wrong bytes: the checksum must catch it.
  [corrupt, corruptUrl] = await serve((_req, res) => res.writeHead(200).end(gzipSync(idx([4]))));
  [real, realUrl] = await serve((req, res) => {
    const p = path.join('/usr/share/datasets/fashion-mnist', path.basename(req.url ?? ''));
    if (!existsSync(p)) return void res.writeHead(404).end();
    res.writeHead(200).end(readFileSync(p));
  });
  // A port that was just free: connections are refused.
  const [tmp, url] = await serve(() => {});
  await new Promise((r) => tmp.close(r));
  deadUrl = url;
});

afterAll(() => {
  good?.close();
  corrupt?.close();
  real?.close();
});

describe('download', () => {
  it('verifies and writes every file from a good mirror', async () => {
    const dir = tempDir();
    await download(spec, dir, { mirrors: [goodUrl] });
    expect(readdirSync(dir).sort()).toEqual(['ti.gz', 'tl.gz', 'vi.gz', 'vl.gz']);
    const second = hits.length;
    await download(spec, dir, { mirrors: [goodUrl] });
    expect(hits.length).toBe(second); // idempotent: nothing fetched again
  });

  it('falls back from a dead and a corrupt mirror to the next one', async () => {
    const dir = tempDir();
    const messages: string[] = [];
    await download(spec, dir, { mirrors: [deadUrl, corruptUrl, goodUrl], log: (m) => messages.push(m) });
    expect(readdirSync(dir).sort()).toEqual(['ti.gz', 'tl.gz', 'vi.gz', 'vl.gz']);
    expect(messages.join('\n')).toMatch(/failed: ECONNREFUSED/);
    expect(messages.join('\n')).toMatch(/failed: checksum mismatch/);
  });

  it('reports a corrupt download clearly and leaves no file behind', async () => {
    const dir = tempDir();
    await expect(download(spec, dir, { mirrors: [corruptUrl, deadUrl] })).rejects.toThrow(
      /could not download ti\.gz from any mirror .*checksum mismatch.*ECONNREFUSED/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reports a 404 mirror', async () => {
    const dir = tempDir();
    const missing: IdxDatasetSpec = { ...spec, trainImages: { name: 'nope', sha256: 'x' } };
    await expect(download(missing, dir, { mirrors: [goodUrl] })).rejects.toThrow(/HTTP 404/);
  });

  it.skipIf(!existsSync('/usr/share/datasets/fashion-mnist'))(
    'downloads the real Fashion-MNIST into the user cache and verifies its checksums',
    async () => {
      const cache = tempDir();
      const prev = { ...process.env };
      process.env.XDG_CACHE_HOME = cache;
      process.env.IMGCLF_MIRRORS = `${deadUrl},${realUrl}`;
      delete process.env.IMGCLF_DATA_DIR;
      try {
        const spec2 = { ...FASHION_MNIST, systemDirs: [] };
        const loaded = await loadIdxDataset(spec2);
        expect(loaded.located.origin).toBe('downloaded');
        expect(loaded.located.dir).toBe(path.join(cache, 'imgclf', 'fashion-mnist'));
        expect(loaded.files.every((f) => f.verified)).toBe(true);
        expect(loaded.dataset.train.count).toBe(60000);
        expect(loaded.dataset.test.count).toBe(10000);
        // Second load finds the cache and downloads nothing.
        process.env.IMGCLF_MIRRORS = deadUrl;
        expect((await loadIdxDataset(spec2)).located.origin).toBe('user cache');
      } finally {
        process.env = prev;
      }
    },
  );
});

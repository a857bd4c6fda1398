/**
 * Downloads against servers on 127.0.0.1: a good mirror, a dead one and a corrupt one, with a
 * small synthetic dataset, plus the real Fashion-MNIST files served locally. Then hostile ones
 * (a gzip bomb, an endless body, a stalled one, redirects elsewhere), which must fail fast and
 * cheaply, as must a gzip bomb on disk. Backbones (--backbone URL or folder) go through the
 * same client: an endless model.json, a silent server, a redirect elsewhere and weight paths
 * that climb out of the model's folder are refused, on a server and on disk.
 */
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  download,
  FASHION_MNIST,
  type IdxDatasetSpec,
  loadIdxDataset,
  readMaybeGzip,
} from '../src/node/data/datasets.js';
import { md5, sha256 } from '../src/node/checksum.js';
import { backboneFiles, MAX_MODEL_JSON_BYTES, recordedBackboneFiles } from '../src/node/backbone/files.js';
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

/**
 * A gzip bomb: a valid IDX header declaring 60000 28x28 images (47 MB, like the real
 * train-images), then `mib` MiB of zeros. Built as concatenated gzip members (valid gzip, which
 * gunzip reads as one stream) so that making it costs 16 MiB, not `mib`: about 1 KB per MiB.
 */
function gzipBomb(mib: number): Buffer {
  const zeros = gzipSync(Buffer.alloc(16 << 20), { level: 9 });
  return Buffer.concat([gzipSync(idx([60000, 28, 28], new Uint8Array(0))), ...Array(mib / 16).fill(zeros)]);
}
const BOMB_DECLARED = 16 + 60000 * 28 * 28;

/**
 * Runs `fn` and reports how it failed, how long it took and how far the process's RSS rose above
 * where it started, sampled every 5 ms meanwhile (a streaming failure leaves the event loop free
 * to sample; a blocking one is caught by the sample taken right after).
 */
async function measure(fn: () => Promise<unknown>): Promise<{ error: Error; ms: number; rssMb: number }> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const start = performance.now();
  let error: Error | undefined;
  try {
    await fn();
  } catch (err) {
    error = err as Error;
  }
  const ms = performance.now() - start;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  if (!error) throw new Error('expected a failure');
  return { error, ms, rssMb: (peak - before) / 2 ** 20 };
}

describe('bounded downloads', () => {
  const bomb = gzipBomb(1024); // 1 MB that gunzips to 1 GiB
  const servers: http.Server[] = [];
  let hostileUrl = '';
  let redirectUrl = '';
  let goodPort = 0;

  beforeAll(async () => {
    goodPort = Number(new URL(goodUrl).port);
    let s: http.Server;
    [s, hostileUrl] = await serve((req, res) => {
      const [, kind] = (req.url ?? '').split('/');
      if (kind === 'bomb') return void res.writeHead(200).end(bomb);
      if (kind === 'garbage') return void res.writeHead(200).end('not gzip at all');
      if (kind === 'endless') {
        // No Content-Length, and bytes for as long as anyone reads.
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        return pump();
      }
      if (kind === 'huge')
        return void res.writeHead(200, { 'content-length': String(10 * 2 ** 30) }).flushHeaders();
      // A few bytes, then silence with the connection open.
      if (kind === 'stall') return void res.writeHead(200).write(bomb.subarray(0, 100));
      // 'silent': accepts the connection, never answers.
    });
    servers.push(s);
    [s, redirectUrl] = await serve((req, res) => {
      const [, kind, name] = (req.url ?? '').split('/');
      if (kind === 'other') {
        // 127.0.0.1 -> localhost: the same machine, but another host name.
        return void res.writeHead(302, { location: `http://localhost:${goodPort}/${name}` }).end();
      }
      if (kind === 'same') return void res.writeHead(301, { location: `/files/${name}` }).end();
      if (kind === 'loop') return void res.writeHead(302, { location: `/loop/${name}` }).end();
      const body = files[name];
      if (kind === 'files' && body) return void res.writeHead(200).end(body);
      res.writeHead(404).end();
    });
    servers.push(s);
  });

  afterAll(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });

  it('(a) stops a gzip bomb at the size its IDX header declares, in little memory, leaving nothing', async () => {
    const dir = tempDir();
    const r = await measure(() => download(spec, dir, { mirrors: [hostileUrl + 'bomb/'] }));
    expect(r.error.message).toMatch(
      new RegExp(`ti\\.gz decompresses to more than the ${BOMB_DECLARED} bytes its IDX header declares`),
    );
    expect(r.error.message).toMatch(/could not download ti\.gz from any mirror/);
    expect(r.rssMb).toBeLessThan(150);
    expect(r.ms).toBeLessThan(5000);
    expect(readdirSync(dir)).toEqual([]);
    console.log(`gzip bomb download: failed in ${r.ms.toFixed(0)} ms, RSS +${r.rssMb.toFixed(1)} MB`);
  });

  it('(b) stops an endless body at the byte cap, and a too-large Content-Length before reading', async () => {
    const dir = tempDir();
    const r = await measure(() =>
      download(spec, dir, {
        mirrors: [hostileUrl + 'endless/'],
        maxDownloadBytes: 2 ** 20,
        timeoutMs: 10_000,
      }),
    );
    expect(r.error.message).toMatch(
      /sent more than 1048576 bytes, the most allowed for one download; stopped/,
    );
    expect(r.ms).toBeLessThan(5000);
    expect(readdirSync(dir)).toEqual([]);
    await expect(download(spec, dir, { mirrors: [hostileUrl + 'huge/'] })).rejects.toThrow(
      /is 10737418240 bytes, more than the 67108864 allowed for one download/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('(c) times out on a body that stops, and on a server that never answers, each saying which', async () => {
    const dir = tempDir();
    let r = await measure(() =>
      download(spec, dir, { mirrors: [hostileUrl + 'stall/'], idleTimeoutMs: 300, timeoutMs: 10_000 }),
    );
    expect(r.error.message).toMatch(/stall\/ti\.gz: no data for 0\.3 s/);
    expect(r.ms).toBeLessThan(2000);
    r = await measure(() =>
      download(spec, dir, { mirrors: [hostileUrl + 'silent/'], connectTimeoutMs: 300, timeoutMs: 10_000 }),
    );
    expect(r.error.message).toMatch(
      /silent\/ti\.gz: timed out connecting to 127\.0\.0\.1:\d+ \(no response in 0\.3 s\)/,
    );
    expect(r.ms).toBeLessThan(2000);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('(d) checks a .gz MD5 before decompressing anything', async () => {
    const dir = tempDir();
    const byMd5: IdxDatasetSpec = { ...spec, trainImages: { name: 'ti', gzMd5: md5(files['ti.gz']) } };
    // The bomb fails its MD5 at once: never gunzipped, so no time or memory spent on it.
    const r = await measure(() => download(byMd5, dir, { mirrors: [hostileUrl + 'bomb/'] }));
    expect(r.error.message).toMatch(new RegExp(`checksum mismatch \\(got md5 ${md5(bomb).slice(0, 12)}…\\)`));
    expect(r.rssMb).toBeLessThan(50);
    expect(r.ms).toBeLessThan(1000);
    // Bytes that are not gzip at all: the MD5 rejects them before gunzip could complain.
    await expect(download(byMd5, dir, { mirrors: [hostileUrl + 'garbage/'] })).rejects.toThrow(
      /garbage\/ti\.gz: checksum mismatch \(got md5 [0-9a-f]{12}…\)/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('(e) follows redirects within the host only', async () => {
    const dir = tempDir();
    const before = hits.length;
    await expect(download(spec, dir, { mirrors: [redirectUrl + 'other/'] })).rejects.toThrow(
      new RegExp(`other/ti\\.gz: redirected to localhost:${goodPort}; not followed`),
    );
    expect(hits.length).toBe(before); // the other host was never asked
    await expect(download(spec, dir, { mirrors: [redirectUrl + 'loop/'] })).rejects.toThrow(
      /more than 5 redirects/,
    );
    expect(readdirSync(dir)).toEqual([]);
    // Refused mirrors fall back to the next; a same-host redirect is followed.
    await download(spec, dir, { mirrors: [redirectUrl + 'other/', redirectUrl + 'same/'] });
    expect(readdirSync(dir).sort()).toEqual(['ti.gz', 'tl.gz', 'vi.gz', 'vl.gz']);
  });

  it('(f) stops a gzip bomb in --data-dir at the size its IDX header declares', async () => {
    const dir = tempDir();
    for (const [name, body] of Object.entries(files)) writeFileSync(path.join(dir, name), body);
    writeFileSync(path.join(dir, 'ti.gz'), bomb);
    const r = await measure(() => loadIdxDataset(spec, { dataDir: dir }));
    expect(r.error.message).toBe(
      `${path.join(dir, 'ti.gz')} decompresses to more than the ${BOMB_DECLARED} bytes its IDX header declares; delete it and fetch again`,
    );
    expect(r.rssMb).toBeLessThan(150);
    expect(r.ms).toBeLessThan(5000);
    console.log(`gzip bomb in --data-dir: failed in ${r.ms.toFixed(0)} ms, RSS +${r.rssMb.toFixed(1)} MB`);
    await expect(readMaybeGzip(path.join(dir, 'ti.gz'))).rejects.toThrow(/decompresses to more than/);
  });

  it('(f) rejects an absurd IDX header, and data shorter than its header declares', async () => {
    const dir = tempDir();
    const absurd = path.join(dir, 'absurd.gz');
    writeFileSync(absurd, gzipSync(idx([100000, 1000, 1000], new Uint8Array(10))));
    const r = await measure(() => readMaybeGzip(absurd));
    expect(r.error.message).toMatch(
      /absurd\.gz: its IDX header declares \[100000x1000x1000\], 100000000016 bytes, more than the 536870912 accepted for one file/,
    );
    expect(r.rssMb).toBeLessThan(50);
    const short = path.join(dir, 'short.gz');
    writeFileSync(short, gzipSync(idx([4, 2, 2]).subarray(0, 20)));
    await expect(readMaybeGzip(short)).rejects.toThrow(
      /short\.gz decompresses to only 20 bytes, fewer than the 32 its IDX header declares; delete it and fetch again/,
    );
  });
});

/** A model.json whose one weight group declares 2x2 float32 values (16 bytes) in `paths`. */
function modelJson(paths: string[]): string {
  return JSON.stringify({
    format: 'layers-model',
    modelTopology: {},
    weightsManifest: [{ paths, weights: [{ name: 'w', shape: [2, 2], dtype: 'float32' }] }],
  });
}
const WEIGHTS = new Uint8Array(16).fill(7);

describe('bounded backbone downloads', () => {
  const servers: http.Server[] = [];
  const asked: string[] = [];
  let base = '';
  let port = 0;
  let silentUrl = '';
  const cacheHome = process.env.XDG_CACHE_HOME;

  beforeAll(async () => {
    // Downloaded backbones are cached: into a temp folder here.
    process.env.XDG_CACHE_HOME = tempDir();
    let s: http.Server;
    [s, base] = await serve((req, res) => {
      const url = req.url ?? '';
      asked.push(url);
      const [, kind, name] = url.split('?')[0].split('/');
      if (kind === 'good' && name === 'model.json') return void res.writeHead(200).end(modelJson(['w.bin']));
      if (kind === 'good' && name === 'w.bin') return void res.writeHead(200).end(WEIGHTS);
      // A weight file far larger than model.json declares.
      if (kind === 'fat' && name === 'model.json') return void res.writeHead(200).end(modelJson(['w.bin']));
      if (kind === 'fat' && name === 'w.bin') return void res.writeHead(200).end(new Uint8Array(1 << 20));
      if (kind === 'endless') {
        // A model.json that never ends: no Content-Length, bytes for as long as anyone reads.
        res.writeHead(200);
        res.write('{"modelTopology": {}, "padding": "');
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        return pump();
      }
      if (kind === 'elsewhere') {
        // 127.0.0.1 -> localhost: the same machine, but another host name.
        return void res.writeHead(302, { location: `http://localhost:${port}/good/${name}` }).end();
      }
      if (kind === 'climb' && name === 'model.json')
        return void res.writeHead(200).end(modelJson(['../../dev/zero']));
      if (kind === 'encoded' && name === 'model.json')
        return void res.writeHead(200).end(modelJson(['%2e%2e/%2E%2E/dev/zero']));
      if (kind === 'absolute' && name === 'model.json')
        return void res.writeHead(200).end(modelJson(['/dev/zero']));
      if (kind === 'backslash' && name === 'model.json')
        return void res.writeHead(200).end(modelJson(['..\\..\\dev\\zero']));
      if (kind === 'scheme' && name === 'model.json')
        return void res.writeHead(200).end(modelJson(['http://localhost/w.bin']));
      res.writeHead(404).end();
    });
    port = Number(new URL(base).port);
    servers.push(s);
    // Accepts connections and never answers.
    [s, silentUrl] = await serve(() => {});
    servers.push(s);
  });

  afterAll(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    if (cacheHome === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = cacheHome;
  });

  it('downloads model.json and the weights it declares, and nothing more', async () => {
    const got = await backboneFiles(`${base}good/model.json`);
    expect(got.files.map((f) => [f.name, f.data.length])).toEqual([
      ['model.json', modelJson(['w.bin']).length],
      ['w.bin', 16],
    ]);
    expect(got.origin).toBe('download');
    // A weight file larger than its group's declared 16 bytes is cut after them.
    const r = await measure(() => backboneFiles(`${base}fat/model.json`));
    expect(r.error.message).toMatch(
      /^backbone http:\/\/127\.0\.0\.1:\d+\/fat\/model\.json: cannot download its weight file w\.bin \(its group may hold 16 more bytes, as model\.json declares\) \((is 1048576 bytes, more than the 16|sent more than 16 bytes)/,
    );
    expect(r.error.message).toMatch(/; check the URL, or download model\.json and its weight files/);
  });

  it('cuts an endless model.json at the cap', async () => {
    const r = await measure(() => backboneFiles(`${base}endless/model.json`));
    expect(r.error.message).toBe(
      `backbone ${base}endless/model.json: cannot download model.json (sent more than ${MAX_MODEL_JSON_BYTES} bytes, the most allowed for one download; stopped); check the URL, or download model.json and its weight files and pass their folder to --backbone`,
    );
    expect(r.ms).toBeLessThan(10_000);
    expect(r.rssMb).toBeLessThan(200);
    console.log(`endless model.json: stopped in ${r.ms.toFixed(0)} ms, RSS +${r.rssMb.toFixed(1)} MB`);
  });

  it('times out on a server that never answers', async () => {
    const r = await measure(() =>
      backboneFiles(`${silentUrl}model.json`, { timeouts: { connectTimeoutMs: 300 } }),
    );
    expect(r.error.message).toMatch(
      /cannot download model\.json \(timed out connecting to 127\.0\.0\.1:\d+ \(no response in 0\.3 s\)\)/,
    );
    expect(r.ms).toBeLessThan(2000);
  });

  it('refuses a redirect to another host, never asking it', async () => {
    const before = asked.length;
    await expect(backboneFiles(`${base}elsewhere/model.json`)).rejects.toThrow(
      new RegExp(`cannot download model\\.json \\(redirected to localhost:${port}; not followed`),
    );
    // Only the redirecting request reached the server: localhost was never asked.
    expect(asked.slice(before)).toEqual(['/elsewhere/model.json']);
  });

  it('refuses weight paths outside the model folder on a server, before asking for them', async () => {
    const cases: [string, RegExp][] = [
      ['climb', /names the weight file '\.\.\/\.\.\/dev\/zero', which climbs out of the folder with '\.\.'/],
      ['encoded', /names the weight file '%2e%2e\/%2E%2E\/dev\/zero', which climbs out of the folder/],
      ['absolute', /names the weight file '\/dev\/zero', which is absolute/],
      ['backslash', /which has a backslash/],
      ['scheme', /names the weight file 'http:\/\/localhost\/w\.bin', which is absolute/],
    ];
    for (const [kind, message] of cases) {
      const before = asked.length;
      const error = (await backboneFiles(`${base}${kind}/model.json`).catch((e: Error) => e)) as Error;
      expect(error.message, kind).toMatch(message);
      expect(error.message, kind).toMatch(/weight paths must be relative paths inside model\.json's folder/);
      expect(asked.slice(before), kind).toEqual([`/${kind}/model.json`]);
    }
  });

  it('refuses weight paths outside the model folder on disk, and files that are not regular files', async () => {
    const dir = tempDir();
    const folder = path.join(dir, 'backbone');
    mkdirSync(folder);
    writeFileSync(path.join(folder, 'model.json'), modelJson(['../../dev/zero']));
    await expect(backboneFiles(folder)).rejects.toThrow(
      /names the weight file '\.\.\/\.\.\/dev\/zero', which climbs out of the folder with '\.\.'/,
    );
    writeFileSync(path.join(folder, 'model.json'), modelJson(['/dev/zero']));
    await expect(backboneFiles(folder)).rejects.toThrow(/which is absolute/);
    // A link inside the folder to a device is not read either.
    symlinkSync('/dev/zero', path.join(folder, 'zero.bin'));
    writeFileSync(path.join(folder, 'model.json'), modelJson(['zero.bin']));
    await expect(backboneFiles(folder)).rejects.toThrow(
      `backbone ${folder}: its weight file ${path.join(folder, 'zero.bin')} is not a regular file`,
    );
    // Weight files must hold exactly what model.json declares.
    writeFileSync(path.join(folder, 'w.bin'), new Uint8Array(1 << 20));
    writeFileSync(path.join(folder, 'model.json'), modelJson(['w.bin']));
    await expect(backboneFiles(folder)).rejects.toThrow(
      /its weight files w\.bin hold 1048576 bytes but model\.json's weightsManifest declares 16/,
    );
    writeFileSync(path.join(folder, 'w.bin'), new Uint8Array(10));
    await expect(backboneFiles(folder)).rejects.toThrow(
      /its weight files w\.bin hold 10 bytes but model\.json's weightsManifest declares 16/,
    );
    writeFileSync(path.join(folder, 'w.bin'), WEIGHTS);
    const good = await backboneFiles(folder);
    expect(good.files[1].data).toEqual(WEIGHTS);
    // A run's backbone whose weight file grew has changed (by its hash), whatever its size says.
    appendFileSync(path.join(folder, 'w.bin'), Buffer.from([0]));
    await expect(recordedBackboneFiles(folder, good.sha256)).rejects.toThrow(
      new RegExp(
        `backbone ${folder} has changed since the run was trained \\(sha256 [0-9a-f]{12}, the run was trained with ${good.sha256.slice(0, 12)}\\)`,
      ),
    );
    // model.json itself must be a regular file.
    await expect(backboneFiles('/dev/zero')).rejects.toThrow(
      /^backbone \/dev\/zero is not a regular file; --backbone takes a TensorFlow\.js model\.json$/,
    );
  });
});

/**
 * The serve API against small inputs that would pin it and requests it should not trust: SVG
 * and AVIF decompression bombs, batches of them, JSON bodies no route takes, cross-site requests
 * from a browser, slow readers of the data downloads, a data set that does not load, a token,
 * and answers that must not quote a file or a URL's credentials. Each case reproduces a finding
 * and checks the answer's status and how soon it came.
 */
import type { FastifyInstance } from 'fastify';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { loadImageFolder } from '../src/node/data/folder.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { MAX_IMAGE_FILE_BYTES } from '../src/node/image.js';
import type { LoadedRun, RunMetadata } from '../src/node/run/rundir.js';
import { DecodeAllowance, resolveDecodeBudget } from '../src/server/limits.js';
import { idxParts, loadRawDataset } from '../src/server/data.js';
import { folderData, listenPort, serverPool, writeRun } from './fixtures/server.js';
import { launchChromium, multipartForm, ROOT, tempDir } from './helpers.js';

const MAX = 1024 * 1024;
let run: LoadedRun;
let png: Buffer;
let svgBomb: Buffer;
let avifBomb: Buffer;
const { server, closeAll } = serverPool(() => ({ run, maxUploadBytes: MAX, webRoot: null }));

async function listen(app: FastifyInstance): Promise<string> {
  return `http://127.0.0.1:${await listenPort(app)}`;
}

/** Ten levels of <g>, each with ten <use> of the level before: 10^9 rectangles from 2 KB. */
function nestedUseSvg(levels = 10, fan = 10): Buffer {
  let s =
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100"><defs><g id="l0"><rect width="1" height="1"/></g>';
  for (let l = 1; l < levels; l++)
    s += `<g id="l${l}">${Array.from({ length: fan }, () => `<use xlink:href="#l${l - 1}"/>`).join('')}</g>`;
  return Buffer.from(`${s}</defs><use xlink:href="#l${levels - 1}"/></svg>`);
}

const json = (r: { body: string }) => JSON.parse(r.body) as { statusCode: number; message: string };

const rawPost = (app: FastifyInstance, url: string, payload: Buffer | string, type: string, headers = {}) =>
  app.inject({ method: 'POST', url, payload, headers: { 'content-type': type, ...headers } });

/** `f` and how long it took, in ms. */
async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

beforeAll(async () => {
  await selectBackend('wasm');
  run = await writeRun(path.join(tempDir(), 'run'));
  png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#ffffff' } })
    .png()
    .toBuffer();
  svgBomb = nestedUseSvg();
  avifBomb = await sharp({ create: { width: 7000, height: 7000, channels: 3, background: '#000' } })
    .avif({ effort: 0 })
    .toBuffer();
});

afterEach(closeAll);

describe('decompression bombs', () => {
  it('an SVG of nested <use> is refused as no listed format (415) at once, alone or in a batch', async () => {
    expect(svgBomb.length).toBeLessThan(2500);
    const app = await server();
    const [single, ms] = await timed(() => rawPost(app, '/api/predict', svgBomb, 'image/svg+xml'));
    expect(single.statusCode, single.body).toBe(415);
    expect(json(single).message).toBe(
      'body: not an image imgclf can read (PNG, JPEG, WebP, GIF, TIFF or AVIF expected)',
    );
    expect(ms).toBeLessThan(500);
    const form = multipartForm(
      Array.from({ length: 8 }, (_, i) => ({
        field: 'f',
        name: `b${i}.svg`,
        type: 'image/svg+xml',
        bytes: svgBomb,
      })),
    );
    const [batch, batchMs] = await timed(() =>
      app.inject({ method: 'POST', url: '/api/predict/batch', ...form }),
    );
    expect(batch.statusCode).toBe(415);
    expect(json(batch).message).toMatch(/^b0\.svg: not an image/);
    expect(batchMs).toBeLessThan(500);
  });

  it('with allowSvg a plain SVG is classified, and the nested-<use> one is still refused at once', async () => {
    const app = await server({ decode: { allowSvg: true } });
    const plain = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect x="10" y="5" width="20" height="20"/></svg>',
    );
    expect((await rawPost(app, '/api/predict', plain, 'image/svg+xml')).statusCode).toBe(200);
    const [bomb, ms] = await timed(() => rawPost(app, '/api/predict', svgBomb, 'image/svg+xml'));
    expect(bomb.statusCode).toBe(413);
    expect(json(bomb).message).toMatch(
      /^body: the SVG has 91 <use> elements, more than the 16 imgclf renders/,
    );
    expect(ms).toBeLessThan(500);
    // The 415 lists SVG when it is accepted.
    expect(json(await rawPost(app, '/api/predict', 'text', 'image/png')).message).toMatch(
      /TIFF, AVIF or SVG expected/,
    );
  });

  it('a 7000x7000 AVIF of a few hundred bytes is refused by the pixel budget before decoding', async () => {
    expect(avifBomb.length).toBeLessThan(2000);
    const app = await server();
    const [r, ms] = await timed(() => rawPost(app, '/api/predict', avifBomb, 'image/avif'));
    expect(r.statusCode, r.body).toBe(413);
    expect(json(r).message).toBe(
      'body: the image is 7000x7000 pixels, more than the 6 million imgclf decodes from an AVIF file; shrink it first',
    );
    expect(ms).toBeLessThan(500);
  });

  // libheif decodes an AVIF in one call that sharp's timeout cannot interrupt: the timeout
  // refuses it once that call returns, however long it took (seconds on a busy machine). That
  // is why AVIF has its own, tight, pixel budget; here the budget is raised to reach the timeout.
  it('an AVIF let through by a raised pixel budget is refused by the decode timeout', async () => {
    const app = await server({ decode: { maxAvifPixels: 50_000_000, imageSeconds: 1 } });
    const r = await rawPost(app, '/api/predict', avifBomb, 'image/avif');
    expect(r.statusCode, r.body).toBe(413);
    expect(json(r).message).toBe(
      'body: decoding took longer than 1 s, the limit for one image; send a smaller image',
    );
  });

  it("a request's decode time: each image gets what is left, at most imageSeconds; none once it is spent", async () => {
    const allowance = new DecodeAllowance(resolveDecodeBudget({ imageSeconds: 3, requestSeconds: 1 }));
    expect(allowance.seconds('a.png')).toBe(1);
    await new Promise((r) => setTimeout(r, 1050));
    expect(() => allowance.seconds('b.png')).toThrow(
      /^b\.png: decoding this request's images took more than 1 s, the most one request may take; send fewer or smaller images$/,
    );
    expect(new DecodeAllowance(resolveDecodeBudget({ imageSeconds: 2 })).seconds('c.png')).toBe(2);
  });

  it("a batch over the request's pixels is refused before any image is decoded", async () => {
    const big = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    const app = await server({ decode: { maxRequestPixels: 60_000_000 } });
    const form = multipartForm(
      ['a', 'b', 'c'].map((n) => ({ field: 'f', name: `${n}.png`, type: 'image/png', bytes: big })),
    );
    const [r, ms] = await timed(() => app.inject({ method: 'POST', url: '/api/predict/batch', ...form }));
    expect(r.statusCode, r.body).toBe(413);
    expect(json(r).message).toMatch(
      /^c\.png: the request's images hold more than 60 million pixels together/,
    );
    expect(ms).toBeLessThan(500);
  });

  it('four batches of SVG bombs in flight: a good request is answered within 3 s', async () => {
    const url = await listen(await server({ maxBatch: 16 }));
    const form = multipartForm(
      Array.from({ length: 16 }, (_, i) => ({
        field: 'f',
        name: `b${i}.svg`,
        type: 'image/svg+xml',
        bytes: svgBomb,
      })),
    );
    const bombs = Array.from({ length: 4 }, () =>
      fetch(`${url}/api/predict/batch`, {
        method: 'POST',
        body: new Uint8Array(form.payload),
        headers: form.headers,
      }),
    );
    const [good, ms] = await timed(() =>
      fetch(`${url}/api/predict`, {
        method: 'POST',
        body: new Uint8Array(png),
        headers: { 'content-type': 'image/png' },
      }),
    );
    expect(good.status).toBe(200);
    expect(ms).toBeLessThan(3000);
    expect((await Promise.all(bombs)).map((r) => r.status)).toEqual([415, 415, 415, 415]);
  });
});

describe('bodies no route takes', () => {
  it('a 5 MB JSON body is refused (415) within 1 s, unparsed, and /api/health stays responsive', async () => {
    const app = await server({ maxUploadBytes: 8 * 1024 * 1024 });
    const url = await listen(app);
    const depth = 2.5 * 1024 * 1024;
    const nested = '['.repeat(depth) + ']'.repeat(depth);
    const post = () =>
      timed(() =>
        fetch(`${url}/api/predict`, {
          method: 'POST',
          body: nested,
          headers: { 'content-type': 'application/json' },
        }),
      );
    const posts = [post(), post(), post()];
    const [health, healthMs] = await timed(() => fetch(`${url}/api/health`));
    expect(health.status).toBe(200);
    expect(healthMs).toBeLessThan(1000);
    for (const [r, ms] of await Promise.all(posts)) {
      expect(r.status).toBe(415);
      expect(((await r.json()) as { message: string }).message).toMatch(
        /^Content-Type 'application\/json' is not an image; send an image/,
      );
      expect(ms).toBeLessThan(1000);
    }
    // text/plain is refused the same way; no route has a JSON or text parser.
    expect((await rawPost(app, '/api/prepare', 'x'.repeat(1000), 'text/plain')).statusCode).toBe(415);
  });
});

describe('cross-site requests', () => {
  it('403 for a POST with a foreign Origin or Sec-Fetch-Site cross-site; same-origin and non-browser clients pass', async () => {
    const app = await server();
    const host = 'localhost:8080';
    const post = (headers: Record<string, string>) =>
      rawPost(app, '/api/predict', png, 'image/png', { host, ...headers });
    const refused: Record<string, string>[] = [
      { origin: 'http://evil.example' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'cross-site', origin: 'http://localhost:8080' },
      { 'sec-fetch-site': 'same-site', origin: 'http://localhost:5173' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'null' },
    ];
    for (const headers of refused) {
      const r = await post(headers);
      expect(r.statusCode, JSON.stringify(headers)).toBe(403);
      expect(json(r).message).toMatch(
        /^cross-site request refused \(.*\): the API answers only this server's own page/,
      );
    }
    const passing: Record<string, string>[] = [
      {},
      { origin: 'http://localhost:8080', 'sec-fetch-site': 'same-origin' },
      { origin: 'http://LOCALHOST:8080' },
      { 'sec-fetch-site': 'none' },
    ];
    for (const headers of passing) {
      expect((await post(headers)).statusCode, JSON.stringify(headers)).toBe(200);
    }
    // GET routes that run the model are refused too; the health check is not.
    const get = (url: string) => app.inject({ url, headers: { host, 'sec-fetch-site': 'cross-site' } });
    expect((await get('/api/gallery')).statusCode).toBe(403);
    expect((await get('/api/health')).statusCode).toBe(200);
  });

  it('in Chromium, a page on another site cannot make the server decode anything', async () => {
    const app = await server();
    const statuses: number[] = [];
    app.addHook('onResponse', async (req, reply) => {
      if (req.url.startsWith('/api/predict')) statuses.push(reply.statusCode);
    });
    const url = await listen(app);
    // The attacker's page: on localhost, another site than 127.0.0.1.
    const evil = http.createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><script>
        const bytes = Uint8Array.from(atob('${png.toString('base64')}'), (c) => c.charCodeAt(0));
        window.done = fetch('${url}/api/predict', { method: 'POST', mode: 'no-cors', body: new Blob([bytes], { type: 'image/png' }) })
          .then(() => 'sent', (e) => String(e));
      </script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`);
      // The browser sent it; what it then shows the page is opaque, or a network error (the
      // answer's Cross-Origin-Resource-Policy: same-origin). The server's status is what counts.
      expect(await page.evaluate('window.done')).toMatch(/^sent$|Failed to fetch/);
      // The same POST from the server's own page passes.
      await page.goto(`${url}/api/health`);
      const own = await page.evaluate(
        `fetch('/api/predict', { method: 'POST', body: new Blob([Uint8Array.from(atob('${png.toString('base64')}'), (c) => c.charCodeAt(0))], { type: 'image/png' }) }).then((r) => r.status)`,
      );
      expect(own).toBe(200);
      expect(statuses).toEqual([403, 200]);
    } finally {
      await browser.close();
      await new Promise((resolve) => evil.close(resolve));
    }
  }, 60_000);
});

describe('token', () => {
  it('with a token every API route but /api/health needs Authorization: Bearer, compared exactly', async () => {
    const web = path.join(tempDir(), 'web');
    mkdirSync(web);
    writeFileSync(path.join(web, 'index.html'), '<!doctype html><title>t</title>');
    const app = await server({ token: 's3cret-token', webRoot: web });
    for (const authorization of [
      undefined,
      'Bearer wrong',
      'Bearer s3cret-token2',
      'Basic s3cret-token',
      'Bearer ',
    ]) {
      const headers = authorization === undefined ? {} : { authorization };
      const r = await app.inject({ url: '/api/model', headers });
      expect(r.statusCode, authorization).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer');
      expect(json(r).message).toMatch(
        /^this server requires a token: send the header 'Authorization: Bearer <token>'/,
      );
      expect((await rawPost(app, '/api/predict', png, 'image/png', headers)).statusCode).toBe(401);
    }
    const ok = { authorization: 'Bearer s3cret-token' };
    expect((await app.inject({ url: '/api/model', headers: ok })).statusCode).toBe(200);
    expect((await rawPost(app, '/api/predict', png, 'image/png', ok)).statusCode).toBe(200);
    expect((await app.inject('/api/health')).statusCode).toBe(200);
    // The page itself loads without it (it then sends the token it finds in its address).
    expect((await app.inject('/')).statusCode).toBe(200);
  });

  it('the page sends the token it finds after # in its address, and takes it out of the address', async () => {
    const webRoot = path.join(ROOT, 'web', 'dist');
    if (!existsSync(path.join(webRoot, 'index.html')))
      throw new Error("web/dist is missing: run 'npm run build:web'");
    const url = await listen(await server({ token: 'page-token', webRoot }));
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const model = page.waitForResponse((r) => r.url().endsWith('/api/model'));
      await page.goto(`${url}/#token=page-token`);
      expect((await model).status()).toBe(200);
      expect(page.url()).toBe(`${url}/`);
      // A reload in the same tab still has it.
      const again = page.waitForResponse((r) => r.url().endsWith('/api/model'));
      await page.reload();
      expect((await again).status()).toBe(200);
    } finally {
      await browser.close();
    }
  }, 60_000);

  it('serve --host 0.0.0.0 warns on stderr; --token (or IMGCLF_TOKEN) is then required', async () => {
    // The CLI from source (dist/ may be older than src/): main() as bin/imgclf.js calls it.
    const args = ['serve', '--run', run.dir, '--host', '0.0.0.0', '--port', '0', '--json'];
    const script = `const { main } = await import(${JSON.stringify(path.join(ROOT, 'src', 'cli', 'main.ts'))}); process.exit(await main(${JSON.stringify(['node', 'imgclf', ...args])}));`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, IMGCLF_TOKEN: 'from-env' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer: ${stderr}`)), 30_000);
        child.stdout.on('data', () => {
          if (stdout.includes('\n')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });
      const { url } = JSON.parse(stdout.split('\n')[0]) as { url: string };
      const port = new URL(url).port;
      const model = (auth?: string) =>
        fetch(`http://127.0.0.1:${port}/api/model`, { headers: auth ? { authorization: auth } : {} });
      expect((await model()).status).toBe(401);
      expect((await model('Bearer from-env')).status).toBe(200);
      expect(stderr).toMatch(/warning: --host 0\.0\.0\.0 exposes the server beyond this machine/);
    } finally {
      child.kill('SIGTERM');
    }
  }, 60_000);
});

describe('the data downloads', () => {
  it('every download is a view of one shared IDX file, whole or limited', async () => {
    const ds = await loadRawDataset({
      ...run.metadata,
      data: { kind: 'idx', dataset: 'fashion-mnist' },
    } as RunMetadata);
    const [a] = idxParts(ds, 'train', 'images', ds.train.count);
    const [b] = idxParts(ds, 'train', 'images', ds.train.count);
    expect(a).toBe(b);
    expect(a.byteLength).toBe(16 + 60000 * 784);
    const [header, data] = idxParts(ds, 'train', 'images', 10);
    expect(data.buffer).toBe(a.buffer);
    expect(data.byteOffset).toBe(16);
    expect(new DataView(header.buffer).getUint32(4)).toBe(10);
  }, 60_000);

  it('30 slow readers of the 47 MB images: 4 are served from the shared file, the rest get 503; memory stays', async () => {
    const fashion = await writeRun(path.join(tempDir(), 'run'), {
      data: { kind: 'idx', dataset: 'fashion-mnist' },
    } as Partial<RunMetadata>);
    const app = await server({ run: fashion });
    const url = await listen(app);
    const port = Number(new URL(url).port);
    // The first download loads the data; it is then kept.
    const first = await fetch(`${url}/api/data/train/images`);
    expect(first.status).toBe(200);
    expect((await first.arrayBuffer()).byteLength).toBe(16 + 60000 * 784);
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    /** A client that asks for the images and reads only the status line, then stops reading. */
    const slowReader = () =>
      new Promise<{ socket: net.Socket; status: number }>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', reject);
        socket.write(`GET /api/data/train/images HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
        socket.once('data', (d: Buffer) => {
          socket.pause();
          resolve({ socket, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1]) });
        });
      });
    const readers = [];
    for (let i = 0; i < 30; i++) readers.push(await slowReader());
    try {
      const statuses = readers.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(4);
      expect(statuses.filter((s) => s === 503)).toHaveLength(26);
      const busy = await fetch(`${url}/api/data/train/images`);
      expect(busy.status).toBe(503);
      expect(busy.headers.get('retry-after')).toBe('5');
      // A copy per download would be 4 x 47 MB.
      expect((process.memoryUsage().rss - rssBefore) / 1024 / 1024).toBeLessThan(60);
      // Other routes are unaffected.
      expect((await fetch(`${url}/api/health`)).status).toBe(200);
    } finally {
      for (const r of readers) r.socket.destroy();
    }
    // The slots are free again once the readers have gone.
    await new Promise((r) => setTimeout(r, 100));
    const again = await fetch(`${url}/api/data/train/labels?limit=5`);
    expect(again.status).toBe(200);
    expect((await again.arrayBuffer()).byteLength).toBe(8 + 5);
  }, 120_000);

  it('a data load that failed is remembered: the next requests answer at once, from the same failure', async () => {
    const work = tempDir();
    const photos = path.join(work, 'photos');
    const r = await writeRun(path.join(work, 'run'), {
      data: folderData(photos),
    } as Partial<RunMetadata>);
    const app = await server({ run: r });
    expect((await app.inject('/api/data')).statusCode).toBe(404);
    // The folder appears, but the failure is kept (30 s by default): no new load per request.
    await writeShapesFolder(photos, { perClass: 2 });
    for (let i = 0; i < 5; i++) {
      const [answer, ms] = await timed(() => app.inject('/api/data'));
      expect(answer.statusCode).toBe(404);
      expect(json(answer).message).toMatch(/photos does not exist/);
      expect(ms).toBeLessThan(100);
    }
  });

  it('a 404 does not quote the content of the file metadata.json names', async () => {
    const work = tempDir();
    const secret = path.join(work, 'secret.csv');
    writeFileSync(secret, 'user,password\nalice,hunter2-TOP-SECRET\n');
    const r = await writeRun(path.join(work, 'run'), {
      data: { kind: 'csv', path: secret, valSplit: 0.1, seed: 0 },
    } as Partial<RunMetadata>);
    const app = await server({ run: r, dataRetryMs: 0 });
    for (const url of ['/api/data', '/api/gallery', '/api/data/train/images']) {
      const answer = await app.inject(url);
      expect(answer.statusCode, answer.body).toBe(404);
      expect(answer.body).not.toMatch(/hunter2|TOP-SECRET|alice/);
      expect(json(answer).message).toMatch(
        /^this run's training data is not available \(the data at secret\.csv no longer loads as the run recorded it; /,
      );
    }
  });
});

describe('what answers show', () => {
  it('/api/model shows a backbone URL without its user, password or query values', async () => {
    const r = await writeRun(path.join(tempDir(), 'run'), {
      config: {
        backbone: 'https://alice:pa55word@models.example/mobilenet/model.json?token=abc123&v=2#key=zz',
        model: 'softmax',
      },
    } as Partial<RunMetadata>);
    const app = await server({ run: r });
    const body = (await app.inject('/api/model')).body;
    expect(body).not.toMatch(/alice|pa55word|abc123|key=zz/);
    expect(JSON.parse(body).config.backbone).toBe(
      'https://redacted@models.example/mobilenet/model.json?token=redacted&v=redacted#redacted',
    );
  });
});

describe('image folders', () => {
  it('a file over the size cap is skipped unread, with the reason', async () => {
    const dir = path.join(tempDir(), 'shapes');
    await writeShapesFolder(dir, { perClass: 3 });
    const huge = path.join(dir, 'circle', 'huge.png');
    writeFileSync(huge, png);
    // Sparse: the size is there, the bytes are not (reading it whole would take 65 MB).
    truncateSync(huge, MAX_IMAGE_FILE_BYTES + 1024 * 1024);
    const log: string[] = [];
    const loaded = await loadImageFolder(dir, {
      imageSize: 28,
      channels: 1,
      resizeMode: 'contain',
      cacheDir: tempDir(),
      log: (m) => log.push(m),
    });
    expect(loaded.skipped).toEqual([
      {
        path: huge,
        reason: 'too large: the file is 65.0 MB, more than the 64 MB imgclf reads for one image',
      },
    ]);
    expect(log).toContain(
      `warning: skipping ${huge}: too large: the file is 65.0 MB, more than the 64 MB imgclf reads for one image`,
    );
  });
});

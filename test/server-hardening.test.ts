/**
 * The serve API under hostile or careless clients: slow sockets, oversized and malformed
 * requests, pixel bombs, more work than the server takes at once, clients that leave, foreign
 * Host names, and the paths and downloads an answer must not give away or start. Socket-level
 * cases listen on 127.0.0.1; the rest go through Fastify's inject.
 */
import type { FastifyInstance } from 'fastify';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pngDeclaring } from '../src/node/data/shapes.js';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { MNIST_CLASSES } from '../src/core/data/classes.js';
import type { LoadedRun } from '../src/node/run/rundir.js';
import type { ServerOptions } from '../src/server/app.js';
import { folderData, listenPort, serverPool, squarePng, writeRun } from './fixtures/server.js';
import { cli, expectCleanError, MULTIPART_BOUNDARY, multipartForm, tempDir } from './helpers.js';

const MAX = 64 * 1024;
let runDir = '';
let run: LoadedRun;
let png: Buffer;
/** A 7000x7000 PNG (150 KB): decoding a dozen of them keeps an inference slot busy for a while. */
let bigPng: Buffer;
/** Servers over `run` (or `opts.run`), closed after the test. */
const { server, closeAll } = serverPool(() => ({ run, maxUploadBytes: MAX, maxBatch: 4, webRoot: null }));

const json = (r: { body: string }) => JSON.parse(r.body) as Record<string, unknown>;

function expectError(r: { statusCode: number; body: string }, status: number, pattern: RegExp) {
  expect(r.statusCode, r.body).toBe(status);
  const body = json(r);
  expect(body.statusCode).toBe(status);
  expect(body.message).toMatch(pattern);
}

interface RawResult {
  /** What the server sent before closing (or before `waitMs`). */
  response: string;
  /** When the server closed the socket, in ms after connecting; undefined = still open. */
  closedAfterMs?: number;
}

/**
 * Writes `chunks` to a raw socket, one every `gapMs`, and collects the answer until the server
 * closes the socket or `waitMs` have passed (then closes it itself).
 */
function rawExchange(
  port: number,
  chunks: (string | Buffer)[],
  gapMs: number,
  waitMs: number,
): Promise<RawResult> {
  return new Promise((resolve) => {
    const start = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    let response = '';
    let i = 0;
    const timer = setTimeout(() => {
      socket.removeAllListeners('close');
      socket.destroy();
      resolve({ response });
    }, waitMs);
    socket.on('data', (d) => (response += d.toString()));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ response, closedAfterMs: Date.now() - start });
    });
    const next = () => {
      if (socket.destroyed || i >= chunks.length) return;
      socket.write(chunks[i++]);
      setTimeout(next, gapMs);
    };
    next();
  });
}

/** GET with an explicit Host header over a real socket. */
function getWithHost(port: number, urlPath: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function health(app: FastifyInstance) {
  return json(await app.inject('/api/health')).inference as {
    running: number;
    waiting: number;
    completed: number;
    rejected: number;
    abandoned: number;
  };
}

/** Polls `f` every 5 ms until it holds (or fails after `ms`). */
async function until(f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A batch of large images that keeps the one inference slot busy for a noticeable time. */
const slowBatch = () =>
  multipartForm(
    Array.from({ length: 12 }, (_, i) => ({
      field: 'f',
      name: `big${i}.png`,
      type: 'image/png',
      bytes: bigPng,
    })),
  );

const SLOW_OPTS: Partial<ServerOptions> = {
  maxUploadBytes: 1024 * 1024,
  maxRequestBytes: 4 * 1024 * 1024,
  maxBatch: 16,
  maxConcurrent: 1,
  // These tests are about the slots, not the decode budget: on a busy machine a 7000x7000 PNG
  // may take longer than the default second to decode.
  decode: { imageSeconds: 30, requestSeconds: 60 },
};

beforeAll(async () => {
  await selectBackend('wasm');
  runDir = path.join(tempDir(), 'run');
  run = await writeRun(runDir);
  png = await squarePng();
  bigPng = await sharp({ create: { width: 7000, height: 7000, channels: 3, background: '#ffffff' } })
    .png({ compressionLevel: 9 })
    .toBuffer();
});

afterEach(closeAll);

describe('timeouts', () => {
  const timeouts = { headersMs: 300, requestMs: 600, idleMs: 2000, keepAliveMs: 500 };

  it('a client that dribbles its headers, or its body, or sends nothing, is cut off in time', async () => {
    const port = await listenPort(await server({ timeouts }));
    const header = 'GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ' + 'a'.repeat(40);
    const postHead = `POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`;
    const [slowHeaders, slowBody, silent] = await Promise.all([
      rawExchange(port, header.split(''), 50, 4000),
      rawExchange(port, [postHead, ...png.subarray(0, 40).toString('latin1').split('')], 50, 4000),
      rawExchange(port, [], 0, 4000),
    ]);
    for (const r of [slowHeaders, slowBody, silent]) {
      expect(r.closedAfterMs, 'the server left the socket open').toBeDefined();
      expect(r.closedAfterMs!).toBeLessThan(2000);
      expect(r.response).toMatch(/^HTTP\/1\.1 408/);
    }
    // The server itself is fine.
    expect((await getWithHost(port, '/api/health', `localhost:${port}`)).status).toBe(200);
  });

  it('an idle kept-alive connection is closed after keepAliveMs', async () => {
    const port = await listenPort(await server({ timeouts }));
    const r = await rawExchange(port, ['GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n'], 0, 4000);
    expect(r.response).toMatch(/^HTTP\/1\.1 200/);
    expect(r.closedAfterMs).toBeDefined();
    expect(r.closedAfterMs!).toBeLessThan(2500);
  });
});

describe('request size', () => {
  it('413 for a request over the whole-request cap, though each image is under the per-image limit', async () => {
    const app = await server();
    const files = Array.from({ length: 4 }, (_, i) => ({
      field: 'f',
      name: `${i}.bin`,
      type: 'image/png',
      bytes: Buffer.alloc(40 * 1024, i),
    }));
    // 4 x 40 KB: each under 64 KB, together over the default cap (twice 64 KB).
    expectError(
      await app.inject({ method: 'POST', url: '/api/predict/batch', ...multipartForm(files) }),
      413,
      /^request too large: the limit is 0\.13 MB per request \(all images together\)$/,
    );
  });

  it('413 before the body is sent: by Content-Length, and while counting a chunked body', async () => {
    const port = await listenPort(await server());
    // Declares 10 MB and sends 1 KB: the answer comes at once.
    const declared = await rawExchange(
      port,
      [
        `POST /api/predict/batch HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`,
        Buffer.alloc(1024),
      ],
      0,
      1500,
    );
    expect(declared.response).toMatch(/^HTTP\/1\.1 413/);
    expect(declared.response).toMatch(/request too large: the limit is 0\.13 MB per request/);

    // Chunked, no length: three 50 KB files pass the 128 KB cap; the rest is never sent.
    const files = Array.from({ length: 4 }, (_, i) => ({
      field: 'f',
      name: `${i}.png`,
      type: 'image/png',
      bytes: Buffer.alloc(50 * 1024, i),
    }));
    const body = multipartForm(files).payload;
    const chunk = (b: Buffer) =>
      Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    const firstThree = body.subarray(0, body.indexOf(Buffer.from('filename="3.png"')));
    const chunked = await rawExchange(
      port,
      [
        `POST /api/predict/batch HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=${MULTIPART_BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n`,
        chunk(firstThree),
      ],
      0,
      1500,
    );
    expect(chunked.response).toMatch(/^HTTP\/1\.1 413/);
    expect(chunked.response).toMatch(/request too large/);
  });
});

describe('inference limit', () => {
  it('with one slot and no queue, a second request gets 503 with Retry-After and the reason', async () => {
    const app = await server({ ...SLOW_OPTS, maxQueue: 0 });
    const first = app.inject({ method: 'POST', url: '/api/predict/batch', ...slowBatch() });
    await until(async () => (await health(app)).running === 1);
    const second = await app.inject({
      method: 'POST',
      url: '/api/predict',
      payload: png,
      headers: { 'content-type': 'image/png' },
    });
    expectError(second, 503, /^the server is busy: 1 requests are being classified and 0 are waiting/);
    expect(second.headers['retry-after']).toBe('1');
    expect((await first).statusCode).toBe(200);
    expect(await health(app)).toMatchObject({ running: 0, completed: 1, rejected: 1 });
    // A slot is free again.
    const third = await app.inject({
      method: 'POST',
      url: '/api/predict',
      payload: png,
      headers: { 'content-type': 'image/png' },
    });
    expect(third.statusCode).toBe(200);
  });

  it('a client that leaves while queued is dropped: its image is never decoded, its place is freed', async () => {
    const app = await server({ ...SLOW_OPTS, maxQueue: 1 });
    const port = await listenPort(app);
    const first = app.inject({ method: 'POST', url: '/api/predict/batch', ...slowBatch() });
    await until(async () => (await health(app)).running === 1);
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(
      `POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`,
    );
    socket.write(png);
    await until(async () => (await health(app)).waiting === 1);
    socket.destroy();
    await new Promise((r) => setTimeout(r, 100));
    // The queue holds one, and that one's client has gone: a new request takes its place.
    const third = app.inject({
      method: 'POST',
      url: '/api/predict',
      payload: png,
      headers: { 'content-type': 'image/png' },
    });
    expect((await first).statusCode).toBe(200);
    expect((await third).statusCode).toBe(200);
    // The batch and the third request ran; the one whose client had gone did not.
    expect(await health(app)).toMatchObject({
      running: 0,
      waiting: 0,
      completed: 2,
      abandoned: 1,
      rejected: 0,
    });
  });

  it('a client that disconnects mid-upload or mid-batch does not hurt the server; its batch stops', async () => {
    const app = await server(SLOW_OPTS);
    const port = await listenPort(app);
    const body = multipartForm([{ field: 'image', name: 'x.png', type: 'image/png', bytes: png }]);
    const connect = (head: string) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(head);
      return socket;
    };
    for (const cut of [10, Math.floor(body.payload.length / 2)]) {
      const socket = connect(
        `POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${body.headers['content-type']}\r\nContent-Length: ${body.payload.length}\r\n\r\n`,
      );
      socket.write(body.payload.subarray(0, cut));
      await new Promise((r) => setTimeout(r, 50));
      socket.destroy();
    }
    // A raw body cut short, too.
    connect(
      `POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`,
    ).end(png.subarray(0, 100));
    // A whole batch, and the client leaves while it is being decoded: the rest is not.
    const batch = slowBatch();
    const socket = connect(
      `POST /api/predict/batch HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${batch.headers['content-type']}\r\nContent-Length: ${batch.payload.length}\r\n\r\n`,
    );
    socket.write(batch.payload);
    await until(async () => (await health(app)).running === 1);
    socket.destroy();
    await until(async () => (await health(app)).running === 0);
    expect(await health(app)).toMatchObject({ completed: 1, abandoned: 1 });

    const r = await fetch(`http://127.0.0.1:${port}/api/predict`, {
      method: 'POST',
      body: new Uint8Array(png),
      headers: { 'content-type': 'image/png' },
    });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { probabilities: number[] }).probabilities).toHaveLength(10);
  });
});

describe('bad images and bodies', () => {
  it('413 for an image declaring more pixels than imgclf decodes (a pixel bomb)', async () => {
    const app = await server();
    const bomb = pngDeclaring(60000, 60000);
    expect(bomb.length).toBeLessThan(MAX);
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: bomb,
        headers: { 'content-type': 'image/png' },
      }),
      413,
      /^body: the image is 60000x60000 pixels, more than the 50 million imgclf decodes/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict/batch',
        ...multipartForm([{ field: 'f', name: 'bomb.png', type: 'image/png', bytes: bomb }]),
      }),
      413,
      /^bomb\.png: the image is 60000x60000 pixels/,
    );
  });

  it('400 for malformed multipart bodies', async () => {
    const app = await server();
    const part = 'content-disposition: form-data; name="image"; filename="x.png"\r\n\r\nabc';
    const cases: [string, string][] = [
      ['multipart/form-data', `--b\r\n${part}\r\n--b--\r\n`], // no boundary parameter
      ['multipart/form-data; boundary=b', `--b\r\n${part}`], // cut off
      ['multipart/form-data; boundary=b', 'not multipart at all'],
    ];
    for (const [type, payload] of cases) {
      for (const url of ['/api/predict', '/api/predict/batch', '/api/prepare']) {
        expectError(
          await app.inject({ method: 'POST', url, payload, headers: { 'content-type': type } }),
          400,
          /^malformed multipart\/form-data body \(/,
        );
      }
    }
  });

  it('accepts Content-Type parameters on raw image bodies', async () => {
    const app = await server();
    for (const type of ['image/png; charset=utf-8', 'image/png;q=1', 'application/octet-stream; x=y']) {
      const r = await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: png,
        headers: { 'content-type': type },
      });
      expect(r.statusCode, `${type}: ${r.body}`).toBe(200);
    }
  });
});

describe('security headers and Host', () => {
  it('every answer carries the security headers: the page, the API and errors', async () => {
    const web = path.join(tempDir(), 'web');
    mkdirSync(web);
    writeFileSync(path.join(web, 'index.html'), '<!doctype html><title>t</title>');
    const app = await server({ webRoot: web });
    const answers = [
      await app.inject('/'),
      await app.inject('/api/health'),
      await app.inject('/api/nope'),
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: 'x',
        headers: { 'content-type': 'text/plain' },
      }),
    ];
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 404, 415]);
    for (const a of answers) {
      const csp = String(a.headers['content-security-policy']);
      expect(csp).toMatch(/default-src 'self'/);
      expect(csp).toMatch(/script-src 'self' 'wasm-unsafe-eval'/);
      expect(csp).toMatch(/img-src 'self' data: blob:/);
      expect(csp).toMatch(/media-src 'self' blob:/);
      expect(csp).toMatch(/frame-ancestors 'none'/);
      expect(csp).not.toMatch(/upgrade-insecure-requests/);
      expect(a.headers['x-content-type-options']).toBe('nosniff');
      expect(a.headers['x-frame-options']).toBe('DENY');
      expect(a.headers['referrer-policy']).toBe('no-referrer');
    }
  });

  it('bound to loopback, it answers only loopback Host names (DNS rebinding); else any Host', async () => {
    const app = await server({ host: '127.0.0.1' });
    const port = await listenPort(app);
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      'localhost',
      'LOCALHOST:1',
    ]) {
      expect((await getWithHost(port, '/api/health', host)).status, host).toBe(200);
    }
    for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.2']) {
      const r = await getWithHost(port, '/api/health', host);
      expect(r.status, host).toBe(421);
      expect(JSON.parse(r.body).message).toMatch(/answers only to localhost, 127\.0\.0\.1 and \[::1\]/);
    }
    expect((await getWithHost(port, '/', 'evil.example')).status).toBe(421);
    // Bound to another address, any Host is served.
    const lan = await server({ host: '0.0.0.0' });
    expect((await lan.inject({ url: '/api/health', headers: { host: 'evil.example' } })).statusCode).toBe(
      200,
    );
  });
});

describe('no paths, no downloads', () => {
  const cacheHome = process.env.XDG_CACHE_HOME;
  const dataDirEnv = process.env.IMGCLF_DATA_DIR;
  const mirrors = process.env.IMGCLF_MIRRORS;

  afterAll(() => {
    const restore = (k: string, v: string | undefined) =>
      v === undefined ? delete process.env[k] : (process.env[k] = v);
    restore('XDG_CACHE_HOME', cacheHome);
    restore('IMGCLF_DATA_DIR', dataDirEnv);
    restore('IMGCLF_MIRRORS', mirrors);
  });

  /** Every string in a JSON value, keys included. */
  function strings(v: unknown): string[] {
    if (typeof v === 'string') return [v];
    if (Array.isArray(v)) return v.flatMap(strings);
    if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [k, ...strings(x)]);
    return [];
  }

  it('/api/model, the OpenAPI document and data errors show no absolute path', async () => {
    const work = tempDir();
    const dir = path.join(work, 'run');
    const photos = path.join(work, 'photos');
    const r = await writeRun(dir, {
      config: { out: dir, data: photos, dataDir: path.join(work, 'idx'), model: 'softmax' },
      data: folderData(photos),
    });
    const app = await server({ run: r });
    const model = await app.inject('/api/model');
    const doc = await app.inject('/api/openapi.json');
    const gallery = await app.inject('/api/gallery');
    expect(gallery.statusCode).toBe(404);
    expect(json(gallery).message).toMatch(/photos does not exist/);
    for (const answer of [model, doc, gallery]) {
      expect(answer.body).not.toContain(work);
      expect(answer.body).not.toContain(os.tmpdir());
      for (const s of strings(JSON.parse(answer.body))) {
        // Route names are the only strings that start with '/'.
        if (s.startsWith('/')) expect(s).toMatch(/^\/api\//);
      }
    }
    const m = json(model) as { config: Record<string, string>; data: Record<string, string> };
    expect(m.config).toMatchObject({ out: 'run', data: 'photos', dataDir: 'idx', model: 'softmax' });
    expect(m.data).toMatchObject({ kind: 'folder', path: 'photos' });
  });

  it('a built-in set that is not on this machine answers 404 without any request to a mirror', async () => {
    let mirrorRequests = 0;
    const mirror = http.createServer((_req, res) => {
      mirrorRequests++;
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => mirror.listen(0, '127.0.0.1', resolve));
    try {
      process.env.XDG_CACHE_HOME = tempDir();
      process.env.IMGCLF_DATA_DIR = tempDir();
      process.env.IMGCLF_MIRRORS = `http://127.0.0.1:${(mirror.address() as AddressInfo).port}/`;
      const r = await writeRun(path.join(tempDir(), 'run'), {
        dataset: 'mnist',
        classNames: MNIST_CLASSES,
        data: { kind: 'idx', dataset: 'mnist' },
      });
      const app = await server({ run: r });
      for (const url of ['/api/gallery', '/api/data', '/api/data/train/images']) {
        const answer = await app.inject(url);
        expectError(answer, 404, /^this run's training data is not available \(mnist is not on this machine/);
        expect(answer.body).not.toContain(os.tmpdir());
      }
      expect(mirrorRequests).toBe(0);
    } finally {
      await new Promise((resolve) => mirror.close(resolve));
    }
  });
});

describe('imgclf serve limits (command line)', () => {
  it('rejects limit flags that make no sense with one line, exit 2', () => {
    expectCleanError(
      cli(['serve', '--model', '.', '--max-request-mb', '1']),
      /--max-request-mb must be at least --max-upload-mb \(5; got 1\)/,
    );
    expectCleanError(
      cli(['serve', '--model', '.', '--max-concurrent', '0']),
      /--max-concurrent must be at least 1/,
    );
    expectCleanError(cli(['serve', '--model', '.', '--max-queue', '-1']), /--max-queue must be 0 or more/);
  });
});

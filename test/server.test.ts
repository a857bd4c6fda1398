/** The serve API through Fastify's inject: every route, and every way a request can be wrong. */
import type { FastifyInstance } from 'fastify';
import { existsSync, renameSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { FASHION_MNIST_CLASSES } from '../src/core/data/classes.js';
import { pixelsAsFloat } from '../src/core/data/dataset.js';
import { parseIdx } from '../src/core/data/idx.js';
import type { DataSource } from '../src/core/data/source.js';
import { resolveConfig } from '../src/core/plan.js';
import { SHAPE_CLASSES, writeShapesFolder } from '../src/node/data/shapes.js';
import { loadRunData } from '../src/node/run/data.js';
import { type LoadedRun, loadRun } from '../src/node/run/rundir.js';
import { trainSession } from '../src/node/session.js';
import { buildServer } from '../src/server/app.js';
import { squarePng, writeRun } from './fixtures/server.js';
import { cli, expectCleanError, multipartForm, tempDir } from './helpers.js';

const MAX = 64 * 1024;
let app: FastifyInstance;
let png: Buffer;

beforeAll(async () => {
  await selectBackend('wasm');
  // An untrained softmax model is enough to check the API's shapes and errors.
  const dir = path.join(tempDir(), 'run');
  const run = await writeRun(dir, {}, [
    {
      epoch: 1,
      train_loss: 0.8,
      train_accuracy: 0.75,
      test_accuracy: 0.79,
      test_loss: 0.6,
      seconds: 1,
      eval_seconds: 0.1,
    },
  ]);
  app = await buildServer({ run, maxUploadBytes: MAX, maxBatch: 4, webRoot: null });
  png = await squarePng();
});

afterAll(async () => {
  await app?.close();
});

const json = (r: { body: string }) => JSON.parse(r.body) as Record<string, unknown>;

/** Every error is JSON with the status, its name and a message matching `pattern`. */
function expectError(
  r: { statusCode: number; body: string; headers: Record<string, unknown> },
  status: number,
  pattern: RegExp,
) {
  expect(r.statusCode).toBe(status);
  expect(String(r.headers['content-type'])).toMatch(/application\/json/);
  const body = json(r);
  expect(body.statusCode).toBe(status);
  expect(typeof body.error).toBe('string');
  expect(body.message).toMatch(pattern);
}

describe('serve API', () => {
  it('GET /api/health and /api/model describe the run', async () => {
    const h = await app.inject('/api/health');
    expect(h.statusCode).toBe(200);
    expect(json(h).status).toBe('ok');
    const m = json(await app.inject('/api/model'));
    expect(m.classNames).toEqual(FASHION_MNIST_CLASSES);
    expect(m.inputShape).toEqual([28, 28, 1]);
    expect((m.metrics as { test_accuracy: number }[])[0].test_accuracy).toBe(0.79);
    expect((m.classNamesZh as string[])[9]).toBe('短靴');
  });

  it('POST /api/predict takes a multipart field `image` or a raw body, with the same answer', async () => {
    const a = await app.inject({
      method: 'POST',
      url: '/api/predict?topK=3',
      ...multipartForm([{ field: 'image', name: 'x.png', type: 'image/png', bytes: png }]),
    });
    expect(a.statusCode).toBe(200);
    const pa = json(a) as {
      label: string;
      top: { probability: number }[];
      probabilities: number[];
      inverted: boolean;
    };
    expect(FASHION_MNIST_CLASSES).toContain(pa.label);
    expect(pa.top).toHaveLength(3);
    expect(pa.probabilities).toHaveLength(10);
    expect(pa.probabilities.reduce((s, p) => s + p, 0)).toBeCloseTo(1, 4);
    expect(pa.top[0].probability).toBeGreaterThanOrEqual(pa.top[1].probability);
    expect(pa.inverted).toBe(true); // white background
    const b = await app.inject({
      method: 'POST',
      url: '/api/predict?topK=3',
      payload: png,
      headers: { 'content-type': 'image/png' },
    });
    expect(b.statusCode).toBe(200);
    expect(json(b).probabilities).toEqual(pa.probabilities);
    const c = await app.inject({
      method: 'POST',
      url: '/api/predict',
      payload: png,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(c.statusCode).toBe(200);
  });

  it('413: a raw body or a multipart file over the limit', async () => {
    const big = Buffer.concat([png, Buffer.alloc(MAX + 1)]);
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: big,
        headers: { 'content-type': 'image/png' },
      }),
      413,
      /too large.*limit/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        ...multipartForm([{ field: 'image', name: 'big.png', type: 'image/png', bytes: big }]),
      }),
      413,
      /too large/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict/batch',
        ...multipartForm([{ field: 'a', name: 'big.png', type: 'image/png', bytes: big }]),
      }),
      413,
      /too large/,
    );
  });

  it('415: bytes that are no image, and content types that are no image', async () => {
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: Buffer.from('hello, not an image'),
        headers: { 'content-type': 'image/png' },
      }),
      415,
      /not an image/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        ...multipartForm([
          { field: 'image', name: 'notes.txt', type: 'text/plain', bytes: Buffer.from('just text') },
        ]),
      }),
      415,
      /notes\.txt: not an image/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: 'hello',
        headers: { 'content-type': 'text/plain' },
      }),
      415,
      /not an image/,
    );
    expectError(
      await app.inject({ method: 'POST', url: '/api/predict', payload: { image: 'x' } }),
      415,
      /not an image/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: 'x',
        headers: { 'content-type': 'application/x-whatever' },
      }),
      415,
      /Content-Type/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict/batch',
        payload: png,
        headers: { 'content-type': 'image/png' },
      }),
      415,
      /multipart/,
    );
  });

  it('400: images that fail to decode, empty bodies, missing fields, bad parameters', async () => {
    // A valid PNG header with the pixel data cut off.
    const truncated = png.subarray(0, Math.floor(png.length / 2));
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: truncated,
        headers: { 'content-type': 'image/png' },
      }),
      400,
      /cannot decode/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        payload: Buffer.alloc(0),
        headers: { 'content-type': 'image/png' },
      }),
      400,
      /empty/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        ...multipartForm([{ field: 'picture', name: 'x.png', type: 'image/png', bytes: png }]),
      }),
      400,
      /no file field 'image'/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict',
        ...multipartForm([], { image: 'not a file' }),
      }),
      400,
      /no file field 'image'/,
    );
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict?topK=0',
        payload: png,
        headers: { 'content-type': 'image/png' },
      }),
      400,
      /topK/,
    );
    expectError(
      await app.inject({ method: 'POST', url: '/api/predict/batch', ...multipartForm([], { note: 'x' }) }),
      400,
      /no image files/,
    );
  });

  it('404 and 405-style mistakes: unknown routes and methods answer JSON 404', async () => {
    expectError(await app.inject('/api/nope'), 404, /no route GET \/api\/nope/);
    expectError(await app.inject({ method: 'DELETE', url: '/api/predict' }), 404, /no route DELETE/);
    expectError(await app.inject('/api/data/validation/images'), 400, /split/);
  });

  it('POST /api/predict/batch classifies several images in order and names the bad one', async () => {
    const inverted = await sharp(png).negate({ alpha: false }).png().toBuffer();
    const ok = await app.inject({
      method: 'POST',
      url: '/api/predict/batch',
      ...multipartForm([
        { field: 'images', name: 'a.png', type: 'image/png', bytes: png },
        { field: 'images', name: 'b.png', type: 'image/png', bytes: inverted },
        { field: 'images', name: 'c.png', type: 'image/png', bytes: png },
      ]),
    });
    expect(ok.statusCode).toBe(200);
    const preds = json(ok).predictions as { file: string; probabilities: number[]; inverted: boolean }[];
    expect(preds.map((p) => p.file)).toEqual(['a.png', 'b.png', 'c.png']);
    expect(preds[0].probabilities).toEqual(preds[2].probabilities);
    expect(preds[0].inverted).toBe(true);
    expect(preds[1].inverted).toBe(false);
    expectError(
      await app.inject({
        method: 'POST',
        url: '/api/predict/batch',
        ...multipartForm([
          { field: 'images', name: 'a.png', type: 'image/png', bytes: png },
          { field: 'images', name: 'bad.bin', type: 'image/png', bytes: Buffer.from('garbage') },
        ]),
      }),
      415,
      /bad\.bin/,
    );
    const five = Array.from({ length: 5 }, (_, i) => ({
      field: 'images',
      name: `${i}.png`,
      type: 'image/png',
      bytes: png,
    }));
    expectError(
      await app.inject({ method: 'POST', url: '/api/predict/batch', ...multipartForm(five) }),
      413,
      /at most 4/,
    );
  });

  it('serves concurrent requests correctly and stays up after bad ones', async () => {
    const bodies = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        i % 3 === 2
          ? app.inject({
              method: 'POST',
              url: '/api/predict',
              payload: Buffer.from('junk'),
              headers: { 'content-type': 'image/png' },
            })
          : app.inject({
              method: 'POST',
              url: '/api/predict',
              payload: png,
              headers: { 'content-type': 'image/png' },
            }),
      ),
    );
    const reference = json(bodies[0]).probabilities;
    bodies.forEach((r, i) => {
      if (i % 3 === 2) expect(r.statusCode).toBe(415);
      else expect(json(r).probabilities).toEqual(reference);
    });
    expect((await app.inject('/api/health')).statusCode).toBe(200);
  });

  it('serves the dataset as IDX files with a count limit, single test images, and a gallery', async () => {
    const info = json(await app.inject('/api/data'));
    expect(info).toMatchObject({ train: 60000, test: 10000, shape: [28, 28, 1] });
    const imgs = await app.inject('/api/data/train/images?limit=100');
    const parsed = parseIdx(new Uint8Array(imgs.rawPayload), 'images', 3);
    expect(parsed.dims).toEqual([100, 28, 28]);
    const labels = parseIdx(
      new Uint8Array((await app.inject('/api/data/test/labels?limit=7')).rawPayload),
      'labels',
      1,
    );
    expect(labels.dims).toEqual([7]);
    // Fashion-MNIST's first test image is an ankle boot (label 9).
    expect(labels.data[0]).toBe(9);
    const one = await app.inject('/api/data/test/image/0');
    expect(one.headers['content-type']).toBe('image/png');
    expect((await sharp(one.rawPayload).metadata()).width).toBe(28);
    expectError(await app.inject('/api/data/test/image/10000'), 404, /out of range/);
    expectError(await app.inject('/api/data/train/images?limit=0'), 400, /limit/);
    const g = json(await app.inject('/api/gallery?offset=5&count=4')) as {
      items: { index: number; label: string; predicted: string }[];
    };
    expect(g.items.map((i) => i.index)).toEqual([5, 6, 7, 8]);
    expect(FASHION_MNIST_CLASSES).toContain(g.items[0].predicted);
  });

  it('publishes an OpenAPI description of its routes', async () => {
    const doc = json(await app.inject('/api/openapi.json')) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ['/api/health', '/api/model', '/api/predict', '/api/predict/batch', '/api/gallery'])
      expect(Object.keys(doc.paths)).toContain(p);
  });
});

describe('serve a run trained on an image folder', () => {
  let work = '';
  let shapes = '';
  let run: LoadedRun;
  let testCount = 0;
  const cacheHome = process.env.XDG_CACHE_HOME;

  beforeAll(async () => {
    work = tempDir();
    // Decoded folders are cached under $XDG_CACHE_HOME: keep this file's out of the user's cache.
    process.env.XDG_CACHE_HOME = path.join(work, 'cache');
    shapes = path.join(work, 'shapes');
    await writeShapesFolder(shapes, { perClass: 10, seed: 3, minSize: 16, maxSize: 32 });
    const dir = path.join(work, 'run');
    const result = await trainSession(
      resolveConfig({
        model: 'softmax',
        data: shapes,
        imageSize: 16,
        valSplit: 0.2,
        epochs: 1,
        batchSize: 8,
        backend: 'wasm',
        out: dir,
      }),
    );
    testCount = result.data.test;
    run = await loadRun(dir);
  });

  afterAll(() => {
    if (cacheHome === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = cacheHome;
  });

  /** A server over `r` (default: the folder run), closed after `f`. */
  async function withServer(
    f: (server: FastifyInstance) => Promise<void>,
    r: LoadedRun = run,
    opts: Partial<Parameters<typeof buildServer>[0]> = {},
  ) {
    const server = await buildServer({ run: r, maxUploadBytes: MAX, webRoot: null, ...opts });
    try {
      await f(server);
    } finally {
      await server.close();
    }
  }

  it("the gallery and data routes serve the run's own (RGB) test images, not a built-in set", async () => {
    expect(run.metadata.data).toMatchObject({ kind: 'folder', path: shapes, imageSize: 16, channels: 3 });
    expect(testCount).toBe(8);
    const ds = await loadRunData(run.metadata);
    await withServer(async (server) => {
      const g = await server.inject('/api/gallery?count=200');
      expect(g.statusCode, g.body).toBe(200);
      const body = json(g) as {
        total: number;
        items: { index: number; image: string; label: string; predicted: string; correct: boolean }[];
      };
      expect(body.total).toBe(testCount);
      expect(body.items.map((i) => i.index)).toEqual([...Array(testCount).keys()]);
      expect(body.items.map((i) => i.label)).toEqual(Array.from(ds.test.labels, (l) => SHAPE_CLASSES[l]));
      for (const item of body.items) expect(SHAPE_CLASSES).toContain(item.predicted);
      expect(body.items[0].image).toBe('/api/data/test/image/0');

      expect(json(await server.inject('/api/data'))).toMatchObject({
        name: 'shapes',
        classNames: [...SHAPE_CLASSES],
        shape: [16, 16, 3],
        train: ds.train.count,
        test: testCount,
      });

      // Image 0 as an RGB PNG, pixel for pixel the stored test image.
      const one = await server.inject('/api/data/test/image/0');
      expect(one.statusCode).toBe(200);
      expect(one.headers['content-type']).toBe('image/png');
      const { data, info } = await sharp(one.rawPayload).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height, info.channels]).toEqual([16, 16, 3]);
      const expected = Array.from(pixelsAsFloat(ds.test.images, 0, 16 * 16 * 3), (v) => Math.round(v * 255));
      expect(Array.from(data)).toEqual(expected);
      expectError(await server.inject(`/api/data/test/image/${testCount}`), 404, /out of range/);

      const imgs = parseIdx(
        new Uint8Array((await server.inject('/api/data/train/images?limit=5')).rawPayload),
        'images',
        4,
      );
      expect(imgs.dims).toEqual([5, 16, 16, 3]);
      const labels = parseIdx(
        new Uint8Array((await server.inject('/api/data/test/labels')).rawPayload),
        'labels',
        1,
      );
      expect(Array.from(labels.data)).toEqual(Array.from(ds.test.labels));
    });
  });

  it('404 with the reason when the folder is gone, and serves it again once it is back', async () => {
    const moved = `${shapes}-moved`;
    renameSync(shapes, moved);
    try {
      await withServer(
        async (server) => {
          expectError(
            await server.inject('/api/gallery'),
            404,
            /^this run's training data is not available \(.*shapes does not exist.*\); the gallery needs the run's test images$/,
          );
          expectError(await server.inject('/api/data'), 404, /training data is not available/);
          expectError(await server.inject('/api/data/test/image/0'), 404, /training data is not available/);
          expectError(await server.inject('/api/data/train/images'), 404, /training data is not available/);
          // Classifying needs only the model.
          expect((await server.inject('/api/health')).statusCode).toBe(200);
          const p = await server.inject({
            method: 'POST',
            url: '/api/predict',
            payload: png,
            headers: { 'content-type': 'image/png' },
          });
          expect(p.statusCode).toBe(200);
          // The failure is kept for dataRetryMs, then the same server serves the data once it is back.
          renameSync(moved, shapes);
          expect((await server.inject('/api/gallery')).statusCode).toBe(404);
          await new Promise((r) => setTimeout(r, 300));
          expect((await server.inject('/api/gallery')).statusCode).toBe(200);
        },
        run,
        { dataRetryMs: 250 },
      );
    } finally {
      if (!existsSync(shapes)) renameSync(moved, shapes);
    }
  });

  it('404 when the metadata points at a missing folder or records no usable source', async () => {
    const meta = run.metadata;
    const folder = meta.data as Extract<DataSource, { kind: 'folder' }>;
    const missing = path.join(work, 'no-such-folder');
    const variants: [LoadedRun['metadata'], RegExp][] = [
      [{ ...meta, data: { ...folder, path: missing } }, /no-such-folder does not exist/],
      // A run directory from before sources were recorded, trained on no built-in set.
      [{ ...meta, data: undefined }, /records no data source, and 'shapes' is no built-in dataset/],
      [
        { ...meta, data: { kind: 'folder' } as unknown as LoadedRun['metadata']['data'] },
        /unusable data source/,
      ],
    ];
    for (const [metadata, reason] of variants) {
      await withServer(
        async (server) => {
          const r = await server.inject('/api/gallery');
          expectError(r, 404, /^this run's training data is not available \(.*\); the gallery needs/);
          expectError(r, 404, reason);
        },
        { ...run, metadata },
      );
    }
  });
});

describe('imgclf serve (command line)', () => {
  it('rejects a missing run directory and bad flags with one line, exit 2', () => {
    expectCleanError(
      cli(['serve', '--model', path.join(tempDir(), 'nope')]),
      /run directory .* does not exist/,
    );
    expectCleanError(cli(['serve', '--model', '.', '--port', '70000']), /--port must be 0 to 65535/);
    expectCleanError(
      cli(['serve', '--model', '.', '--max-upload-mb', '0']),
      /--max-upload-mb must be positive/,
    );
  });
});

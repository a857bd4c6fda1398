/**
 * Transfer learning (--backbone): a small CNN trained on Fashion-MNIST is the backbone, a
 * generated shapes folder the new task. Heads train on cached features; the run records the
 * backbone and loads back as backbone + head for evaluate, predict and serve; a backbone given
 * by URL comes from a server on 127.0.0.1 and is cached; knn classifies with no training; a
 * backbone that goes missing or changes is a one-line error. A hand-written graph model checks
 * the graph-model path.
 */
import { appendFileSync, cpSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend/index.js';
import { create } from '../src/core/models/index.js';
import { resolveConfig, type TrainConfig } from '../src/core/plan.js';
import { evaluate, type EpochMetrics } from '../src/core/train/loop.js';
import { loadBackbone } from '../src/node/backbone/backbone.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { loadRunWithData } from '../src/node/run/data.js';
import { loadModelFiles, loadRun, saveModel } from '../src/node/run/rundir.js';
import { type SessionResult, trainSession } from '../src/node/session.js';
import { expectServedLabel } from './fixtures/backbone-run.js';
import { writeGraphModel } from './fixtures/graph-model.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

let work = '';
let backbone = '';
let shapes = '';
let cache = '';
const cacheHome = process.env.XDG_CACHE_HOME;

/** SHA-256 of model.json and weights.bin, as a run records its backbone. */
function sha256Of(dir: string): string {
  const h = createHash('sha256');
  h.update(readFileSync(path.join(dir, 'model.json')));
  h.update(readFileSync(path.join(dir, 'weights.bin')));
  return h.digest('hex');
}

/** The metrics that must repeat exactly (times excluded). */
const figures = (h: EpochMetrics[]) =>
  h.map((m) => [m.train_loss, m.train_accuracy, m.test_accuracy, m.test_loss, m.val_accuracy]);

async function train(plan: Partial<TrainConfig>, lines: string[] = []): Promise<SessionResult> {
  return trainSession(resolveConfig({ seed: 0, backend: 'wasm', ...plan }), { log: (m) => lines.push(m) });
}

beforeAll(async () => {
  await selectBackend('wasm');
  work = tempDir('imgclf-transfer-');
  backbone = path.join(work, 'backbone');
  // The backbone: a small CNN, one epoch of Fashion-MNIST (235 steps of 256), from the usual
  // data cache. Its penultimate layer (dense 128) gives the features.
  const r = await train({
    model: 'cnn',
    epochs: 1,
    batchSize: 256,
    augment: false,
    modelOptions: { widths: [8, 16] },
    out: backbone,
  });
  expect(r.testAccuracy).toBeGreaterThan(0.75);
  // Everything after this is cached here, away from the user's cache.
  cache = path.join(work, 'cache');
  process.env.XDG_CACHE_HOME = cache;
  shapes = path.join(work, 'shapes');
  // 50 per class; --val-split 0.25 holds out 50 of the 200 as the test split.
  await writeShapesFolder(shapes, { perClass: 50, seed: 3 });
});

afterAll(() => {
  if (cacheHome === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = cacheHome;
});

describe('a head on an imgclf run as the backbone', () => {
  let first: SessionResult;
  const head = () => path.join(work, 'head');

  it('trains a softmax head on the features, recording the backbone; a second run hits the feature cache', async () => {
    const lines: string[] = [];
    first = await train({ backbone, head: 'softmax', data: shapes, valSplit: 0.25, out: head() }, lines);
    const log = lines.join('\n');
    expect(log).toMatch(/backbone .*imgclf-run.*input 28x28x1 in \[0,1\], 128 features/);
    expect(log).toMatch(/features: computed for 200 images/);
    expect(first.data.featureCache).toBe('miss');
    expect(first.data.shape).toEqual([28, 28, 1]);
    expect(first.testAccuracy).toBeGreaterThanOrEqual(0.85);

    const meta = JSON.parse(readFileSync(path.join(head(), 'metadata.json'), 'utf8'));
    expect(meta.model).toBe('softmax');
    expect(meta.inputShape).toEqual([28, 28, 1]);
    expect(meta.data).toMatchObject({ kind: 'folder', imageSize: 28, channels: 1 });
    expect(meta.backbone).toMatchObject({
      source: backbone,
      format: 'layers-model',
      family: 'imgclf-run',
      sha256: sha256Of(backbone),
      range: '0,1',
      features: 128,
    });
    // The run directory stores the head alone: it takes the 128 features.
    const model = JSON.parse(readFileSync(path.join(head(), 'model.json'), 'utf8'));
    expect(JSON.stringify(model.modelTopology)).toContain('[null,1,1,128]');

    const again: string[] = [];
    const second = await train(
      { backbone, head: 'softmax', data: shapes, valSplit: 0.25, out: path.join(work, 'head-again') },
      again,
    );
    expect(again.join('\n')).toMatch(/features: cache hit .* \(200 images, 128 features per image\)/);
    expect(second.data.featureCache).toBe('hit');
    expect(figures(second.history)).toEqual(figures(first.history));
  });

  it('loadRun gives backbone + head: evaluate on the images repeats the test accuracy', async () => {
    const { run, dataset } = await loadRunWithData(head());
    expect(run.metadata.backbone?.sha256).toBe(sha256Of(backbone));
    expect(dataset.shape).toEqual([28, 28, 1]);
    const r = evaluate(run.model, dataset.test, { shape: run.metadata.inputShape });
    expect(r.accuracy).toBe(first.testAccuracy);
    run.model.dispose();
  });

  it('predict (CLI, on image files) and serve answer from the backbone run', async () => {
    const fresh = path.join(work, 'fresh');
    const files = await writeShapesFolder(fresh, { perClass: 3, seed: 77 });
    const r = cli(['predict', '--run', head(), ...files, '--json'], { XDG_CACHE_HOME: cache });
    expect(r.code, r.stderr).toBe(0);
    const predictions = (r.json as { predictions: { file: string; label: string }[] }).predictions;
    expect(predictions).toHaveLength(files.length);
    const right = predictions.filter((p) => path.basename(path.dirname(p.file)) === p.label).length;
    expect(right).toBeGreaterThanOrEqual(files.length - 3);

    await expectServedLabel(head(), files[0], 'image/png', predictions[0].label);
  });
});

describe('a backbone given by URL', () => {
  let server: Server;
  let url = '';
  const requests: string[] = [];

  beforeAll(async () => {
    // A static server for the run's model.json and weights.bin, and nothing else.
    server = createServer((req, res) => {
      const name = new URL(req.url ?? '/', 'http://localhost').pathname.slice(1);
      requests.push(name);
      if (name !== 'model.json' && name !== 'weights.bin') {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.end(readFileSync(path.join(backbone, name)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model.json`;
  });

  afterAll(() => {
    server.close();
  });

  it('is downloaded with tfjs, hashed like the same files on disk, and later loads from the cache', async () => {
    const out = path.join(work, 'url-head');
    const r = await train({ backbone: url, data: shapes, valSplit: 0.25, out });
    expect(requests).toEqual(expect.arrayContaining(['model.json', 'weights.bin']));
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta.backbone).toMatchObject({ source: url, sha256: sha256Of(backbone), family: 'imgclf-run' });
    // Same bytes, same hash: the features of the local run are reused.
    expect(r.data.featureCache).toBe('hit');
    expect(r.testAccuracy).toBeGreaterThanOrEqual(0.85);

    await new Promise((resolve) => server.close(resolve));
    // The server is gone: evaluate (CLI) finds the backbone in the cache.
    const ev = cli(['evaluate', '--run', out, '--json'], { XDG_CACHE_HOME: cache });
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json?.test_accuracy).toBe(r.testAccuracy);
    // Without the cache it must download again, and says it cannot, in one line.
    expectCleanError(
      cli(['evaluate', '--run', out], { XDG_CACHE_HOME: path.join(work, 'empty-cache') }),
      /backbone http:\/\/127\.0\.0\.1:\d+\/model\.json is neither in the cache nor downloadable/,
    );
  });
});

describe('--head knn', () => {
  it('classifies few-shot by nearest neighbours, with no training', async () => {
    // Five pictures per class to learn from, twenty per class to test on.
    const fewShot = path.join(work, 'few-shot');
    await writeShapesFolder(path.join(fewShot, 'train'), { perClass: 5, seed: 11 });
    await writeShapesFolder(path.join(fewShot, 'test'), { perClass: 20, seed: 12 });
    const out = path.join(work, 'knn');
    const lines: string[] = [];
    const r = await train({ backbone, head: 'knn', data: fewShot, out, modelOptions: { k: 3 } }, lines);
    expect(r.history).toHaveLength(1);
    expect(r.testAccuracy).toBeGreaterThanOrEqual(0.75);
    expect(lines.join('\n')).toMatch(
      /training a knn head on 128 backbone features of few-shot \(20 train \/ 80 test/,
    );
    // Nothing to resume: no checkpoint. The memory is the head's weights: 20 x 128 + 20 labels.
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.files).some((f) => f.startsWith('checkpoint/'))).toBe(false);
    expect(readFileSync(path.join(out, 'weights.bin')).length).toBe((20 * 128 + 20) * 4);
    const { run, dataset } = await loadRunWithData(out);
    expect(run.model.trainableVariables).toHaveLength(0);
    expect(evaluate(run.model, dataset.test, { shape: run.metadata.inputShape }).accuracy).toBe(
      r.testAccuracy,
    );
    run.model.dispose();
  });
});

describe('the feature cache', () => {
  it('computes only the images a folder gained', async () => {
    const folder = path.join(work, 'growing');
    cpSync(shapes, folder, { recursive: true });
    const first = await train({ backbone, head: 'knn', data: folder, out: path.join(work, 'grow-1') });
    expect(first.data.featureCache).toBe('miss');
    const extra = await writeShapesFolder(path.join(work, 'extra'), { perClass: 1, seed: 5 });
    for (const file of extra)
      cpSync(file, path.join(folder, path.basename(path.dirname(file)), `new-${path.basename(file)}`));
    const lines: string[] = [];
    const second = await train(
      { backbone, head: 'knn', data: folder, out: path.join(work, 'grow-2') },
      lines,
    );
    expect(second.data.featureCache).toBe('partial');
    expect(lines.join('\n')).toMatch(/features: 200 of 204 images from the cache, 4 computed/);
  });
});

describe('knn', () => {
  it('memorizes examples as its weights; apply gives log vote shares; no memory = uniform', async () => {
    const net = create('knn', { inputShape: [1, 1, 2], numClasses: 3, seed: 0, options: { k: 1 } });
    expect(net.trainableVariables).toHaveLength(0);
    const probe = tf.tensor4d([1, 0.1, 0, 1], [2, 1, 1, 2]);
    const uniform = tf.tidy(() => tf.softmax(net.apply(probe) as tf.Tensor2D).arraySync() as number[][]);
    expect(uniform[0].map((p) => p.toFixed(3))).toEqual(['0.333', '0.333', '0.333']);
    net.memorize!(Float32Array.from([2, 0, 0, 3, -1, -1]), Uint8Array.from([2, 0, 1]), 3);
    const p = tf.tidy(() => tf.softmax(net.apply(probe) as tf.Tensor2D).arraySync() as number[][]);
    expect(p.map((row) => row.indexOf(Math.max(...row)))).toEqual([2, 0]);
    expect(p[0][2]).toBeGreaterThan(0.99);
    const dir = tempDir();
    await saveModel(net, dir);
    const loaded = await loadModelFiles(dir, 'knn');
    expect(tf.tidy(() => loaded.apply(probe).arraySync())).toEqual(
      tf.tidy(() => net.apply(probe).arraySync()),
    );
    expect(() => create('knn', { inputShape: [1, 1, 2], numClasses: 3, seed: 0, options: { k: 0 } })).toThrow(
      /knn option 'k' must be/,
    );
    probe.dispose();
    net.dispose();
    loaded.dispose();
  });
});

describe('a backbone that changes or goes missing after training', () => {
  it('is a one-line error at evaluate', async () => {
    const copy = path.join(work, 'backbone-copy');
    cpSync(backbone, copy, { recursive: true });
    const out = path.join(work, 'fragile');
    await train({ backbone: copy, head: 'knn', data: shapes, out });
    expect(cli(['evaluate', '--run', out], { XDG_CACHE_HOME: cache }).code).toBe(0);

    appendFileSync(path.join(copy, 'weights.bin'), Buffer.from([0]));
    expectCleanError(
      cli(['evaluate', '--run', out], { XDG_CACHE_HOME: cache }),
      new RegExp(
        `backbone ${copy} has changed since the run was trained \\(sha256 [0-9a-f]{12}, the run was trained with ${sha256Of(backbone).slice(0, 12)}\\)`,
      ),
    );
    rmSync(copy, { recursive: true });
    expectCleanError(
      cli(['evaluate', '--run', out], { XDG_CACHE_HOME: cache }),
      new RegExp(`the run's backbone ${copy} is missing`),
    );
  });
});

describe('backbone options', () => {
  it('a graph model: the output or a named node, its input size and range', async () => {
    const dir = path.join(work, 'graph');
    writeGraphModel(dir);
    const b = await loadBackbone({ source: dir, size: 32, range: '-1,1' });
    expect(b.record).toMatchObject({
      format: 'graph-model',
      family: 'graph',
      inputShape: [32, 32, 1],
      range: '-1,1',
      layer: 'features',
      features: 4,
    });
    b.dispose();
    // A free input size defaults to 224; a named node gives its (flattened) output.
    const relu = await loadBackbone({ source: path.join(dir, 'model.json'), layer: 'relu' });
    expect(relu.record).toMatchObject({
      inputShape: [224, 224, 1],
      range: '0,1',
      layer: 'relu',
      features: 112 * 112 * 4,
    });
    relu.dispose();
    await expect(loadBackbone({ source: dir, layer: 'nope', size: 32 })).rejects.toThrow(/node 'nope'/);

    // A head on it trains and loads back like any run.
    const out = path.join(work, 'graph-head');
    const r = await train({
      backbone: dir,
      backboneSize: 32,
      head: 'mlp',
      data: shapes,
      valSplit: 0.25,
      out,
      epochs: 2,
    });
    expect(r.history).toHaveLength(2);
    const run = await loadRun(out);
    expect(run.metadata.inputShape).toEqual([32, 32, 1]);
    run.model.dispose();
  });

  it('layers models: a named feature layer; fixed input sizes cannot be overridden', async () => {
    const b = await loadBackbone({ source: backbone, layer: 'max_pooling2d_MaxPooling2D2' });
    expect(b.record).toMatchObject({ layer: 'max_pooling2d_MaxPooling2D2', features: 7 * 7 * 16 });
    b.dispose();
    await expect(loadBackbone({ source: backbone, layer: 'nope' })).rejects.toThrow(
      /has no layer 'nope'; its layers: conv2d/,
    );
    await expect(loadBackbone({ source: backbone, size: 32 })).rejects.toThrow(
      /takes 28x28 images; --backbone-size 32 does not fit/,
    );
  });

  it("the plan: --head needs --backbone, --model means the head, image flags are the backbone's", () => {
    expect(() => resolveConfig({ head: 'mlp' })).toThrow(/--head .* give --backbone too/);
    expect(() => resolveConfig({ backboneSize: 224 })).toThrow(/--backbone-size goes with --backbone/);
    expect(resolveConfig({ backbone: 'b', model: 'mlp' })).toMatchObject({ model: 'mlp', head: 'mlp' });
    expect(() => resolveConfig({ backbone: 'b', model: 'mlp', head: 'knn' })).toThrow(/disagree/);
    expect(() => resolveConfig({ backbone: 'b', head: 'cnn' as 'mlp' })).toThrow(
      /--head must be one of softmax, mlp, knn/,
    );
    expect(() => resolveConfig({ backbone: 'b', data: 'x', imageSize: 64 })).toThrow(/--backbone-size/);
    expect(resolveConfig({ backbone: 'b', data: 'folder' }).imageSize).toBeUndefined();
    const plan = resolveConfig({ backbone: 'b' });
    expect(plan).toMatchObject({ model: 'softmax', head: 'softmax', optimizer: 'adam', lr: 0.01 });
    // --resume re-resolves a recorded plan.
    expect(resolveConfig({ ...plan })).toEqual(plan);
  });
});

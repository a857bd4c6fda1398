/**
 * The library API (src/index.ts) in-process: the README's example, defaults from the plan,
 * the backend, data from folders, runs saved in code and read by the CLI (evaluate, predict,
 * serve), and `train`. test/package.test.ts checks the same entry points as an installed package.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as core from '../src/core/index.js';
import {
  createModel,
  evaluate,
  fit,
  type LoadedData,
  listModels,
  loadDataset,
  loadFashionMnist,
  loadRun,
  loadRunData,
  modelDefaults,
  predict,
  predictImage,
  ready,
  resolvePlan,
  type Run,
  saveRun,
  train,
  UserError,
  useBackend,
  validationSplit,
} from '../src/index.js';
import { pixelsAsFloat } from '../src/core/data/dataset.js';
import { sizeToData } from '../src/core/plan.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { BIN, cli, tempDir } from './helpers.js';

const work = tempDir('imgclf-api-');
// Decoded image folders are cached per user: keep this file's out of the real cache.
process.env.XDG_CACHE_HOME = path.join(work, 'cache');

/** The first `n` examples of a split. */
function head(split: core.Split, n: number, row: number): core.Split {
  return { images: split.images.subarray(0, n * row), labels: split.labels.subarray(0, n), count: n };
}

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('imgclf API', () => {
  let data: LoadedData;

  it('a model built before any backend was chosen starts on cpu and trains on wasm', async () => {
    // The first tensor work of this process: tfjs picks the cpu backend imgclf registered.
    const early = createModel('softmax', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
    expect(tf.getBackend()).toBe('cpu');
    data = await loadFashionMnist();
    expect(tf.getBackend()).toBe('wasm');
    const row = 28 * 28;
    const history = await fit(early, head(data.train, 2048, row), head(data.test, 500, row), { epochs: 1 });
    expect(tf.getBackend()).toBe('wasm');
    expect(history[0].test_accuracy).toBeGreaterThan(0.5);
    early.dispose();
  });

  it("runs the README's example: load, create, fit, evaluate, predict", async () => {
    expect(data).toMatchObject({ name: 'fashion-mnist', shape: [28, 28, 1], heldOut: false });
    expect(data.classNames).toHaveLength(10);
    expect(data.train.count).toBe(60000);
    expect(data.source).toMatchObject({ kind: 'idx', dataset: 'fashion-mnist' });
    const model = createModel('softmax', { inputShape: data.shape, numClasses: 10, seed: 0 });
    const history = await fit(model, data.train, data.test, { epochs: 1, lr: 0.1, batchSize: 256 });
    const { accuracy, loss, predicted } = await evaluate(model, data.test);
    const [first] = await predict(model, data.test, { count: 6 });
    expect(history).toHaveLength(1);
    // The seed's first epoch, as `imgclf train` prints it (README).
    expect(history[0].test_accuracy).toBeCloseTo(0.7916, 3);
    expect(accuracy).toBe(history[0].test_accuracy);
    expect(loss).toBeCloseTo(history[0].test_loss, 5);
    expect(predicted).toHaveLength(10000);
    expect(first).toMatchObject({ index: 0, true: data.test.labels[0], label: predicted[0] });
    expect(first.probabilities).toHaveLength(10);
    expect(first.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    expect(first.labelName).toBeUndefined();
    const named = await predict(model, data.test, { count: 2, offset: 3, classNames: data.classNames });
    expect(named.map((p) => p.index)).toEqual([3, 4]);
    expect(named[0].trueName).toBe(data.classNames[data.test.labels[3]]);
    expect(named[0].labelName).toBe(data.classNames[named[0].label]);
    model.dispose();
  });

  it("fit trains with the model's own defaults: one source of defaults", async () => {
    const row = 28 * 28;
    const model = createModel('mlp', { inputShape: data.shape, numClasses: 10, seed: 1 });
    const seen: core.TrainConfig[] = [];
    const batches: number[] = [];
    await fit(model, head(data.train, 1024, row), head(data.test, 256, row), {
      epochs: 1,
      onEpoch: (_m, info) => void seen.push(info.plan),
      onBatch: (_e, done) => void batches.push(done),
    });
    const d = modelDefaults('mlp');
    // As imgclf train: the defaulted batch size is sized to the 1024 training images.
    const { plan } = sizeToData(resolvePlan({ model: 'mlp', epochs: 1 }), 1024);
    expect(seen[0]).toEqual(plan);
    expect(seen[0]).toMatchObject({ optimizer: d.optimizer, lr: d.lr, epochs: 1 });
    expect(batches.at(-1)).toBe(Math.ceil(1024 / plan.batchSize));
    expect(model.lastFit).toEqual({ plan, keptEpoch: 1 });
    expect(listModels().find((m) => m.name === 'mlp')?.defaults).toEqual(d);
    model.dispose();
  });

  it('fit takes a validation split, stops early with patience, and stops when asked', async () => {
    const row = 28 * 28;
    const small = { ...data, train: head(data.train, 3000, row) };
    const { train: t, val } = validationSplit(small, 0.2, 0);
    expect(t.count + val.count).toBe(3000);
    const model = createModel('softmax', { inputShape: data.shape, numClasses: 10 });
    const history = await fit(model, t, head(data.test, 500, row), { epochs: 2, val });
    expect(history.map((m) => m.epoch)).toEqual([1, 2]);
    expect(history[1].val_accuracy).toBeGreaterThan(0.5);
    expect(model.lastFit?.plan.valSplit).toBeCloseTo(0.2, 2);
    // A learning rate this high makes validation accuracy jump about: patience 1 stops early.
    const jumpy = await fit(model, t, val, { epochs: 30, lr: 5, val, patience: 1 });
    expect(jumpy.length).toBeLessThan(30);
    const { keptEpoch, stoppedEarly } = model.lastFit!;
    expect(stoppedEarly).toBe(jumpy.length);
    const best = Math.max(...jumpy.map((m) => m.val_accuracy!));
    expect(jumpy.find((m) => m.epoch === keptEpoch)?.val_accuracy).toBe(best);
    expect((await evaluate(model, val)).accuracy).toBe(best);
    await expect(fit(model, t, val, { patience: 2 })).rejects.toThrow(/pass a val split too/);
    let calls = 0;
    const stopped = await fit(model, t, val, { epochs: 3, shouldStop: () => ++calls > 5 });
    expect(stopped).toEqual([]);
    model.dispose();
  });

  it('refuses bad input with one clear line', async () => {
    const model = createModel('softmax', { inputShape: data.shape, numClasses: 10 });
    await expect(fit(model, data.train, data.test, { epocs: 1 } as core.FitOptions)).rejects.toThrow(
      /unknown fit option 'epocs'/,
    );
    await expect(fit(model, data.train, data.test, { lr: -1 })).rejects.toThrow(UserError);
    const wrong = createModel('softmax', { inputShape: [14, 14, 1], numClasses: 10 });
    await expect(evaluate(wrong, data.test)).rejects.toThrow(/the model takes 14x14x1 images/);
    expect(() => createModel('nope', { inputShape: data.shape, numClasses: 10 })).toThrow(
      /unknown model 'nope'/,
    );
    expect(() => createModel('softmax', { inputShape: data.shape, numClasses: 1 })).toThrow(/numClasses/);
    await expect(loadDataset({ dataset: 'cifar' })).rejects.toThrow(/unknown dataset 'cifar'/);
    model.dispose();
    wrong.dispose();
  });

  describe('a run saved in code', () => {
    const dir = path.join(work, 'run');
    let run: Run;
    let accuracy: number;
    let server: ChildProcess | undefined;

    beforeAll(async () => {
      const model = createModel('softmax', { inputShape: data.shape, numClasses: 10, seed: 0 });
      const history = await fit(model, data.train, data.test, { epochs: 1, lr: 0.1 });
      accuracy = history[0].test_accuracy;
      // The plan recorded is the one fit resolved (model.lastFit).
      run = await saveRun(dir, { model, data, history });
    });

    afterAll(() => {
      server?.kill('SIGTERM');
    });

    it('holds what the CLI writes, and loads back with its class names', async () => {
      for (const f of ['model.json', 'weights.bin', 'metadata.json', 'metrics.jsonl', 'manifest.json'])
        expect(existsSync(path.join(dir, f)), f).toBe(true);
      const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
      expect(meta).toMatchObject({
        format: 'imgclf-run/1',
        model: 'softmax',
        dataset: 'fashion-mnist',
        inputShape: [28, 28, 1],
        preprocessing: { scale: 255, invertLightBackground: true, resize: 'contain' },
        data: { kind: 'idx', dataset: 'fashion-mnist' },
        backend: 'wasm',
        testAccuracy: accuracy,
        config: JSON.parse(
          JSON.stringify({ ...resolvePlan({ epochs: 1, lr: 0.1, batchSize: 256 }), out: dir }),
        ),
      });
      const loaded = await loadRun(dir);
      expect(loaded.history).toEqual(run.history);
      expect(loaded.model.classNames).toEqual(data.classNames);
      expect((await evaluate(loaded.model, data.test)).accuracy).toBe(accuracy);
      const [p] = await predict(loaded.model, data.test, { count: 1 });
      expect(p.trueName).toBe(data.classNames[data.test.labels[0]]);
      const own = await loadRunData(loaded);
      expect(own.test.count).toBe(10000);
      expect(own.source).toEqual(data.source);
      loaded.model.dispose();
    });

    it('imgclf evaluate and predict --run accept it', () => {
      const ev = cli(['evaluate', '--run', dir, '--json']);
      expect(ev.code, ev.stderr).toBe(0);
      expect(ev.json?.test_accuracy).toBe(accuracy);
      const pr = cli(['predict', '--run', dir, '--count', '3', '--json']);
      expect(pr.code, pr.stderr).toBe(0);
      expect((pr.json?.predictions as unknown[]).length).toBe(3);
    });

    it('imgclf serve --run serves it, with the page', async () => {
      const child = spawn(process.execPath, [BIN, 'serve', '--run', dir, '--port', '0', '--json'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      server = child;
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (b: Buffer) => {
          out += b.toString();
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line) resolve((JSON.parse(line) as { url: string }).url);
        });
        child.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
      });
      const model = (await (await fetch(`${url}/api/model`)).json()) as Record<string, unknown>;
      expect(model).toMatchObject({ model: 'softmax', classNames: data.classNames, testAccuracy: accuracy });
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<html/i);
    });

    it('classifies a picture file as imgclf predict FILE does', async () => {
      const row = 28 * 28;
      const bytes = Uint8Array.from(pixelsAsFloat(data.test.images, 0, row), (v) => Math.round(v * 255));
      const png = await sharp(bytes, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer();
      const file = path.join(work, 'test0.png');
      await sharp(png).toFile(file);
      const p = await predictImage(run, file, { topK: 2 });
      const [ref] = await predict(run.model, data.test, { count: 1 });
      expect(p.label).toBe(ref.label);
      expect(p.labelName).toBe(data.classNames[ref.label]);
      expect(p.top).toHaveLength(2);
      expect(p.inverted).toBe(false);
      const cliP = cli(['predict', '--run', dir, file, '--json']);
      expect(cliP.code, cliP.stderr).toBe(0);
      expect((cliP.json?.predictions as { label: string }[])[0].label).toBe(p.labelName);
    });

    it('reads SVG only when allowed', async () => {
      const svg = new TextEncoder().encode(
        '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><circle cx="14" cy="14" r="9" fill="#fff"/></svg>',
      );
      await expect(predictImage(run, svg)).rejects.toThrow(
        /not an image imgclf can read \(.* or AVIF expected\)/,
      );
      const p = await predictImage(run, svg, { allowSvg: true });
      expect(p.top.length).toBeGreaterThan(0);
    });

    it('refuses to overwrite a run unless forced', async () => {
      await expect(saveRun(dir, { model: run.model, data })).rejects.toThrow(/already holds a run/);
      const again = await saveRun(dir, { model: run.model, data, force: true });
      expect(again.history).toEqual([]);
      expect((await loadRun(dir)).history).toEqual([]);
    });
  });

  it('loads an image folder with the CLI defaults, and trains on it', async () => {
    const folder = path.join(work, 'shapes');
    await writeShapesFolder(folder, { perClass: 20, seed: 1, classes: ['circle', 'square'] });
    const shapes = await loadDataset({ data: folder });
    expect(shapes).toMatchObject({ classNames: ['circle', 'square'], shape: [28, 28, 3], heldOut: true });
    expect(shapes.source).toMatchObject({ kind: 'folder', path: folder, channels: 3, valSplit: 0.1 });
    expect(shapes.train.count + shapes.test.count).toBe(40);
    const model = createModel('softmax', { inputShape: shapes.shape, numClasses: 2 });
    const history = await fit(model, shapes.train, shapes.test, { epochs: 3 });
    expect(history).toHaveLength(3);
    const saved = await saveRun(path.join(work, 'shapes-run'), { model, data: shapes, history });
    expect(saved.metadata.preprocessing).toEqual({
      scale: 255,
      invertLightBackground: false,
      resize: 'fill',
    });
    expect(saved.metadata.config).toMatchObject({ dataKind: 'folder', data: folder, imageSize: 28 });
    model.dispose();
  });

  it('train() is imgclf train in code, on the backend chosen with useBackend', async () => {
    expect(await useBackend('cpu')).toBe('cpu');
    expect(await ready()).toBe('cpu');
    const epochs: number[] = [];
    const out = path.join(work, 'trained');
    const result = await train({ epochs: 1, out, onEpoch: (m) => void epochs.push(m.epoch) });
    expect(result).toMatchObject({ dir: out, backend: 'cpu', interrupted: false });
    expect(result.history[0].test_accuracy).toBeCloseTo(0.7916, 2);
    expect(epochs).toEqual([1]);
    expect(existsSync(path.join(out, 'report.html'))).toBe(true);
    const run = await loadRun(out);
    expect(run.metadata.config).toMatchObject({ backend: 'cpu', epochs: 1 });
    await expect(train({ out })).rejects.toThrow(/already holds a run/);
    await expect(train({ resume: out, lr: 1 })).rejects.toThrow(
      /only epochs, backend, dataDir, fineTuneEpochs may change/,
    );
    expect(await useBackend('wasm')).toBe('wasm');
    run.model.dispose();
  });
});

/**
 * Fine-tuning a TensorFlow.js layers backbone (--fine-tune N). The backbone is a small conv net
 * with batch normalization, pretrained here on 16x16 shapes; the new task is the same shapes
 * with their colours inverted (a domain the backbone has not seen). A run trains the head on
 * cached features, then the last N weighted layers with it on the images: both phases are in
 * the history, only those layers' weights change and batch-norm statistics stay; the run holds
 * the whole model, which evaluate, predict, export (ONNX, with parity) and a resume take as any
 * run. Wrong uses are one line each, exit 2.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { epochLine } from '../src/cli/commands/train.js';
import { createOptimizer, withRateFactors } from '../src/core/optim/optimizers.js';
import { resolveConfig, type TrainConfig } from '../src/core/plan.js';
import { GraphBuilder, floatValueInfo } from '../src/node/export/graph.js';
import { loadDataset } from '../src/node/data/load.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { loadRun } from '../src/node/run/rundir.js';
import { planOfRun, type SessionResult, trainSession } from '../src/node/session.js';
import { expectServedLabel } from './fixtures/backbone-run.js';
import { mobileNetLike } from './fixtures/mobilenet.js';
import { encodeTiny, twoConvs } from './fixtures/onnx-backbone.js';
import { cli, type CliResult, expectCleanError, tempDir } from './helpers.js';
import { saveLayersFolder } from './fixtures/layers-folder.js';

const SIZE = 16;
let work = '';
let cache = '';
let backbone = '';
let task = '';
/** A MobileNetV2-style functional layers model (untrained). */
let functional = '';
const savedCache = process.env.XDG_CACHE_HOME;

const run = (args: string[]): CliResult => cli(args, { XDG_CACHE_HOME: cache });

async function train(plan: Partial<TrainConfig>, lines: string[] = []): Promise<SessionResult> {
  return trainSession(resolveConfig({ seed: 0, backend: 'wasm', ...plan }), { log: (m) => lines.push(m) });
}

/**
 * The backbone: conv-BN-pool twice, a 32-unit dense layer (the features: the input of the last
 * Dense) and a classifier, trained a few epochs on 16x16 shapes in their own colours.
 */
async function pretrainedBackbone(dir: string, shapes: string): Promise<void> {
  const { dataset } = await loadDataset({
    source: {
      kind: 'folder',
      path: shapes,
      imageSize: SIZE,
      channels: 3,
      resizeMode: 'fill',
      valSplit: 0.1,
      seed: 0,
    },
  });
  const model = tfl.sequential({
    layers: [
      tfl.layers.conv2d({
        inputShape: [SIZE, SIZE, 3],
        filters: 8,
        kernelSize: 3,
        padding: 'same',
        activation: 'relu',
        seed: 1,
      } as never),
      tfl.layers.batchNormalization(),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.batchNormalization(),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 32, activation: 'relu' }),
      tfl.layers.dense({ units: dataset.classNames.length, activation: 'softmax' }),
    ],
  });
  model.compile({
    optimizer: tf.train.adam(0.01),
    loss: 'sparseCategoricalCrossentropy',
  });
  const n = dataset.train.count;
  const x = tf.tensor4d(
    Float32Array.from(dataset.train.images as Uint8Array, (v) => v / 255),
    [n, SIZE, SIZE, 3],
  );
  const y = tf.tensor1d(Float32Array.from(dataset.train.labels));
  await model.fit(x, y, { epochs: 8, batchSize: 32, shuffle: false, verbose: 0 });
  x.dispose();
  y.dispose();
  await saveLayersFolder(model, dir);
  model.dispose();
}

/** The shapes with inverted colours: the new task's folder (PNG files). */
async function invertedShapes(from: string, to: string): Promise<string[]> {
  const files: string[] = [];
  for (const cls of readdirSync(from)) {
    mkdirSync(path.join(to, cls), { recursive: true });
    for (const f of readdirSync(path.join(from, cls))) {
      const out = path.join(to, cls, `${path.parse(f).name}.png`);
      await sharp(path.join(from, cls, f))
        .flatten({ background: '#ffffff' })
        .negate()
        .png()
        .toFile(out);
      files.push(out);
    }
  }
  return files;
}

/** Each weight of a model.json folder's layers, by layer and weight name (`conv2d_1/kernel`). */
async function weightsOf(dir: string): Promise<Map<string, Float32Array>> {
  const json = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const bytes = readFileSync(path.join(dir, 'weights.bin'));
  const specs = json.weightsManifest.flatMap((g: { weights: tf.io.WeightsManifestEntry[] }) => g.weights);
  const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
  const tensors = tf.io.decodeWeights(data, specs);
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(tensors)) {
    out.set(name, t.dataSync() as Float32Array);
    t.dispose();
  }
  return out;
}

const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** The features layer's name of each pretrained weight, as the backbone names it. */
function layerOf(weight: string): string {
  return weight.split('/')[0];
}

/** SHA-256 of model.json and weights.bin, as a run records its backbone. */
function sha256Of(dir: string): string {
  const h = createHash('sha256');
  h.update(readFileSync(path.join(dir, 'model.json')));
  h.update(readFileSync(path.join(dir, 'weights.bin')));
  return h.digest('hex');
}

beforeAll(async () => {
  await selectBackend('wasm');
  work = tempDir('imgclf-fine-tune-');
  cache = path.join(work, 'cache');
  process.env.XDG_CACHE_HOME = cache;
  const shapes = path.join(work, 'shapes');
  await writeShapesFolder(shapes, { perClass: 40, seed: 3, minSize: 16, maxSize: 32 });
  backbone = path.join(work, 'backbone');
  await pretrainedBackbone(backbone, shapes);
  const fresh = path.join(work, 'fresh');
  await writeShapesFolder(fresh, { perClass: 40, seed: 9, minSize: 16, maxSize: 32 });
  await writeShapesFolder(path.join(work, 'fresh-test'), {
    perClass: 10,
    seed: 10,
    minSize: 16,
    maxSize: 32,
  });
  task = path.join(work, 'inverted');
  await invertedShapes(fresh, task);
  functional = path.join(work, 'functional');
  const m = mobileNetLike([SIZE, SIZE, 3], 4);
  await saveLayersFolder(m, functional);
  m.dispose();
});

afterAll(() => {
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
});

describe('--fine-tune N on a layers backbone', () => {
  let result: SessionResult;
  const out = () => path.join(work, 'tuned');

  it('trains the head on features, then the last 2 weighted layers with it; only those change', async () => {
    const lines: string[] = [];
    result = await train(
      { backbone, data: task, holdOut: 0.25, epochs: 3, fineTune: '2', fineTuneEpochs: 2, out: out() },
      lines,
    );
    const log = lines.join('\n');
    expect(log).toMatch(
      /fine-tune: after 3 epochs of the softmax head on features, the last 2 weighted layers/,
    );
    expect(log).toMatch(
      /head at lr 0\.005, the backbone layers at lr 0\.00005 \(earliest\) to 0\.0005 \(last\); batch-norm statistics frozen/,
    );
    expect(result.history.map((m) => [m.epoch, m.phase])).toEqual([
      [1, 'head'],
      [2, 'head'],
      [3, 'head'],
      [4, 'fine-tune'],
      [5, 'fine-tune'],
    ]);
    const metrics = readFileSync(path.join(out(), 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.phase)).toEqual(['head', 'head', 'head', 'fine-tune', 'fine-tune']);
    expect(result.fineTune).toMatchObject({ layers: 2, headEpochs: 3, epochs: 2, bn: false });
    // The printed epoch lines and the report say which phase each epoch was.
    expect(result.history.map((m) => epochLine(m, 5, 'en').split(/\s+/).slice(0, 3).join(' '))).toEqual([
      'epoch 1/5 head',
      'epoch 2/5 head',
      'epoch 3/5 head',
      'epoch 4/5 fine-tune',
      'epoch 5/5 fine-tune',
    ]);
    const report = readFileSync(path.join(out(), 'report.html'), 'utf8');
    expect(report).toContain('3 (head)');
    expect(report).toContain('4 (fine-tune)');

    // The run holds the whole model and says where it came from; there is no backbone to load.
    const meta = JSON.parse(readFileSync(path.join(out(), 'metadata.json'), 'utf8'));
    expect(meta.backbone).toBeUndefined();
    expect(meta.fineTuned).toMatchObject({
      backbone: { source: backbone, sha256: sha256Of(backbone), format: 'layers-model' },
      layers: 2,
      headEpochs: 3,
      epochs: 2,
      bn: false,
    });
    expect(meta.config).toMatchObject({ fineTune: '2', fineTuneEpochs: 2, backbone });
    const unfrozen: string[] = meta.fineTuned.unfrozen;
    expect(unfrozen).toHaveLength(2);
    // The last two layers with weights up to the features: the second batch norm and dense 32.
    expect(unfrozen[0]).toMatch(/^batch_normalization/);
    expect(unfrozen[1]).toMatch(/^dense/);

    const before = await weightsOf(backbone);
    const after = await weightsOf(out());
    let compared = 0;
    for (const [name, values] of before) {
      const tuned = after.get(name);
      if (!tuned) continue; // the backbone's own classifier is not part of the model
      compared++;
      const stats = /moving_(mean|variance)/.test(name);
      if (unfrozen.includes(layerOf(name)) && !stats) expect(same(values, tuned), name).toBe(false);
      else expect(same(values, tuned), name).toBe(true);
    }
    // conv (2), bn (4), conv (2), bn (4), dense (2): 14 weights of the backbone in the model.
    expect(compared).toBe(14);
    // The head, renamed inside the model, is there too.
    expect([...after.keys()].some((n) => n.startsWith('head_'))).toBe(true);
  });

  it('loads as one model: evaluate and predict (CLI) repeat what training reported', async () => {
    const loaded = await loadRun(out());
    expect(loaded.backbone).toBeUndefined();
    const ev = run(['evaluate', '--run', out(), '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json?.test_accuracy).toBe(result.testAccuracy);

    const pictures = readdirSync(path.join(task, 'circle'))
      .slice(0, 3)
      .map((f) => path.join(task, 'circle', f));
    const p = run(['predict', '--run', out(), ...pictures, '--json']);
    expect(p.code, p.stderr).toBe(0);
    const labels = (p.json as { predictions: { label: string }[] }).predictions.map((x) => x.label);
    // The same pictures through the loaded model in this process.
    const { prepareImage } = await import('../src/node/image.js');
    const mine: string[] = [];
    for (const file of pictures) {
      const { input } = await prepareImage(
        readFileSync(file),
        loaded.metadata.inputShape,
        loaded.metadata.preprocessing,
        file,
      );
      const k = tf.tidy(
        () =>
          tf
            .argMax(
              loaded.model.apply(tf.tensor4d(input, [1, ...loaded.metadata.inputShape])) as tf.Tensor2D,
              1,
            )
            .dataSync()[0],
      );
      mine.push(loaded.metadata.classNames[k]);
    }
    expect(labels).toEqual(mine);
    loaded.model.dispose();
    // serve answers as predict does.
    await expectServedLabel(out(), pictures[0], 'image/png', labels[0]);
  });

  it('exports to ONNX with parity', () => {
    const file = path.join(work, 'tuned.onnx');
    const ex = run(['export', '--run', out(), '--out', file, '--check', '--json']);
    expect(ex.code, ex.stderr).toBe(0);
    const parity = ex.json?.parity as { ok: boolean; max_abs_diff: number };
    expect(parity.ok).toBe(true);
    expect(parity.max_abs_diff).toBeLessThanOrEqual(1e-4);
  });

  it('train --json (CLI) states the plan and the phases; the epoch lines name them', () => {
    const r = run([
      '--json',
      'train',
      '--backbone',
      backbone,
      '--data',
      task,
      '--hold-out',
      '0.25',
      '--epochs',
      '1',
      '--fine-tune',
      '1',
      '--fine-tune-epochs',
      '1',
      '--fine-tune-lr',
      '0.002',
      '--out',
      path.join(work, 'cli-tuned'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json?.fine_tune).toMatchObject({
      layers: 1,
      unfrozen: [expect.stringMatching(/^dense/)],
      head_epochs: 1,
      epochs: 1,
      lr: { head: 0.002, last: 0.0002, earliest: 0.00002 },
      bn: false,
    });
    expect((r.json?.epochs as { phase: string }[]).map((e) => e.phase)).toEqual(['head', 'fine-tune']);
    expect(r.stderr).toMatch(/^epoch 1\/2 {2}head {2}loss/m);
    expect(r.stderr).toMatch(/^epoch 2\/2 {2}fine-tune {2}loss/m);
    expect(r.stderr).toMatch(
      /^fine-tune: after 1 epoch of the softmax head on features, the last 1 weighted layer of the backbone \(dense\w*\) .* the backbone layer at lr 0\.0002;/m,
    );
  });

  it('resumes: --fine-tune-epochs trains the finished run further', async () => {
    const plan = await planOfRun(out(), { fineTuneEpochs: 3 });
    const r = await trainSession(plan, {}, { resume: out() });
    expect(r.history.map((m) => m.phase)).toEqual([
      'head',
      'head',
      'head',
      'fine-tune',
      'fine-tune',
      'fine-tune',
    ]);
    const again = run(['train', '--resume', out()]);
    expectCleanError(
      again,
      /has finished 6 epochs; its last 3 fine-tuned its backbone; pass --fine-tune-epochs N with N > 3/,
    );
  });
});

describe('--fine-tune with --val-split', () => {
  it("keeps the second phase's best epoch at the top and its last in final/, both whole models", async () => {
    // A folder with a test split of its own, so --val-split holds out validation data.
    const split = path.join(work, 'split');
    await invertedShapes(path.join(work, 'fresh'), path.join(split, 'train'));
    await invertedShapes(path.join(work, 'fresh-test'), path.join(split, 'test'));
    const out = path.join(work, 'tuned-val');
    const r = await train({
      backbone,
      data: split,
      valSplit: 0.25,
      epochs: 2,
      fineTune: '2',
      fineTuneEpochs: 3,
      out,
    });
    expect(r.bestEpoch).toBeGreaterThan(2);
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta.bestEpoch).toBe(r.bestEpoch);
    expect(meta.fineTuned).toBeDefined();
    const last = JSON.parse(readFileSync(path.join(out, 'final', 'metadata.json'), 'utf8'));
    expect(last.fineTuned).toBeDefined();
    for (const dir of [out, path.join(out, 'final')]) {
      const ev = run(['evaluate', '--run', dir, '--json']);
      expect(ev.code, ev.stderr).toBe(0);
    }
    expect(run(['evaluate', '--run', out, '--json']).json?.test_accuracy).toBe(r.testAccuracy);
  });
});

describe('a functional (MobileNet-style) backbone', () => {
  it('is cut at its features and nested whole; only the last N of its layers change; export has parity', async () => {
    const out = path.join(work, 'tuned-functional');
    const r = await train({
      backbone: functional,
      data: task,
      holdOut: 0.25,
      epochs: 2,
      fineTune: '2',
      fineTuneEpochs: 2,
      out,
    });
    expect(r.history.map((m) => m.phase)).toEqual(['head', 'head', 'fine-tune', 'fine-tune']);
    const unfrozen = r.fineTune!.unfrozen;
    expect(unfrozen).toHaveLength(2);
    const topology = JSON.parse(readFileSync(path.join(out, 'model.json'), 'utf8')).modelTopology;
    expect(topology.class_name).toBe('Sequential');
    expect(['Model', 'Functional']).toContain(topology.config.layers[0].class_name);
    const before = await weightsOf(functional);
    const after = await weightsOf(out);
    let changed = 0;
    for (const [name, values] of before) {
      const tuned = after.get(name);
      if (!tuned) continue; // the backbone's own Dense is not part of the model
      const moved = !same(values, tuned);
      if (moved) changed++;
      expect(moved, name).toBe(unfrozen.includes(layerOf(name)) && !/moving_(mean|variance)/.test(name));
    }
    expect(changed).toBeGreaterThanOrEqual(2);
    const ex = run([
      'export',
      '--run',
      out,
      '--out',
      path.join(work, 'functional.onnx'),
      '--check',
      '--json',
    ]);
    expect(ex.code, ex.stderr).toBe(0);
    expect((ex.json?.parity as { ok: boolean; max_abs_diff: number }).max_abs_diff).toBeLessThanOrEqual(1e-4);
    const ev = run(['evaluate', '--run', out, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json?.test_accuracy).toBe(r.testAccuracy);
  });
});

describe('an interrupted fine-tuning run', () => {
  /** The metrics that must repeat exactly (times excluded). */
  const figures = (h: SessionResult['history']) =>
    h.map((m) => [m.epoch, m.phase, m.train_loss, m.train_accuracy, m.test_accuracy, m.test_loss]);
  const plan = (out: string) =>
    resolveConfig({
      seed: 0,
      backend: 'wasm',
      backbone,
      data: task,
      holdOut: 0.25,
      epochs: 2,
      fineTune: '3',
      fineTuneEpochs: 2,
      out,
    });

  it('resumes in either phase and ends as the unbroken run does', async () => {
    const whole = await trainSession(plan(path.join(work, 'unbroken')));
    // Stopped in the head's last epoch (2), then in fine-tuning's first (3).
    for (const doneBefore of [1, 2]) {
      const out = path.join(work, `broken-${doneBefore}`);
      let done = 0;
      let checks = 0;
      const first = await trainSession(plan(out), {
        onEpoch: () => void done++,
        shouldStop: () => done === doneBefore && ++checks > 2,
      });
      expect(first.interrupted).toBe(true);
      const rest = await trainSession(await planOfRun(out), {}, { resume: out });
      expect(rest.interrupted).toBe(false);
      expect(figures(rest.history)).toEqual(figures(whole.history));
      expect(rest.testAccuracy).toBe(whole.testAccuracy);
    }
  });
});

describe('--fine-tune all, a [-1, 1] backbone, --fine-tune-bn', () => {
  it('trains batch-norm statistics only when asked, and exports the rescaling with parity', async () => {
    const out = path.join(work, 'tuned-all');
    const r = await train({
      backbone,
      backboneRange: '-1,1',
      data: task,
      head: 'mlp',
      holdOut: 0.25,
      epochs: 2,
      fineTune: 'all',
      fineTuneEpochs: 1,
      fineTuneBn: true,
      out,
    });
    expect(r.fineTune?.unfrozen).toHaveLength(5);
    const before = await weightsOf(backbone);
    const after = await weightsOf(out);
    for (const [name, values] of before) {
      if (/moving_(mean|variance)/.test(name)) expect(same(values, after.get(name)!), name).toBe(false);
    }
    const model = JSON.parse(readFileSync(path.join(out, 'model.json'), 'utf8'));
    expect(model.modelTopology.config.layers[0].class_name).toBe('Rescaling');
    const ex = run(['export', '--run', out, '--out', path.join(work, 'all.onnx'), '--check', '--json']);
    expect(ex.code, ex.stderr).toBe(0);
    expect((ex.json?.parity as { ok: boolean }).ok).toBe(true);

    // A fine-tuned run is a backbone too, and can be fine-tuned again: its features are its
    // mlp head's hidden layer (head_...), which is now the backbone's last weighted layer.
    const again = await train({
      backbone: out,
      data: task,
      holdOut: 0.25,
      epochs: 1,
      fineTune: '1',
      fineTuneEpochs: 1,
      out: path.join(work, 'tuned-again'),
    });
    expect(again.fineTune?.unfrozen).toEqual([expect.stringMatching(/^head_dense/)]);
    expect(again.history.map((m) => m.phase)).toEqual(['head', 'fine-tune']);
  });
});

describe('discriminative rates', () => {
  it('each group of variables steps at its factor of the rate; the state is laid out as one optimizer', () => {
    const vars = [1, 2, 3].map((v) => tf.variable(tf.scalar(v)));
    const grads = vars.map(() => tf.scalar(1));
    const grouped = withRateFactors(() => createOptimizer({ name: 'sgd', lr: 1 }), [0.01, 0.01, 1]);
    grouped.apply(vars, grads, 1, 1);
    expect(vars.map((v) => v.dataSync()[0])).toEqual([0.99, 1.99, 2].map((x) => Math.fround(x)));
    // Adam: two slots per variable, in the variables' order, as a single Adam keeps them.
    const adam = withRateFactors(() => createOptimizer({ name: 'adam', lr: 0.1 }), [0.1, 1, 1]);
    const single = createOptimizer({ name: 'adam', lr: 0.1 });
    adam.apply(vars, grads, 0.1, 1);
    single.apply(vars, grads, 0.1, 1);
    const [a, b] = [adam.getState(), single.getState()];
    expect(a.step).toBe(b.step);
    expect(a.slots.map((t) => t.dataSync()[0])).toEqual(b.slots.map((t) => t.dataSync()[0]));
    adam.setState(a);
    expect(adam.getState().slots).toHaveLength(6);
    [...vars, ...grads, ...b.slots].forEach((t) => t.dispose());
    [grouped, adam, single].forEach((o) => o.dispose());
  });
});

describe('what cannot be fine-tuned is one line, exit 2', () => {
  const args = (...more: string[]) => ['train', '--data', task, '--out', path.join(work, 'no'), ...more];

  it('without --backbone, a wrong count, a knn head', () => {
    expectCleanError(
      run(args('--fine-tune', '2')),
      /--fine-tune trains the last layers of a pretrained backbone: give --backbone MODEL/,
    );
    expectCleanError(
      run(args('--backbone', backbone, '--fine-tune', 'some')),
      /--fine-tune must be a number of layers \(1 or more\) or 'all' \(got 'some'\)/,
    );
    expectCleanError(
      run(args('--backbone', backbone, '--fine-tune', '0')),
      /--fine-tune must be a number of layers/,
    );
    expectCleanError(
      run(args('--backbone', backbone, '--fine-tune', '9')),
      /--fine-tune 9: backbone .* has 5 layers with weights up to its feature layer .*; give 1 to 5, or all/,
    );
    expectCleanError(
      run(args('--backbone', backbone, '--head', 'knn', '--fine-tune', '1')),
      /--head knn has none; use --head softmax or mlp/,
    );
    expectCleanError(
      run(args('--backbone', backbone, '--fine-tune-epochs', '2')),
      /--fine-tune-epochs goes with --fine-tune N/,
    );
  });

  it('an ONNX backbone, a graph model, --fine-tune-bn on a functional model', async () => {
    const onnxDir = path.join(work, 'onnx');
    mkdirSync(onnxDir, { recursive: true });
    const g = new GraphBuilder();
    const input = g.reserve('pixel_values');
    const y = twoConvs(g, input, (n, seed) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(i + seed) * 0.3),
    );
    g.node('Identity', [y], 'hidden', {}, 'last_hidden_state');
    writeFileSync(
      path.join(onnxDir, 'model.onnx'),
      encodeTiny(
        g,
        [floatValueInfo(input, ['batch', 3, 16, 16])],
        [floatValueInfo('last_hidden_state', ['batch', 16, 8, 8])],
        17,
      ),
    );
    expectCleanError(
      run(args('--backbone', path.join(onnxDir, 'model.onnx'), '--fine-tune', '1')),
      /--fine-tune trains backbone layers in TensorFlow\.js, and .*model\.onnx is an ONNX model, which ONNX Runtime runs but cannot train; drop --fine-tune/,
    );

    const graph = path.join(work, 'graph');
    writeGraphModel(graph);
    expectCleanError(
      run(args('--backbone', graph, '--fine-tune', '1')),
      /is a TensorFlow\.js graph model, whose weights are constants that tfjs cannot train; drop --fine-tune/,
    );

    // wasm has no gradient kernel for a depthwise convolution's filter: said before training.
    expectCleanError(
      run(args('--backbone', functional, '--fine-tune', 'all', '--backend', 'wasm')),
      /^imgclf: error: fine-tuning these layers needs the DepthwiseConv2dNativeBackprop\w+ kernel, which the wasm backend does not have; unfreeze fewer layers \(--fine-tune N\), or train with --backend cpu$/,
    );
    expectCleanError(
      run(args('--backbone', functional, '--fine-tune', '1', '--fine-tune-bn')),
      /--fine-tune-bn works on Sequential backbones; .* has a functional model in it, whose batch-norm layers stay in inference mode: drop --fine-tune-bn/,
    );
  });
});

/** A TensorFlow.js graph model: ReLU of a 16x16 RGB image, its output the features. */
function writeGraphModel(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const dims = (...d: number[]) => ({ dim: d.map((size) => ({ size: String(size) })) });
  const json = {
    format: 'graph-model',
    generatedBy: 'test',
    convertedBy: 'test',
    modelTopology: {
      node: [
        {
          name: 'x',
          op: 'Placeholder',
          attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: dims(-1, SIZE, SIZE, 3) } },
        },
        { name: 'features', op: 'Relu', input: ['x'], attr: { T: { type: 'DT_FLOAT' } } },
      ],
      library: {},
      versions: {},
    },
    weightsManifest: [],
  };
  writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
}

/**
 * TensorFlow.js layers backbones on ONNX Runtime (converted by imgclf's exporter), and the
 * export of backbone runs as one ONNX file. A small MobileNetV2-style functional model saved as
 * a model.json folder is the backbone: trained on through the CLI, its features from ONNX
 * Runtime are compared with tfjs'; a backbone with a layer the exporter cannot map falls back to
 * tfjs and says why; `imgclf export --run` writes backbone + head + softmax, whose ONNX Runtime
 * probabilities are compared with `imgclf predict`'s, and `--check` passes. The same for a run
 * on an ONNX backbone (an NCHW graph with a feature map and a preprocessor_config.json).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import type { ImageShape } from '../src/core/data/dataset.js';
import { Rng } from '../src/core/data/rng.js';
import { loadBackbone } from '../src/node/backbone/backbone.js';
import { SHAPE_CLASSES, writeShapesFolder } from '../src/node/data/shapes.js';
import { decodeModel, floatValueInfo, GraphBuilder, OPSET } from '../src/node/export/graph.js';
import { prepareImage } from '../src/node/image.js';
import { loadRun } from '../src/node/run/rundir.js';
import { trainArgs } from './fixtures/backbone-run.js';
import { mobileNetLike } from './fixtures/mobilenet.js';
import { encodeTiny, twoConvs } from './fixtures/onnx-backbone.js';
import { cli, type CliResult, expectCleanError, tempDir } from './helpers.js';
import { saveLayersFolder } from './fixtures/layers-folder.js';

const SHAPE: ImageShape = [24, 24, 3];

let work = '';
let cache = '';
let shapes = '';
let mobile = '';
let unconvertible = '';
let onnxFile = '';
/** Pictures imgclf has not seen, for predict. */
let pictures: string[] = [];
const savedCache = process.env.XDG_CACHE_HOME;

const run = (args: string[], env: Record<string, string> = {}): CliResult =>
  cli(args, { XDG_CACHE_HOME: cache, ...env });

/** Every weight drawn from a seeded stream, scaled so activations neither vanish nor explode. */
function randomizeWeights(model: tfl.LayersModel, seed: number): void {
  const rng = new Rng(seed);
  const fresh = model.weights.map((w) => {
    const name = w.name;
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const fanIn = name.includes('depthwise') ? shape[0] * shape[1] : size / (shape.at(-1) ?? 1);
    const a = Math.sqrt(6 / Math.max(1, fanIn));
    const draw = name.includes('moving_variance')
      ? () => 0.3 + 1.7 * rng.next()
      : name.includes('gamma')
        ? () => 0.5 + rng.next()
        : name.includes('kernel')
          ? () => -a + 2 * a * rng.next()
          : () => -0.3 + 0.6 * rng.next();
    return tf.tensor(Float32Array.from({ length: size }, draw), shape);
  });
  model.setWeights(fresh);
  fresh.forEach((t) => t.dispose());
}

/** Deterministic weights in [-0.5, 0.5). */
function weights(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.next() - 0.5);
}

/**
 * An ONNX backbone in the Hugging Face style: NCHW input pixel_values [batch, 3, 16, 16], two
 * convolutions, one output, a feature map last_hidden_state [batch, 16, 8, 8] (average-pooled
 * to 16 features). Opset 17, to check that the merged file keeps the backbone's opset.
 */
function nchwGraph(): Uint8Array {
  const g = new GraphBuilder();
  const input = g.reserve('pixel_values');
  const x = twoConvs(g, input, weights);
  g.node('Identity', [x], 'hidden', {}, 'last_hidden_state');
  return encodeTiny(
    g,
    [floatValueInfo(input, ['batch', 3, 16, 16])],
    [floatValueInfo('last_hidden_state', ['batch', 16, 8, 8])],
    17,
  );
}

/** The exported file's probabilities for `pictures`, each prepared as `imgclf predict` does. */
async function onnxProbabilities(file: string, runDir: string, pictures: string[]): Promise<number[][]> {
  const meta = JSON.parse(readFileSync(path.join(runDir, 'metadata.json'), 'utf8'));
  const shape = meta.inputShape as ImageShape;
  const session = await ort.InferenceSession.create(readFileSync(file));
  try {
    expect(session.inputNames).toEqual(['input']);
    expect(session.outputNames).toEqual(['probabilities']);
    const out: number[][] = [];
    for (const picture of pictures) {
      const { input } = await prepareImage(readFileSync(picture), shape, meta.preprocessing, picture);
      const result = await session.run({ input: new ort.Tensor('float32', input, [1, ...shape]) });
      out.push(Array.from(result.probabilities.data as Float32Array));
    }
    return out;
  } finally {
    await session.release();
  }
}

/**
 * Exports the run, checks it, and compares the file's probabilities with `imgclf predict`'s
 * on test pictures. Returns the largest difference.
 */
async function exportAndCompare(runDir: string): Promise<number> {
  const file = path.join(work, `${path.basename(runDir)}.onnx`);
  const ex = run(['export', '--run', runDir, '--out', file, '--check', '--json']);
  expect(ex.code, ex.stderr).toBe(0);
  const parity = ex.json?.parity as { ok: boolean; max_abs_diff: number; images: number };
  expect(parity.ok).toBe(true);
  expect(parity.max_abs_diff).toBeLessThanOrEqual(1e-4);
  // One file: one input, one output, the run's class names and preprocessing.
  const model = decodeModel(readFileSync(file));
  expect(model.graph!.input).toHaveLength(1);
  expect(model.graph!.output).toHaveLength(1);
  const props = Object.fromEntries(model.metadataProps!.map((p) => [p.key, p.value]));
  expect(JSON.parse(props.class_names!)).toEqual([...SHAPE_CLASSES]);
  expect(JSON.parse(props.preprocessing!)).toMatchObject({ scale: 255 });
  expect(props.input_layout).toBe('NHWC');
  expect(props.backbone_sha256).toMatch(/^[0-9a-f]{64}$/);

  const p = run(['predict', '--run', runDir, ...pictures, '--json']);
  expect(p.code, p.stderr).toBe(0);
  const expected = (p.json as { predictions: { probabilities: number[] }[] }).predictions.map(
    (x) => x.probabilities,
  );
  const actual = await onnxProbabilities(file, runDir, pictures);
  let diff = 0;
  expected.forEach((row, i) => row.forEach((v, j) => (diff = Math.max(diff, Math.abs(v - actual[i][j])))));
  expect(diff).toBeLessThanOrEqual(1e-4);
  return diff;
}

beforeAll(async () => {
  await selectBackend('wasm');
  work = tempDir('imgclf-backbone-export-');
  cache = path.join(work, 'cache');
  process.env.XDG_CACHE_HOME = cache;
  shapes = path.join(work, 'shapes');
  await writeShapesFolder(shapes, { perClass: 20, seed: 5 });
  pictures = await writeShapesFolder(path.join(work, 'fresh'), { perClass: 2, seed: 99 });
  const model = mobileNetLike(SHAPE, 10);
  randomizeWeights(model, 21);
  mobile = path.join(work, 'mobile');
  await saveLayersFolder(model, mobile);
  model.dispose();
  const odd = mobileNetLike(SHAPE, 10, true);
  randomizeWeights(odd, 22);
  unconvertible = path.join(work, 'odd');
  await saveLayersFolder(odd, unconvertible);
  odd.dispose();
  onnxFile = path.join(work, 'tiny', 'model.onnx');
  mkdirSync(path.dirname(onnxFile), { recursive: true });
  writeFileSync(onnxFile, nchwGraph());
  writeFileSync(
    path.join(work, 'tiny', 'preprocessor_config.json'),
    JSON.stringify({
      do_resize: true,
      size: { height: 16, width: 16 },
      do_rescale: true,
      rescale_factor: 1 / 255,
      do_normalize: true,
      image_mean: [0.485, 0.456, 0.406],
      image_std: [0.229, 0.224, 0.225],
    }),
  );
});

afterAll(() => {
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
});

const logged: { features?: number } = {};

describe('a TensorFlow.js layers backbone on ONNX Runtime', () => {
  const out = () => path.join(work, 'mobile-run');

  it('train says ONNX Runtime (converted from tfjs layers) in its first line', () => {
    const r = run(trainArgs(mobile, shapes, out()));
    expect(r.code, r.stderr).toBe(0);
    const first = r.stderr.split('\n')[0];
    expect(first).toMatch(
      /^backbone .*mobile: ONNX Runtime \(converted from tfjs layers, \d+ threads?\); layers-model \(layers\).*input 24x24x3 in \[0,1\], 32 features from layer global_average_pooling2d/,
    );
    // The conversion is cached beside the downloads and features.
    expect(readdirSync(path.join(cache, 'imgclf', 'converted'))).toHaveLength(1);
  });

  it('its features agree with the tfjs engine within 1e-4', async () => {
    const onnxEngine = await loadBackbone({ source: mobile, engine: 'onnx' });
    const tfjsEngine = await loadBackbone({ source: mobile, engine: 'tfjs' });
    expect(onnxEngine.converted).toBe(true);
    expect(onnxEngine.engine).toMatch(/^ONNX Runtime \(converted from tfjs layers/);
    expect(tfjsEngine.engine).toBe('tfjs wasm (--backbone-engine tfjs)');
    expect(onnxEngine.record).toEqual(tfjsEngine.record);
    // Images that differ as wholes too (a brightness per channel), so the pooled features do.
    const n = 64;
    const rng = new Rng(3);
    const images = new Float32Array(n * 24 * 24 * 3);
    for (let i = 0; i < n; i++) {
      const tint = [rng.next(), rng.next(), rng.next()];
      for (let p = 0; p < 24 * 24 * 3; p++)
        images[i * 24 * 24 * 3 + p] = 0.5 * tint[p % 3] + 0.5 * rng.next();
    }
    const x = tf.tensor4d(images, [n, ...SHAPE]);
    const a = onnxEngine.features(x);
    const b = tfjsEngine.features(x);
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
    const spread = tf.tidy(() => tf.mean(tf.sqrt(tf.moments(b, 0).variance)).dataSync()[0]);
    logged.features = diff;
    console.log(
      `features ONNX Runtime vs tfjs: max |difference| ${diff.toExponential(2)} (spread ${spread.toFixed(3)})`,
    );
    expect(spread).toBeGreaterThan(0.01);
    expect(diff).toBeLessThanOrEqual(1e-4);
    tf.dispose([x, a, b]);
    onnxEngine.dispose();
    tfjsEngine.dispose();
    // Forcing tfjs in train computes the features again (the cache keeps engines apart).
    const forced = run(
      trainArgs(mobile, shapes, path.join(work, 'mobile-tfjs'), ['--backbone-engine', 'tfjs']),
    );
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr.split('\n')[0]).toMatch(/: tfjs wasm \(--backbone-engine tfjs\); layers-model/);
    expect((forced.json?.data as { featureCache: string }).featureCache).toBe('miss');
  });

  it('evaluate and predict say which engine runs the backbone', () => {
    const ev = run(['evaluate', '--run', out(), '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.stderr).toMatch(/backbone .*mobile: ONNX Runtime \(converted from tfjs layers/);
    const forced = run(['evaluate', '--run', out(), '--json'], { IMGCLF_BACKBONE_ENGINE: 'tfjs' });
    expect(forced.stderr).toMatch(/backbone .*mobile: tfjs wasm \(IMGCLF_BACKBONE_ENGINE=tfjs\)/);
    expect(
      Math.abs((forced.json?.test_accuracy as number) - (ev.json?.test_accuracy as number)),
    ).toBeLessThan(0.05);
  });

  it('imgclf export --run writes one ONNX file: backbone, pooling, head, softmax; it matches predict', async () => {
    const diff = await exportAndCompare(out());
    console.log(`tfjs backbone run: ONNX file vs imgclf predict, max |difference| ${diff.toExponential(2)}`);
  });

  it('the loaded run keeps MobileNet-style functional backbones (loadRun)', async () => {
    const loaded = await loadRun(out());
    expect(loaded.backbone?.record.family).toBe('layers');
    loaded.model.dispose();
  });
});

describe('a backbone the exporter cannot convert', () => {
  it('runs on tfjs, and the first line says why', () => {
    const r = run(trainArgs(unconvertible, shapes, path.join(work, 'odd-run')));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n')[0]).toMatch(
      /^backbone .*odd: tfjs wasm \(not convertible: layer 'odd_sep' \(class SeparableConv2D\): no ONNX mapping for SeparableConv2D\); layers-model/,
    );
  });

  it('--backbone-engine onnx refuses it in one line; export says why', () => {
    expectCleanError(
      run([
        'train',
        '--backbone',
        unconvertible,
        '--backbone-engine',
        'onnx',
        '--data',
        shapes,
        '--out',
        path.join(work, 'odd-2'),
      ]),
      /backbone .*odd does not run on ONNX Runtime \(--backbone-engine onnx\): layer 'odd_sep' \(class SeparableConv2D\): no ONNX mapping/,
    );
    const ex = run(['export', '--run', path.join(work, 'odd-run')]);
    expect(ex.code).toBe(2);
    expect(ex.stderr).toMatch(
      /cannot export the backbone .*odd to ONNX: layer 'odd_sep' \(class SeparableConv2D\)/,
    );
  });
});

describe('a run on an ONNX backbone', () => {
  it('exports as one file (NCHW graph, feature map pooled, mean/std preprocessing) that matches predict', async () => {
    const out = path.join(work, 'onnx-run');
    const r = run(trainArgs(onnxFile, shapes, out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/as NCHW 'pixel_values'.*16 features from output last_hidden_state/);
    const diff = await exportAndCompare(out);
    console.log(`ONNX backbone run: ONNX file vs imgclf predict, max |difference| ${diff.toExponential(2)}`);
    const model = decodeModel(readFileSync(path.join(work, 'onnx-run.onnx')));
    // The backbone's opset is kept; its names carry the prefix.
    expect(Number(model.opsetImport!.find((o) => !o.domain)?.version)).toBe(17);
    expect(model.graph!.node!.some((n) => n.name!.startsWith('backbone/') && n.opType === 'Conv')).toBe(true);
    expect(model.graph!.node!.map((n) => n.opType)).toContain('GlobalAveragePool');
    expect(OPSET).toBe(13);
  });
});

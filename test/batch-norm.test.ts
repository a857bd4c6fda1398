/**
 * Our BatchNormalization (src/core/models/batch-norm.ts) with the fused wasm kernels
 * (src/backend/bn-kernels.ts) against tfjs-layers' own BatchNormalization on the cpu backend:
 * training output, moving statistics after several training calls, gradients with respect to
 * the input, gamma and beta, and inference, for the NHWC shapes the cnn uses; plus the saved
 * model format.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import {
  BatchNormalization,
  BN_TRAIN_GRAD_KERNEL,
  BN_TRAIN_KERNEL,
  batchNormalization,
  fusedBatchNormAvailable,
} from '../src/core/models/batch-norm.js';

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

function random(shape: number[], seed: number, mean = 0, std = 1): Float32Array {
  return tf.tidy(() => tf.randomNormal(shape, mean, std, 'float32', seed).dataSync() as Float32Array);
}

/** Largest |a - b| / max(1, |b|): absolute for small values, relative for large ones. */
function maxRelDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return m;
}

type Results = Record<
  'y' | 'dx' | 'dgamma' | 'dbeta' | 'movingMean' | 'movingVariance' | 'inference',
  Float32Array
>;

/**
 * Three training calls, then one under gradients with a given dy, then inference; the layer is
 * tfjs-layers' own or ours.
 */
function exercise(...args: Parameters<typeof exerciseIn>): Results {
  let out: Results | undefined;
  tf.tidy(() => {
    out = exerciseIn(...args);
  });
  return out!;
}

function exerciseIn(
  make: (args: { momentum: number; epsilon?: number }) => tfl.layers.Layer,
  shape: number[],
  offset: number,
): Results {
  const ch = shape[shape.length - 1];
  const xs = [0, 1, 2, 3].map((i) => tf.tensor(random(shape, 10 + i, offset, 1.5 + i), shape));
  // Correlated with the last input, so the gradient's xhat * sum(dy * xhat) term is not small.
  const dy = tf.add(tf.tensor(random(shape, 20), shape), tf.mul(tf.sub(xs[3], offset), 0.2));
  const layer = make({ momentum: 0.9, epsilon: 1e-3 });
  layer.apply(xs[0], { training: false });
  layer.setWeights([
    tf.tensor(random([ch], 30, 1, 0.3)),
    tf.tensor(random([ch], 31)),
    tf.tensor(random([ch], 32)),
    tf.abs(tf.tensor(random([ch], 33, 2, 0.2))),
  ]);
  for (let i = 0; i < 3; i++) tf.dispose(layer.apply(xs[i], { training: true }) as tf.Tensor);
  const [gamma, beta] = layer.trainableWeights.map((w) => w.read());
  const { value, grads } = tf
    .engine()
    .gradients(() => layer.apply(xs[3], { training: true }) as tf.Tensor, [xs[3], gamma, beta], dy);
  const [mm, mv] = layer.getWeights().slice(2);
  const inference = layer.apply(xs[1], { training: false }) as tf.Tensor;
  const read = (t: tf.Tensor) => t.dataSync() as Float32Array;
  const out: Results = {
    y: read(value),
    dx: read(grads[0]),
    dgamma: read(grads[1]),
    dbeta: read(grads[2]),
    movingMean: read(mm),
    movingVariance: read(mv),
    inference: read(inference),
  };
  tf.dispose([...xs, dy, value, ...grads, inference]);
  layer.dispose();
  return out;
}

const stock = (args: { momentum: number; epsilon?: number }) => tfl.layers.batchNormalization(args);

const cases: { shape: number[]; offset: number }[] = [
  { shape: [5, 28, 28, 32], offset: 0.5 }, // cnn block 1, odd N
  { shape: [3, 14, 14, 64], offset: -0.3 }, // cnn block 2
  { shape: [1, 28, 28, 32], offset: 0 }, // one image
  { shape: [2, 14, 14, 64], offset: 20 }, // mean far from zero: one-pass variance
  { shape: [7, 10], offset: 1 }, // rank 2 (features)
];

describe('BatchNormalization: ours on wasm matches tfjs-layers on cpu (<= 1e-4, relative when large)', () => {
  for (const { shape, offset } of cases) {
    it(`[${shape}], inputs around ${offset}`, async () => {
      await tf.setBackend('cpu');
      const expected = exercise(stock, shape, offset);
      await tf.setBackend('wasm');
      expect(fusedBatchNormAvailable()).toBe(true);
      const actual = exercise(batchNormalization, shape, offset);
      for (const key of Object.keys(expected) as (keyof Results)[]) {
        expect(maxRelDiff(actual[key], expected[key]), key).toBeLessThanOrEqual(1e-4);
      }
    });
  }

  it('runs as one forward and one backward kernel on wasm, and leaks nothing', async () => {
    await tf.setBackend('wasm');
    const shape = [4, 14, 14, 64];
    const x = tf.tensor(random(shape, 1), shape);
    const layer = batchNormalization({ momentum: 0.9 });
    layer.apply(x, { training: false });
    const vars = layer.trainableWeights.map((w) => w.read());
    const before = tf.memory().numTensors;
    const profile = await tf.profile(() => {
      tf.tidy(() => {
        tf.engine().gradients(() => tf.sum(layer.apply(x, { training: true }) as tf.Tensor), [x, ...vars]);
      });
    });
    expect(tf.memory().numTensors).toBe(before);
    const names = profile.kernels.map((k) => k.name);
    expect(names).toContain(BN_TRAIN_KERNEL);
    expect(names).toContain(BN_TRAIN_GRAD_KERNEL);
    for (const stockKernel of ['Mean', 'SquaredDifference', 'Rsqrt', 'Tile'])
      expect(names).not.toContain(stockKernel);
    tf.dispose(x);
    layer.dispose();
  });

  it("falls back to tfjs-layers' code where the kernels are missing (cpu)", async () => {
    await tf.setBackend('cpu');
    expect(fusedBatchNormAvailable()).toBe(false);
    const a = exercise(stock, [3, 6, 6, 8], 0.2);
    const b = exercise(batchNormalization, [3, 6, 6, 8], 0.2);
    for (const key of Object.keys(a) as (keyof Results)[]) expect(maxRelDiff(b[key], a[key]), key).toBe(0);
    await tf.setBackend('wasm');
  });
});

describe('BatchNormalization saved models', () => {
  it('save as a plain BatchNormalization and load back predicting the same', async () => {
    await tf.setBackend('wasm');
    const model = tfl.sequential({
      layers: [
        tfl.layers.conv2d({
          inputShape: [8, 8, 2],
          filters: 4,
          kernelSize: 3,
          padding: 'same',
          useBias: false,
        }),
        batchNormalization({ momentum: 0.9 }),
        tfl.layers.reLU(),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 3 }),
      ],
    });
    const x = tf.tensor(random([6, 8, 8, 2], 5), [6, 8, 8, 2]);
    const yTrue = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3);
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    await model.fit(x, yTrue, { epochs: 3, batchSize: 6, verbose: 0 });
    const movingMean = model.layers[1].getWeights()[2].dataSync();
    expect(Array.from(movingMean).some((v) => v !== 0)).toBe(true);

    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const topology = JSON.stringify(artifacts!.modelTopology);
    expect(topology).toContain('"class_name":"BatchNormalization"');
    // The configuration is exactly tfjs-layers' own, so any TensorFlow.js can load it.
    const ours = model.layers[1].getConfig();
    const theirs = tfl.layers.batchNormalization({ momentum: 0.9, name: ours.name as string }).getConfig();
    expect(ours).toEqual(theirs);

    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
    expect(loaded.layers[1]).toBeInstanceOf(BatchNormalization);
    const a = (model.predict(x) as tf.Tensor).dataSync();
    const b = (loaded.predict(x) as tf.Tensor).dataSync();
    expect(Array.from(b)).toEqual(Array.from(a));
    tf.dispose([x, yTrue]);
  });
});

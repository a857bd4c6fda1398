/** End to end on the real Fashion-MNIST: train, reproduce, save, load, predict. */
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { type Dataset, pixelsAsFloat } from '../src/core/data/dataset.js';
import { loadDataset } from '../src/node/data/load.js';
import { create } from '../src/core/models/index.js';
import { predictProbabilities } from '../src/core/predict.js';
import { loadRun, RUN_FORMAT, saveMetadata, saveModel } from '../src/node/run/rundir.js';
import { fit } from '../src/core/train/loop.js';
import { createOptimizer } from '../src/core/optim/optimizers.js';
import { tempDir } from './helpers.js';

let dataset: Dataset;

beforeAll(async () => {
  await selectBackend('wasm');
  dataset = (await loadDataset({ dataset: 'fashion-mnist' })).dataset;
});

async function trainOnce(seed: number, epochs = 1) {
  const model = create('softmax', { inputShape: dataset.shape, numClasses: 10, seed });
  const history = await fit(model, createOptimizer({ name: 'sgd', lr: 0.1 }), dataset.train, dataset.test, {
    epochs,
    batchSize: 256,
    seed,
    shape: dataset.shape,
  });
  return { model, history };
}

describe("the seed's model on Fashion-MNIST", () => {
  it('loads 60000 training and 10000 test images of 28x28', () => {
    expect(dataset.train.count).toBe(60000);
    expect(dataset.test.count).toBe(10000);
    expect(dataset.shape).toEqual([28, 28, 1]);
  });

  it('one epoch reaches test accuracy >= 0.75; the same seed gives identical metrics', async () => {
    const a = await trainOnce(0);
    expect(a.history[0].test_accuracy).toBeGreaterThanOrEqual(0.75);
    expect(a.history[0].train_loss).toBeLessThan(1.0);
    const b = await trainOnce(0);
    const strip = (h: typeof a.history) => h.map(({ seconds: _s, eval_seconds: _e, ...rest }) => rest);
    expect(strip(b.history)).toEqual(strip(a.history));
    const c = await trainOnce(1);
    expect(c.history[0].train_loss).not.toBe(a.history[0].train_loss);
    // save -> load -> predict gives the same probabilities
    const dir = path.join(tempDir(), 'run');
    await saveModel(a.model, dir);
    await saveMetadata(dir, {
      format: RUN_FORMAT,
      model: 'softmax',
      dataset: 'fashion-mnist',
      classNames: dataset.classNames,
      inputShape: dataset.shape,
      preprocessing: { scale: 255, invertLightBackground: true, resize: 'contain' },
      config: {},
      backend: tf.getBackend(),
      imgclfVersion: 'test',
      tfjsVersion: tf.version_core,
      created: new Date().toISOString(),
    });
    const loaded = await loadRun(dir);
    const x = pixelsAsFloat(dataset.test.images, 0, 20 * 784);
    const before = predictProbabilities(a.model, x, 20, dataset.shape);
    const after = predictProbabilities(loaded.model, x, 20, dataset.shape);
    expect(after).toEqual(before);
    expect(loaded.metadata.classNames).toEqual(dataset.classNames);
  });
});

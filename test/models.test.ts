/**
 * Every registered model (iterating the registry): logits of the right shape, no NaN, a few
 * optimizer steps on one fixed batch lower its loss, and a save/load round trip through a run
 * directory predicts the same.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { Rng } from '../src/core/data/rng.js';
import { list, create } from '../src/core/models/index.js';
import { loadModelFiles, saveModel } from '../src/node/run/rundir.js';
import { trainEpoch } from '../src/core/train/loop.js';
import { crossEntropy } from '../src/core/train/loss.js';
import { optimizerFor, resolveConfig } from '../src/core/plan.js';
import { tempDir } from './helpers.js';

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

const shape: [number, number, number] = [28, 28, 1];
const n = 32;
const rng = new Rng(7);
// A learnable fixed batch: each class is a bright square at its own place, plus noise.
const images = new Float32Array(n * 784);
const labels = new Uint8Array(n);
for (let i = 0; i < n; i++) {
  const k = i % 10;
  labels[i] = k;
  for (let p = 0; p < 784; p++) images[i * 784 + p] = 0.1 * rng.next();
  const r0 = 2 + 2 * (k % 5) * 2;
  const c0 = k < 5 ? 4 : 16;
  for (let r = r0; r < r0 + 4; r++) for (let c = c0; c < c0 + 6; c++) images[i * 784 + r * 28 + c] = 1;
}
const split = { images, labels, count: n };

function meanLoss(net: ReturnType<typeof create>): number {
  return tf.tidy(() => {
    const logits = net.apply(tf.tensor4d(images, [n, ...shape]), { training: false }) as tf.Tensor2D;
    return tf.mean(crossEntropy(logits, tf.tensor1d(labels, 'int32'))).dataSync()[0];
  });
}

describe('every registered model', () => {
  it('the registry holds the built-in families', () => {
    expect(list().map((e) => e.name)).toEqual(
      expect.arrayContaining(['softmax', 'softmax-scratch', 'mlp', 'lenet', 'cnn']),
    );
  });

  for (const entry of list()) {
    it(`${entry.name}: shape, no NaN, loss falls on a fixed batch, save/load round trip`, async () => {
      const net = create(entry.name, { inputShape: shape, numClasses: 10, seed: 3 });
      const logits = tf.tidy(() => net.apply(tf.tensor4d(images, [n, ...shape]), { training: false }));
      expect(logits.shape).toEqual([n, 10]);
      expect(Array.from(logits.dataSync()).every(Number.isFinite)).toBe(true);
      logits.dispose();
      const before = meanLoss(net);
      if (entry.memorizes) {
        // Learns by storing the training set, not by gradient steps.
        expect(net.trainableVariables).toHaveLength(0);
        net.memorize!(images, labels, n);
      } else {
        const opt = optimizerFor(resolveConfig({ model: entry.name }));
        for (let i = 0; i < 8; i++)
          await trainEpoch(net, opt, split, { batchSize: n, shape, rng: new Rng(1) });
      }
      const after = meanLoss(net);
      expect(Number.isFinite(after)).toBe(true);
      expect(after).toBeLessThan(before);

      const dir = tempDir();
      await saveModel(net, dir);
      const loaded = await loadModelFiles(dir, entry.name);
      expect(loaded.countParams()).toBe(net.countParams());
      const [a, b] = tf.tidy(() => {
        const x = tf.tensor4d(images, [n, ...shape]);
        return [
          net.apply(x, { training: false }).dataSync(),
          loaded.apply(x, { training: false }).dataSync(),
        ];
      });
      expect(Array.from(b)).toEqual(Array.from(a));
      net.dispose();
      loaded.dispose();
    });
  }

  it('mlp takes hidden sizes and dropout; lenet the original sigmoid + average pooling', () => {
    const m = create('mlp', {
      inputShape: shape,
      numClasses: 10,
      seed: 1,
      options: { hidden: [64, 32], dropout: 0.2 },
    });
    expect(m.countParams()).toBe(784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10);
    const l = create('lenet', {
      inputShape: shape,
      numClasses: 10,
      seed: 1,
      options: { activation: 'sigmoid', pool: 'avg' },
    });
    // conv 5*5*6+6, conv 5*5*6*16+16, 16*5*5*120+120, 120*84+84, 84*10+10 (d2l's 61706)
    expect(l.countParams()).toBe(61706);
    m.dispose();
    l.dispose();
  });

  it('models take the input shape and class count from the dataset', () => {
    for (const entry of list()) {
      const net = create(entry.name, { inputShape: [32, 32, 3], numClasses: 7, seed: 1 });
      const out = tf.tidy(() => net.apply(tf.zeros([2, 32, 32, 3]), { training: false }));
      expect(out.shape, entry.name).toEqual([2, 7]);
      out.dispose();
      net.dispose();
    }
  });
});

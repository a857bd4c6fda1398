/**
 * Resume, validation split, augmentation and the from-scratch model's parity, on a slice of
 * the real Fashion-MNIST.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { augmentBatch } from '../src/core/data/augment.js';
import type { Dataset, Split } from '../src/core/data/dataset.js';
import { Rng } from '../src/core/data/rng.js';
import { subset } from '../src/core/data/split.js';
import { create } from '../src/core/models/index.js';
import { optimizerFor, resolveConfig } from '../src/core/plan.js';
import { loadCheckpoint, saveCheckpoint } from '../src/node/run/rundir.js';
import { evaluate, fit, type FitState } from '../src/core/train/loop.js';
import { createOptimizer } from '../src/core/optim/optimizers.js';
import { fashionSlices, tempDir } from './helpers.js';

let dataset: Dataset;
let train: Split;
let test: Split;

beforeAll(async () => {
  await selectBackend('wasm');
  ({ dataset, train, test } = await fashionSlices(3000, 1000));
});

const weightsOf = (net: { getWeights(): tf.Tensor[] }) =>
  net.getWeights().map((w) => Array.from(w.dataSync()));

describe('resume', () => {
  it('a run interrupted mid-epoch and resumed from its checkpoint ends exactly where an uninterrupted one does', async () => {
    const opts = {
      epochs: 2,
      batchSize: 100,
      seed: 5,
      shape: dataset.shape,
      schedule: 'cosine',
      warmup: 0.5,
      labelSmoothing: 0.1,
      augment: { pad: 2, flip: true },
    };
    const make = () => ({
      net: create('mlp', { inputShape: dataset.shape, numClasses: 10, seed: 5, options: { hidden: [32] } }),
      opt: createOptimizer({ name: 'adamw', lr: 0.002, weightDecay: 0.01 }),
    });
    const a = make();
    const full = await fit(a.net, a.opt, train, test, opts);

    const dir = tempDir();
    const b = make();
    let batches = 0;
    let stoppedAt: FitState | undefined;
    await fit(b.net, b.opt, train, test, {
      ...opts,
      onBatch: () => void batches++,
      shouldStop: () => batches >= 37, // 7 batches into epoch 2
      onStop: async (state) => {
        stoppedAt = state;
        await saveCheckpoint(dir, b.net, b.opt, state);
      },
    });
    expect(stoppedAt).toMatchObject({ epoch: 1, batch: 7, step: 37 });

    const ck = await loadCheckpoint(dir, 'mlp');
    const opt = createOptimizer({ name: 'adamw', lr: 0.002, weightDecay: 0.01 });
    opt.setState(ck.optimizerState);
    const resumed = await fit(ck.net, opt, train, test, { ...opts, resume: ck.fit });
    expect(resumed.map((m) => m.test_accuracy)).toEqual(full.map((m) => m.test_accuracy));
    expect(resumed[1].train_loss).toBeCloseTo(full[1].train_loss, 5);
    expect(weightsOf(ck.net)).toEqual(weightsOf(a.net));
  });

  it('a missing checkpoint is a clear error', async () => {
    await expect(loadCheckpoint(tempDir(), 'mlp')).rejects.toThrow(/has no checkpoint to resume/);
  });
});

describe('validation split', () => {
  it('reports val accuracy each epoch and flags the best epoch', async () => {
    const val = subset(
      dataset.train,
      dataset.shape,
      Array.from({ length: 500 }, (_, i) => 3000 + i),
    );
    const net = create('softmax', { inputShape: dataset.shape, numClasses: 10, seed: 1 });
    const flags: boolean[] = [];
    const history = await fit(net, createOptimizer({ name: 'sgd', lr: 0.1 }), train, test, {
      epochs: 2,
      batchSize: 256,
      seed: 1,
      shape: dataset.shape,
      val,
      onEpoch: (_m, _s, best) => void flags.push(best),
    });
    expect(history.every((m) => m.val_accuracy! > 0.5)).toBe(true);
    expect(flags[0]).toBe(true);
    expect(flags[1]).toBe(history[1].val_accuracy! > history[0].val_accuracy!);
  });
});

describe('softmax-scratch', () => {
  it('matches softmax (same seed, same batches) within 0.005 test accuracy', async () => {
    const run = async (name: string) => {
      const net = create(name, { inputShape: dataset.shape, numClasses: 10, seed: 2 });
      const opt = optimizerFor(resolveConfig({ model: name, lr: 0.1 }));
      const h = await fit(net, opt, train, test, {
        epochs: 2,
        batchSize: 256,
        seed: 2,
        shape: dataset.shape,
      });
      return {
        acc: h.at(-1)!.test_accuracy,
        full: evaluate(net, dataset.test, { shape: dataset.shape }).accuracy,
      };
    };
    const a = await run('softmax');
    const b = await run('softmax-scratch');
    expect(Math.abs(a.acc - b.acc)).toBeLessThanOrEqual(0.005);
    expect(Math.abs(a.full - b.full)).toBeLessThanOrEqual(0.005);
    expect(b.full).toBeGreaterThan(0.6);
  });
});

describe('batch augmentation', () => {
  const shape: [number, number, number] = [3, 4, 1];
  const img = Float32Array.from({ length: 12 }, (_, i) => i + 1);

  it('is seeded: the same seed gives the same batch', () => {
    const a = Float32Array.from({ length: 120 }, (_, i) => i);
    const b = a.slice();
    augmentBatch(a, 10, shape, new Rng(3), { pad: 1, flip: true });
    augmentBatch(b, 10, shape, new Rng(3), { pad: 1, flip: true });
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it('shifts with zero fill and flips left-right', () => {
    // Find a draw of shift (dy, dx) and flip, then check the pixels against that draw.
    for (let seed = 1; seed < 40; seed++) {
      const r = new Rng(seed);
      const dy = r.int(3) - 1;
      const dx = r.int(3) - 1;
      const flip = r.next() < 0.5;
      const x = img.slice();
      augmentBatch(x, 1, shape, new Rng(seed), { pad: 1, flip: true });
      for (let y = 0; y < 3; y++)
        for (let c = 0; c < 4; c++) {
          const sy = y + dy;
          const sx = (flip ? 3 - c : c) + dx;
          const want = sy < 0 || sy >= 3 || sx < 0 || sx >= 4 ? 0 : img[sy * 4 + sx];
          expect(x[y * 4 + c], `seed ${seed} (${y},${c})`).toBe(want);
        }
    }
  });
});

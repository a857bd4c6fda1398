/** Every registered model takes its input shape, channels and class count from the dataset. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import type { ImageShape } from '../src/core/data/dataset.js';
import { list } from '../src/core/models/index.js';

beforeAll(async () => {
  await selectBackend('wasm');
});

const CASES: [ImageShape, number][] = [
  [[28, 28, 1], 10],
  [[32, 32, 3], 4],
  [[36, 36, 3], 2],
];

describe.each(list().map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  it.each(CASES)('builds for input %j with %i classes', (shape, classes) => {
    const model = entry.create({ inputShape: shape, numClasses: classes, seed: 1 });
    const out = tf.tidy(() => (model.apply(tf.zeros([2, ...shape]), { training: false }) as tf.Tensor).shape);
    expect(out).toEqual([2, classes]);
    model.dispose();
  });
});

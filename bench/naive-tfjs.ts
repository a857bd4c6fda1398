/**
 * The baseline: the seed's model written the way the TensorFlow.js examples write it. The whole
 * dataset becomes two tensors and `model.fit` slices a batch out of them each step, with the
 * built-in optimizer and loss. Same model, initialization, optimizer, batch size and epochs.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { type Dataset, pixelsAsFloat } from '../src/core/data/dataset.js';

export async function naiveTfjs(
  dataset: Dataset,
  epochs: number,
): Promise<{
  epochs: { seconds: number; test_accuracy: number; train_loss: number; eval_seconds: number }[];
  firstBatchAt: number;
}> {
  const [h, w, c] = dataset.shape;
  // The examples' way: the whole dataset as one float tensor.
  const xs = tf.tensor4d(pixelsAsFloat(dataset.train.images), [dataset.train.count, h, w, c]);
  const ys = tf.oneHot(tf.tensor1d(dataset.train.labels, 'int32'), 10);
  const xt = tf.tensor4d(pixelsAsFloat(dataset.test.images), [dataset.test.count, h, w, c]);
  const yt = tf.oneHot(tf.tensor1d(dataset.test.labels, 'int32'), 10);
  const model = tfl.sequential({
    layers: [
      tfl.layers.flatten({ inputShape: [h, w, c] }),
      tfl.layers.dense({
        units: 10,
        activation: 'softmax',
        kernelInitializer: tfl.initializers.randomNormal({ mean: 0, stddev: 0.01, seed: 1 }),
      }),
    ],
  });
  model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const out: { seconds: number; test_accuracy: number; train_loss: number; eval_seconds: number }[] = [];
  let firstBatchAt = 0;
  for (let e = 0; e < epochs; e++) {
    const start = performance.now();
    const h1 = await model.fit(xs, ys, {
      batchSize: 256,
      epochs: 1,
      shuffle: true,
      verbose: 0,
      callbacks: {
        onBatchEnd: async () => {
          firstBatchAt ||= performance.now() / 1000;
        },
      },
    });
    const seconds = (performance.now() - start) / 1000;
    const evalStart = performance.now();
    const [, acc] = model.evaluate(xt, yt, { batchSize: 256 }) as tf.Scalar[];
    const testAcc = (await acc.data())[0];
    out.push({
      seconds,
      test_accuracy: testAcc,
      train_loss: h1.history.loss[0] as number,
      eval_seconds: (performance.now() - evalStart) / 1000,
    });
  }
  return { epochs: out, firstBatchAt };
}

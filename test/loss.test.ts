import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { correctCount, crossEntropy, crossEntropyFromProbs, softmax } from '../src/core/train/loss.js';
import { accuracy, confusionMatrix, perClassMetrics } from '../src/core/train/metrics.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe("the seed's numbers", () => {
  it('softmax of (2,4,6) is (0.0159, 0.1173, 0.8668)', () => {
    const p = softmax(tf.tensor2d([[2, 4, 6]])).arraySync()[0];
    expect(p.map((v) => Number(v.toFixed(4)))).toEqual([0.0159, 0.1173, 0.8668]);
  });

  it('cross-entropy with the true class third is -ln 0.8668 = 0.1429', () => {
    const fromLogits = crossEntropy(tf.tensor2d([[2, 4, 6]]), tf.tensor1d([2], 'int32')).arraySync()[0];
    expect(fromLogits).toBeCloseTo(0.1429, 4);
    const fromProbs = crossEntropyFromProbs(
      tf.tensor2d([[0.0159, 0.1173, 0.8668]]),
      tf.tensor2d([[0, 0, 1]]),
    ).arraySync()[0];
    expect(fromProbs).toBeCloseTo(0.1429, 4);
  });

  it('stays finite for large logits such as (1000, 1001)', () => {
    const logits = tf.tensor2d([[1000, 1001]]);
    const p = softmax(logits).arraySync()[0];
    const ce = crossEntropy(logits, tf.tensor1d([0], 'int32')).arraySync()[0];
    expect(p.every(Number.isFinite)).toBe(true);
    expect(p[1]).toBeCloseTo(1 / (1 + Math.exp(-1)), 6);
    expect(ce).toBeCloseTo(Math.log(1 + Math.E), 5);
    const g = tf.grad((x: tf.Tensor) => tf.sum(crossEntropy(x as tf.Tensor2D, tf.tensor1d([0], 'int32'))))(
      logits,
    );
    expect(Array.from(g.dataSync()).every(Number.isFinite)).toBe(true);
  });

  it('the gradient of cross-entropy is softmax minus the one-hot target', () => {
    const logits = tf.tensor2d([
      [2, 4, 6],
      [0.5, -1, 3],
    ]);
    const labels = tf.tensor1d([2, 0], 'int32');
    const g = tf
      .grad((x: tf.Tensor) => tf.sum(crossEntropy(x as tf.Tensor2D, labels)))(logits)
      .arraySync() as number[][];
    const p = softmax(logits).arraySync();
    expect(g[0][2]).toBeCloseTo(p[0][2] - 1, 6);
    expect(g[1][0]).toBeCloseTo(p[1][0] - 1, 6);
    expect(g[1][2]).toBeCloseTo(p[1][2], 6);
  });

  it('label smoothing mixes in the uniform distribution', () => {
    const v = crossEntropy(tf.tensor2d([[0, 0]]), tf.tensor1d([0], 'int32'), 0.2).arraySync()[0];
    expect(v).toBeCloseTo(Math.log(2), 6);
  });
});

describe('accuracy and metrics', () => {
  it('accuracy is correct predictions divided by all predictions', () => {
    expect(accuracy([0, 1, 2, 2], [0, 1, 1, 2])).toBe(0.75);
    expect(accuracy([], [])).toBe(0);
    const logits = tf.tensor2d([
      [0.1, 0.3, 0.6],
      [0.3, 0.2, 0.5],
    ]);
    // The seed's example: y_hat rows predict classes 2 and 2, labels are 0 and 2 -> 1 correct.
    expect(correctCount(logits, tf.tensor1d([0, 2], 'int32')).arraySync()).toBe(1);
  });

  it('confusion matrix and per-class precision/recall/F1', () => {
    const m = confusionMatrix([0, 1, 1, 2], [0, 1, 2, 2], 3);
    expect(m).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [0, 1, 1],
    ]);
    const pc = perClassMetrics(m);
    expect(pc[1].precision).toBe(0.5);
    expect(pc[2].recall).toBe(0.5);
    expect(pc[2].f1).toBeCloseTo(2 / 3, 10);
  });
});

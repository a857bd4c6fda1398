/** The fused softmax cross-entropy kernel against the composed tfjs ops, on wasm and cpu. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { correctCount, crossEntropy, crossEntropyAndCorrect } from '../src/core/train/loss.js';

beforeAll(async () => {
  await selectBackend('wasm');
  await import('@tensorflow/tfjs-backend-cpu');
});

describe.each(['wasm', 'cpu'])('fused softmax cross-entropy on %s', (backend) => {
  it('matches the composed ops in value, gradient and correct count', async () => {
    await tf.setBackend(backend);
    const logits = tf.tensor2d(
      Float32Array.from(tf.randomNormal([37, 10], 0, 3, 'float32', 11).dataSync()),
      [37, 10],
    );
    const labels = tf.tensor1d(
      Int32Array.from({ length: 37 }, (_, i) => (i * 7) % 10),
      'int32',
    );
    for (const eps of [0, 0.1]) {
      const fused = crossEntropyAndCorrect(logits, labels, eps);
      const composed = crossEntropy(logits, labels, eps);
      const a = fused.loss.dataSync();
      const b = composed.dataSync();
      for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 5);
      expect(fused.correct.dataSync()[0]).toBe(correctCount(logits, labels).dataSync()[0]);
      const gf = tf
        .grad((x: tf.Tensor) => tf.mean(crossEntropyAndCorrect(x as tf.Tensor2D, labels, eps).loss))(logits)
        .dataSync();
      const gc = tf
        .grad((x: tf.Tensor) => tf.mean(crossEntropy(x as tf.Tensor2D, labels, eps)))(logits)
        .dataSync();
      for (let i = 0; i < gf.length; i++) expect(Math.abs(gf[i] - gc[i])).toBeLessThan(1e-6);
    }
  });

  it('reproduces the seed example and stays finite for (1000, 1001)', async () => {
    await tf.setBackend(backend);
    const r = crossEntropyAndCorrect(tf.tensor2d([[2, 4, 6]]), tf.tensor1d([2], 'int32'));
    expect(r.loss.dataSync()[0]).toBeCloseTo(0.1429, 4);
    expect(r.correct.dataSync()[0]).toBe(1);
    const big = crossEntropyAndCorrect(tf.tensor2d([[1000, 1001]]), tf.tensor1d([0], 'int32'));
    expect(big.loss.dataSync()[0]).toBeCloseTo(Math.log(1 + Math.E), 4);
  });

  it('leaks no tensors inside a training-style tidy', async () => {
    await tf.setBackend(backend);
    const logits = tf.variable(tf.randomNormal([8, 10])) as unknown as tf.Tensor2D;
    const labels = tf.tensor1d(new Int32Array(8), 'int32');
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      let c: tf.Scalar | undefined;
      const { grads } = tf.variableGrads(() => {
        const r = crossEntropyAndCorrect(logits, labels);
        c = tf.keep(r.correct);
        return tf.mean(r.loss) as tf.Scalar;
      });
      tf.dispose(grads);
      c!.dispose();
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});

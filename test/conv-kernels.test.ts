/**
 * The wasm convolution-gradient, max-pool-gradient and sum kernels (src/backend/conv-kernels.ts)
 * against the cpu backend on random inputs, for every stride and padding the models use
 * (lenet: 5x5 'same' and 'valid'; cnn: 3x3 'same'; 2x2/2 max-pooling on even and odd sizes, with
 * tied windows) plus strides the general path must also handle. conv-filter-grad.test.ts checks
 * both filter-gradient routes directly.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-layers registers tfjs-core's gradient functions.
import '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { maxAbsDiff, onCpuAndWasm, relDiff } from './helpers.js';
import { runKernel } from './kernel-helpers.js';

function random(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomUniform(shape, -1, 1, 'float32', seed).dataSync() as Float32Array);
}

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

type Pad = 'same' | 'valid' | number;
const convCases: {
  x: [number, number, number, number];
  f: [number, number, number, number];
  stride: number;
  pad: Pad;
}[] = [
  { x: [3, 28, 28, 1], f: [5, 5, 1, 6], stride: 1, pad: 'same' }, // lenet conv1
  { x: [3, 14, 14, 6], f: [5, 5, 6, 16], stride: 1, pad: 'valid' }, // lenet conv2
  { x: [3, 28, 28, 1], f: [3, 3, 1, 16], stride: 1, pad: 'same' }, // cnn block 1
  { x: [3, 14, 14, 16], f: [3, 3, 16, 32], stride: 1, pad: 'same' }, // cnn block 2 (narrow)
  { x: [3, 28, 28, 1], f: [3, 3, 1, 32], stride: 1, pad: 'same' }, // cnn conv1 (im2col route)
  { x: [3, 14, 14, 32], f: [3, 3, 32, 64], stride: 1, pad: 'same' }, // cnn conv2 (stacked route)
  { x: [2, 9, 9, 4], f: [3, 3, 4, 5], stride: 2, pad: 'same' }, // general path
  { x: [2, 9, 9, 4], f: [3, 3, 4, 5], stride: 2, pad: 'valid' },
];

// Relative to the largest value: the 3x3 layers' F(4x4, 3x3) kernels round at a few 1e-6 of it,
// which on the wider layers' gradients (values up to about 40) is more than 1e-4 absolute.
describe('Conv2D gradients on wasm match cpu (relative difference <= 1e-5)', () => {
  for (const { x: xs, f: fs, stride, pad } of convCases) {
    it(`x ${xs} filter ${fs} stride ${stride} pad ${pad}`, async () => {
      const xv = random(xs, 1);
      const fv = random(fs, 2);
      const outShape = tf.tidy(() => tf.conv2d(tf.tensor4d(xv, xs), tf.tensor4d(fv, fs), stride, pad).shape);
      const dyv = random(outShape, 3);
      const [cpuDx, wasmDx] = await onCpuAndWasm(() =>
        runKernel(
          'Conv2DBackpropInput',
          { dy: tf.tensor(dyv, outShape), filter: tf.tensor(fv, fs) },
          { inputShape: xs, strides: stride, pad, dataFormat: 'NHWC' },
        ),
      );
      expect(relDiff(cpuDx, wasmDx)).toBeLessThanOrEqual(1e-5);
      const [cpuDw, wasmDw] = await onCpuAndWasm(() =>
        runKernel(
          'Conv2DBackpropFilter',
          { x: tf.tensor(xv, xs), dy: tf.tensor(dyv, outShape) },
          { filterShape: fs, strides: stride, pad, dataFormat: 'NHWC' },
        ),
      );
      expect(relDiff(cpuDw, wasmDw)).toBeLessThanOrEqual(1e-5);
    });
  }

  it('gradients through tf.grad of a conv layer match, and leak nothing', async () => {
    const xv = random([2, 12, 12, 3], 4);
    const fv = random([3, 3, 3, 8], 5);
    const loss = (x: tf.Tensor4D, f: tf.Tensor4D) => tf.sum(tf.square(tf.relu(tf.conv2d(x, f, 1, 'same'))));
    const [cpu, wasm] = await onCpuAndWasm(() => {
      const [gx, gf] = tf.grads((x: tf.Tensor, f: tf.Tensor) => loss(x as tf.Tensor4D, f as tf.Tensor4D))([
        tf.tensor4d(xv, [2, 12, 12, 3]),
        tf.tensor4d(fv, [3, 3, 3, 8]),
      ]);
      return tf.concat([tf.reshape(gx, [-1]), tf.reshape(gf, [-1])]);
    });
    expect(maxAbsDiff(cpu, wasm)).toBeLessThanOrEqual(1e-3);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      tf.grads((f: tf.Tensor) => loss(tf.ones([2, 12, 12, 3]), f as tf.Tensor4D))([tf.ones([3, 3, 3, 8])]);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});

/**
 * Values for MaxPoolGrad inputs: uniform, ReLU-like (many zeros, so many tied windows), or drawn
 * from {-0, +0, 1, -1}, where ties of either zero and of equal values are the rule.
 */
function poolInput(shape: number[], kind: 'uniform' | 'relu' | 'ties'): Float32Array {
  const v = random(shape, 6);
  if (kind === 'relu') return v.map((e) => Math.max(0, e));
  if (kind === 'ties') return v.map((e) => [0, -0, 1, -1][Math.floor((e + 1) * 2) & 3]);
  return v;
}

describe('MaxPoolGrad on wasm matches cpu', () => {
  for (const [shape, size, stride, pad, kind] of [
    [[3, 28, 28, 16], 2, 2, 'valid', 'uniform'],
    [[3, 28, 28, 32], 2, 2, 'valid', 'relu'], // cnn pool 1
    [[3, 14, 14, 64], 2, 2, 'valid', 'ties'], // cnn pool 2
    [[3, 7, 7, 8], 2, 2, 'valid', 'ties'], // odd: the last row and column get no gradient
    [[3, 7, 6, 8], 2, 2, 'valid', 'uniform'],
    [[2, 7, 7, 4], 3, 2, 'same', 'uniform'],
    [[2, 7, 7, 4], 2, 2, 'same', 'ties'], // padded: the general path
  ] as [number[], number, number, 'valid' | 'same', 'uniform' | 'relu' | 'ties'][]) {
    it(`input ${shape} pool ${size} stride ${stride} ${pad}, ${kind} values`, async () => {
      const xv = poolInput(shape, kind);
      const outShape = tf.tidy(
        () => tf.maxPool(tf.tensor4d(xv, shape as [number, number, number, number]), size, stride, pad).shape,
      );
      const dyv = random(outShape, 7);
      const [cpu, wasm] = await onCpuAndWasm(() => {
        const x = tf.tensor4d(xv, shape as [number, number, number, number]);
        const y = tf.maxPool(x, size, stride, pad);
        return tf.engine().runKernel('MaxPoolGrad', { dy: tf.tensor(dyv, outShape), input: x, output: y }, {
          filterSize: size,
          strides: stride,
          pad,
        } as unknown as tf.NamedAttrMap) as tf.Tensor;
      });
      expect(maxAbsDiff(cpu, wasm)).toBeLessThanOrEqual(1e-4);
    });
  }
});

describe('Sum on wasm matches cpu', () => {
  for (const [shape, axis, keep] of [
    [[4, 5, 6, 7], [0, 1, 2], false],
    [[3, 5, 7, 9], [0, 1, 2], true], // 105 rows: not a multiple of the 4 summed per pass
    [[4, 5, 6, 7], [0], true],
    [[4, 5, 6, 7], [1, 2], false], // not leading: the backend's own kernel
    [[9, 10], -1, false],
  ] as [number[], number | number[], boolean][]) {
    it(`shape ${shape} axis ${axis} keepDims ${keep}`, async () => {
      const xv = random(shape, 8);
      const [cpu, wasm] = await onCpuAndWasm(() => tf.sum(tf.tensor(xv, shape), axis, keep));
      expect(maxAbsDiff(cpu, wasm)).toBeLessThanOrEqual(1e-4);
    });
  }
});

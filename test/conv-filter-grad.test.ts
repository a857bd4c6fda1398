/**
 * Both Conv2DBackpropFilter routes on wasm (src/backend/conv-filter-grad.ts, stacked-plane
 * convolution; src/backend/conv-kernels.ts, im2col) against the cpu backend, each called
 * directly so that both are checked on every shape the models use whichever one the registered
 * kernel picks. Some batches span several chunks with a shorter last one (the cpu kernel is too
 * slow for a full 256-image batch).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { conv2dBackpropFilterIm2col } from '../src/backend/conv-kernels.js';
import { conv2dBackpropFilterStacked } from '../src/backend/conv-filter-grad.js';

type Shape4 = [number, number, number, number];
type Pad = 'same' | 'valid' | number;

function random(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomUniform(shape, -1, 1, 'float32', seed).dataSync() as Float32Array);
}

/** Largest difference relative to the reference's largest magnitude (at least 1). */
function relDiff(ref: Float32Array, got: Float32Array): number {
  expect(got.length).toBe(ref.length);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(ref[i] - got[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return diff / scale;
}

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

const cases: { x: Shape4; f: Shape4; stride: number; pad: Pad }[] = [
  { x: [40, 28, 28, 1], f: [5, 5, 1, 6], stride: 1, pad: 'same' }, // lenet conv1
  { x: [40, 14, 14, 6], f: [5, 5, 6, 16], stride: 1, pad: 'valid' }, // lenet conv2
  { x: [23, 28, 28, 1], f: [3, 3, 1, 32], stride: 1, pad: 'same' }, // cnn conv1: 3 im2col chunks
  { x: [3, 14, 14, 32], f: [3, 3, 32, 64], stride: 1, pad: 'same' }, // cnn conv2
  { x: [34, 6, 6, 32], f: [3, 3, 32, 64], stride: 1, pad: 'same' }, // its channels, 2 stacked chunks
  { x: [33, 7, 9, 3], f: [2, 4, 3, 5], stride: 1, pad: 1 }, // uneven filter, explicit padding
  { x: [3, 9, 9, 4], f: [3, 3, 4, 5], stride: 2, pad: 'same' }, // im2col only
];

describe('Conv2DBackpropFilter routes on wasm match cpu (relative 1e-4)', () => {
  for (const { x: xs, f: fs, stride, pad } of cases) {
    it(`x ${xs} filter ${fs} stride ${stride} pad ${pad}`, async () => {
      const xv = random(xs, 11);
      const outShape = tf.tidy(() => tf.conv2d(tf.tensor4d(xv, xs), tf.zeros(fs), stride, pad).shape);
      const dyv = random(outShape, 12);
      const attrs = { filterShape: fs, strides: stride, pad, dataFormat: 'NHWC' };
      await tf.setBackend('cpu');
      const ref = tf
        .tidy(
          () =>
            tf
              .engine()
              .runKernel(
                'Conv2DBackpropFilter',
                { x: tf.tensor(xv, xs), dy: tf.tensor(dyv, outShape) },
                attrs as unknown as tf.NamedAttrMap,
              ) as tf.Tensor,
        )
        .dataSync() as Float32Array;
      await tf.setBackend('wasm');
      const backend = tf.backend() as unknown as {
        typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
        disposeData(id: object): void;
      };
      const x = tf.tensor(xv, xs);
      const dy = tf.tensor(dyv, outShape);
      // Data the routes allocate on the backend (chunks, products) must all be freed.
      const before = tf.backend().numDataIds();
      const args = {
        inputs: { x, dy },
        backend: tf.backend(),
        attrs: attrs as unknown as tf.NamedAttrMap,
      };
      const routes = { im2col: conv2dBackpropFilterIm2col(args), stacked: conv2dBackpropFilterStacked(args) };
      if (stride !== 1) expect(routes.stacked).toBeUndefined();
      for (const [name, out] of Object.entries(routes)) {
        if (!out) continue;
        expect(out.shape, name).toEqual(fs);
        expect(relDiff(ref, backend.typedArrayFromHeap(out)), name).toBeLessThanOrEqual(1e-4);
        backend.disposeData(out.dataId);
      }
      expect(tf.backend().numDataIds()).toBe(before);
      tf.dispose([x, dy]);
    });
  }

  it('the stacked route declines narrow patches with many output channels', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([2, 8, 8, 1]);
    const dy = tf.zeros([2, 8, 8, 32]);
    const args = {
      inputs: { x, dy },
      backend: tf.backend(),
      attrs: {
        filterShape: [3, 3, 1, 32],
        strides: 1,
        pad: 'same',
        dataFormat: 'NHWC',
      } as unknown as tf.NamedAttrMap,
    };
    expect(conv2dBackpropFilterStacked(args)).toBeUndefined();
    tf.dispose([x, dy]);
  });
});

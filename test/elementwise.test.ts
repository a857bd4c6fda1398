/**
 * The element-wise wasm kernels (src/backend/elementwise.ts): bias adds, the bias gradient's sum
 * over leading axes and the ReLU gradient give the same bits as what they replace, take the
 * shapes they should, and leave the rest to tfjs.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { biasAdd, RELU_GRAD } from '../src/backend/elementwise.js';
import { onCpuAndWasm } from './helpers.js';

function random(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomUniform(shape, -1, 1, 'float32', seed).dataSync() as Float32Array);
}

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

describe('element-wise kernels on wasm', () => {
  it('a bias added along the last axis equals the cpu backend bit for bit, in either order', async () => {
    const [xv, bv] = [random([3, 5, 7, 16], 1), random([16], 2)];
    for (const biasFirst of [false, true]) {
      const [cpu, wasm] = await onCpuAndWasm(() => {
        const [x, b] = [tf.tensor4d(xv, [3, 5, 7, 16]), tf.tensor1d(bv)];
        return biasFirst ? tf.add(b, x) : tf.add(x, b);
      });
      expect(wasm).toEqual(cpu);
    }
  });

  it('the bias add is taken for [..., C] + [C] with C a multiple of 4, and declined otherwise', () => {
    const backend = tf.engine().backend;
    const tryAdd = (a: tf.Tensor, b: tf.Tensor) => {
      const out = biasAdd({ inputs: { a, b }, backend, attrs: {} });
      if (out) backend.disposeData(out.dataId);
      tf.dispose([a, b]);
      return out ? 'taken' : undefined;
    };
    expect(tryAdd(tf.zeros([4, 8]), tf.zeros([8]))).toBe('taken');
    expect(tryAdd(tf.zeros([4, 10]), tf.zeros([10]))).toBeUndefined(); // 10 classes: not a multiple of 4
    expect(tryAdd(tf.zeros([8]), tf.zeros([8]))).toBeUndefined(); // no leading axis
    expect(tryAdd(tf.zeros([4, 8]), tf.zeros([4, 8]))).toBeUndefined(); // not a bias
    expect(tryAdd(tf.zeros([4, 8], 'int32'), tf.zeros([8], 'int32'))).toBeUndefined();
  });

  it('a sum over leading axes gives the bits of summing four rows at a time in double', () => {
    // 105 rows: not a multiple of four, so the last row is added alone.
    const shape = [7, 5, 3, 32];
    const xv = random(shape, 3);
    const rows = 105;
    const acc = new Float64Array(32);
    let r = 0;
    for (; r + 4 <= rows; r += 4)
      for (let c = 0; c < 32; c++)
        acc[c] += xv[r * 32 + c] + xv[(r + 1) * 32 + c] + xv[(r + 2) * 32 + c] + xv[(r + 3) * 32 + c];
    for (; r < rows; r++) for (let c = 0; c < 32; c++) acc[c] += xv[r * 32 + c];
    const got = tf.tidy(() => tf.sum(tf.tensor(xv, shape), [0, 1, 2]).dataSync());
    expect(got).toEqual(Float32Array.from(acc));
  });

  it('the ReLU gradient equals dy * step(x) bit for bit, NaN, -0 and infinities included', async () => {
    // 4103 values: a tail of 3 past the SIMD loop.
    const n = 4103;
    const xv = random([n], 4);
    const dyv = random([n], 5);
    xv.set([NaN, -0, 0, Infinity, -Infinity, 1e-45, -1e-45], 0);
    dyv.set([1, -1, -1, -2, 3, -1, -1], 0);
    const viaGrad = tf.tidy(() => {
      const dy = tf.tensor1d(dyv);
      return tf
        .grad((x: tf.Tensor) => tf.sum(tf.mul(tf.relu(x), dy)))(tf.tensor1d(xv))
        .dataSync();
    });
    const formula = tf.tidy(() =>
      tf.mul(tf.tensor1d(dyv), tf.cast(tf.step(tf.tensor1d(xv)), 'float32')).dataSync(),
    );
    expect(new Uint32Array(viaGrad.buffer)).toEqual(new Uint32Array(formula.buffer));
    // It ran as one kernel, not Step, Cast and Multiply.
    const x = tf.tensor1d(xv);
    const profile = await tf.profile(() => tf.grad((v: tf.Tensor) => tf.sum(tf.relu(v)))(x));
    x.dispose();
    const names = profile.kernels.map((k) => k.name);
    expect(names).toContain(RELU_GRAD);
    expect(names).not.toContain('Step');
  });

  it('the ReLU gradient keeps tfjs-core formula on the cpu backend', async () => {
    const xv = random([64], 6);
    const [cpu, wasm] = await onCpuAndWasm(() =>
      tf.grad((x: tf.Tensor) => tf.sum(tf.relu(x)))(tf.tensor1d(xv)),
    );
    expect(wasm).toEqual(cpu);
    expect([...cpu].every((v, i) => v === (xv[i] > 0 ? 1 : 0))).toBe(true);
  });
});

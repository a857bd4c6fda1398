/** Our wasm kernels against the cpu backend's results, on random inputs. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { maxAbsDiff, onCpuAndWasm } from './helpers.js';

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

describe('wasm transpose', () => {
  const cases: [number[], number[]][] = [
    [
      [7, 5],
      [1, 0],
    ],
    [
      [256, 784],
      [1, 0],
    ],
    [
      [3, 4, 5],
      [0, 2, 1],
    ],
    [
      [2, 3, 4, 5],
      [0, 3, 1, 2],
    ],
    [
      [2, 3, 4, 5],
      [3, 0, 1, 2],
    ],
    [
      [1, 6, 1, 4],
      [3, 2, 1, 0],
    ],
    [
      [2, 3, 4],
      [2, 0, 1],
    ],
    [
      [2, 3, 4],
      [1, 0, 2],
    ], // not a 2-D block swap: falls back to the original kernel
    [
      [1, 784],
      [1, 0],
    ], // only a size-1 axis moves: a copy (the last batch of one image)
  ];
  for (const [shape, perm] of cases) {
    it(`shape ${shape} perm ${perm}`, async () => {
      const x = tf.randomNormal(shape, 0, 1, 'float32', 3);
      const values = x.dataSync();
      const [cpu, wasm] = await onCpuAndWasm(() => tf.transpose(tf.tensor(values, shape), perm));
      expect(maxAbsDiff(cpu, wasm)).toBe(0);
    });
  }
});

describe('wasm matMul with transposes', () => {
  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ]) {
    it(`transposeA=${ta} transposeB=${tb}, batched and not`, async () => {
      for (const batch of [[], [3]]) {
        const a = tf.randomNormal([...batch, ...(ta ? [17, 9] : [9, 17])], 0, 1, 'float32', 5).dataSync();
        const b = tf.randomNormal([...batch, ...(tb ? [11, 17] : [17, 11])], 0, 1, 'float32', 6).dataSync();
        const sa = [...batch, ...(ta ? [17, 9] : [9, 17])];
        const sb = [...batch, ...(tb ? [11, 17] : [17, 11])];
        const [cpu, wasm] = await onCpuAndWasm(() => tf.matMul(tf.tensor(a, sa), tf.tensor(b, sb), ta, tb));
        expect(maxAbsDiff(cpu, wasm)).toBeLessThanOrEqual(1e-4);
        const bias = tf.randomNormal([11], 0, 1, 'float32', 7).dataSync();
        const [cpu2, wasm2] = await onCpuAndWasm(() =>
          tf.fused.matMul({
            a: tf.tensor(a, sa),
            b: tf.tensor(b, sb),
            transposeA: ta,
            transposeB: tb,
            bias: tf.tensor(bias),
            activation: 'relu',
          }),
        );
        expect(maxAbsDiff(cpu2, wasm2), `fused, batch [${batch}]`).toBeLessThanOrEqual(1e-4);
      }
    });
  }

  it('a batch of one: a [1, K] operand transposed', async () => {
    for (const [ta, tb, sa, sb] of [
      [true, false, [1, 784], [1, 10]],
      [false, true, [10, 1], [784, 1]],
    ] as const) {
      const a = tf.randomNormal([...sa], 0, 1, 'float32', 8).dataSync();
      const b = tf.randomNormal([...sb], 0, 1, 'float32', 9).dataSync();
      const [cpu, wasm] = await onCpuAndWasm(() =>
        tf.matMul(tf.tensor(a, [...sa]), tf.tensor(b, [...sb]), ta, tb),
      );
      expect(maxAbsDiff(cpu, wasm)).toBeLessThanOrEqual(1e-4);
    }
  });

  it('leaks no tensors', async () => {
    await tf.setBackend('wasm');
    const a = tf.randomNormal([8, 4]);
    const b = tf.randomNormal([8, 3]);
    const before = tf.memory().numTensors;
    const bytesBefore = tf.memory().numBytes;
    tf.tidy(() => {
      tf.matMul(a, b, true, false);
      tf.fused.matMul({
        a: tf.reshape(a, [2, 4, 4]),
        b: tf.reshape(b, [2, 4, 3]),
        bias: tf.ones([3]),
        activation: 'relu',
      });
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytesBefore);
  });
});

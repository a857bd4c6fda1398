/**
 * Times the wasm convolution kernels on the shapes the models train: the forward Conv2D
 * (XNNPACK) against our Conv2DBackpropInput and Conv2DBackpropFilter (backend/conv-kernels.ts),
 * and MaxPoolGrad. Milliseconds per call, median of 5 after a warm-up.
 *
 *   npx tsx bench/conv-kernels.ts
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend/index.js';

function median(fn: () => tf.Tensor): number {
  fn().dispose();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    fn().dispose();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[2];
}

async function main(): Promise<void> {
  await selectBackend('wasm');
  const cases: [
    string,
    [number, number, number, number],
    [number, number, number, number],
    'same' | 'valid',
  ][] = [
    ['lenet conv1', [256, 28, 28, 1], [5, 5, 1, 6], 'same'],
    ['lenet conv2', [256, 14, 14, 6], [5, 5, 6, 16], 'valid'],
    ['cnn conv1', [256, 28, 28, 1], [3, 3, 1, 16], 'same'],
    ['cnn conv2', [256, 14, 14, 16], [3, 3, 16, 32], 'same'],
    ['32->64 at 14x14', [256, 14, 14, 32], [3, 3, 32, 64], 'same'],
  ];
  console.log('case               x                  filter       fwd ms   dx ms   dw ms');
  for (const [name, xs, fs, pad] of cases) {
    const x = tf.randomUniform(xs, 0, 1) as tf.Tensor4D;
    const f = tf.randomUniform(fs, -0.1, 0.1) as tf.Tensor4D;
    const y = tf.conv2d(x, f, 1, pad);
    const dy = tf.randomUniform(y.shape, -1, 1);
    const attrs = { strides: 1, pad, dataFormat: 'NHWC' };
    const fwd = median(() => tf.conv2d(x, f, 1, pad));
    const dx = median(
      () =>
        tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, {
          ...attrs,
          inputShape: xs,
        } as unknown as tf.NamedAttrMap) as tf.Tensor,
    );
    const dw = median(
      () =>
        tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
          ...attrs,
          filterShape: fs,
        } as unknown as tf.NamedAttrMap) as tf.Tensor,
    );
    console.log(
      `${name.padEnd(18)} ${JSON.stringify(xs).padEnd(18)} ${JSON.stringify(fs).padEnd(12)} ${fwd.toFixed(1).padStart(6)} ${dx.toFixed(1).padStart(7)} ${dw.toFixed(1).padStart(7)}`,
    );
    tf.dispose([x, f, y, dy]);
  }
  const x = tf.randomUniform([256, 28, 28, 16]) as tf.Tensor4D;
  const y = tf.maxPool(x, 2, 2, 'valid');
  const dy = tf.randomUniform(y.shape);
  const ms = median(
    () =>
      tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: y }, {
        filterSize: 2,
        strides: 2,
        pad: 'valid',
      } as unknown as tf.NamedAttrMap) as tf.Tensor,
  );
  console.log(`MaxPoolGrad 2x2/2 on [256,28,28,16]: ${ms.toFixed(1)} ms`);
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${(err as Error).message}`);
  process.exit(1);
});

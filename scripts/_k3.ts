import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from '/work/wt-4/src/backend/index.js';
try {
await selectBackend('wasm');
function rnd(shape: number[], seed: number) { return tf.randomUniform(shape, -1, 1, 'float32', seed); }
const cases: [number[], number[], number, any][] = [
  [[4, 28, 28, 1], [5, 5, 1, 6], 1, 2],
  [[4, 14, 14, 6], [5, 5, 6, 16], 1, 'valid'],
  [[4, 28, 28, 1], [3, 3, 1, 32], 1, 'same'],
  [[4, 14, 14, 32], [3, 3, 32, 64], 1, 'same'],
  [[3, 9, 9, 4], [3, 3, 4, 5], 2, 'same'],
  [[3, 9, 9, 4], [3, 3, 4, 5], 2, 'valid'],
];
await tf.setBackend('wasm');
for (const [xs, fs] of [[[256, 28, 28, 1], [3, 3, 1, 32]], [[256, 14, 14, 32], [3, 3, 32, 64]], [[256,7,7,64],[3,3,64,128]]] as number[][][]) {
  const x = rnd(xs, 1) as tf.Tensor4D, f = rnd(fs, 2) as tf.Tensor4D;
  const y = tf.conv2d(x, f, 1, 'same'); const dy = rnd(y.shape, 3);
  const time = (fn: () => tf.Tensor) => { fn().dispose(); const t = performance.now(); for (let i = 0; i < 3; i++) fn().dispose(); return ((performance.now() - t) / 3).toFixed(1); };
  (globalThis as any).__T={im:0,tr:0,mm:0,acc:0};
  console.log(xs, fs, 'fwd', time(() => tf.conv2d(x, f, 1, 'same')), 'dx', time(() => tf.engine().runKernel("Conv2DBackpropInput", {dy: dy, filter: f}, {inputShape: xs, strides: 1, pad: 'same', dataFormat: "NHWC"} as any) as tf.Tensor), 'dw', time(() => tf.engine().runKernel("Conv2DBackpropFilter", {x: x, dy: dy}, {filterShape: fs, strides: 1, pad: 'same', dataFormat: "NHWC"} as any) as tf.Tensor));
  console.log((globalThis as any).__T);
}
} catch (e) { console.log("ERR", (e as Error).stack); }

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
for (const [xs, fs, st, pad] of cases) {
  const res: Record<string, Float32Array[]> = { dx: [], dw: [] };
  for (const b of ['cpu', 'wasm']) {
    await tf.setBackend(b);
    const x = rnd(xs, 1), f = rnd(fs, 2);
    const y = tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, st, pad);
    const dy = rnd(y.shape, 3);
    res.dx.push((tf.engine().runKernel("Conv2DBackpropInput", {dy: dy, filter: f}, {inputShape: xs, strides: st, pad: pad, dataFormat: "NHWC"} as any) as tf.Tensor).dataSync() as Float32Array);
    res.dw.push((tf.engine().runKernel("Conv2DBackpropFilter", {x: x, dy: dy}, {filterShape: fs, strides: st, pad: pad, dataFormat: "NHWC"} as any) as tf.Tensor).dataSync() as Float32Array);
  }
  const md = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  console.log(xs, fs, st, pad, 'dx', md(res.dx[0], res.dx[1]), 'dw', md(res.dw[0], res.dw[1]));
}
} catch (e) { console.log("ERR", (e as Error).stack); }

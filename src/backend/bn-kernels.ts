/**
 * Batch normalization in training mode as two wasm kernels, for the layer in
 * core/models/batch-norm.ts.
 *
 * tfjs-layers trains batch norm through tf.moments and tf.batchNorm, and autodiff of those
 * runs a dozen kernels over the full activation (Mean, SquaredDifference, Sub, Mul, Rsqrt,
 * Tile, Sum with transposes, ...); for the cnn's 256x28x28x32 activations that made batch norm
 * cost more than the convolutions. Here the whole forward is two passes over x and the whole
 * backward two passes over x and dy, as plain loops over the wasm heap:
 *
 * - ImgclfBatchNormTrain (x, scale, offset) -> [y, mean, variance]: pass 1 sums x and x^2 per
 *   channel in float64 (exact enough for the one-pass variance: float32 squares are exact in
 *   float64), pass 2 writes y = (x - mean) * scale / sqrt(variance + eps) + offset. The
 *   variance is the biased batch variance, as tf.moments computes it.
 * - ImgclfBatchNormTrainGrad (dy, x, scale, mean, variance) -> [dx, dscale, doffset]: pass 1
 *   sums dy and dy * (x - mean) per channel, pass 2 writes
 *   dx = a * dy - b * (x - mean) - c, the full gradient through the batch statistics.
 *
 * The normalized axis is the last one (NHWC, or features of a rank-2 input): x is read as
 * [rows, channels]. Arithmetic is in float64 (JavaScript numbers) and rounded once on store.
 * The loops take four rows per iteration so each channel's accumulators and constants are
 * loaded once per four values: at [256,28,28,32] that cut the forward from 50 to 13 ms and the
 * backward from 73 to 21 ms, close to the memory traffic they need.
 *
 * Measured with bench/batch-norm.ts (wasm, 2 shared cores, medians): one forward + backward at
 * [256,28,28,32] 520-740 ms through tfjs-layers against 40-65 ms here, at [256,14,14,64] 230-350
 * against 20-38 ms; the cnn training step with batch norm went from 1.3-1.55 s to 0.34-0.51 s
 * (0.36-0.42 s without batch norm).
 */
import * as tf from '@tensorflow/tfjs-core';
import { BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL } from '../core/models/batch-norm.js';
import type { WasmBackendLike } from './wasm-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];

function epsilonOf(args: KernelArgs): number {
  return (args.attrs as unknown as { varianceEpsilon: number }).varianceEpsilon;
}

function checkFloat32(name: string, ...ts: tf.TensorInfo[]): void {
  for (const t of ts) if (t.dtype !== 'float32') throw new Error(`${name} supports float32 only`);
}

/** Batch statistics and the normalized output. */
export function batchNormTrain(args: KernelArgs): tf.TensorInfo[] {
  const { x, scale, offset } = args.inputs as {
    x: tf.TensorInfo;
    scale: tf.TensorInfo;
    offset: tf.TensorInfo;
  };
  checkFloat32(BN_TRAIN_KERNEL, x, scale, offset);
  const backend = args.backend as unknown as WasmBackendLike;
  const eps = epsilonOf(args);
  const ch = x.shape[x.shape.length - 1];
  const size = tf.util.sizeFromShape(x.shape);
  const rows = size / ch;
  const y = backend.makeOutput(x.shape, 'float32');
  const meanOut = backend.makeOutput([ch], 'float32');
  const varOut = backend.makeOutput([ch], 'float32');
  // Views only after every allocation: growing the wasm heap detaches older ones.
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const ys = backend.typedArrayFromHeap(y) as Float32Array;
  const g = backend.typedArrayFromHeap(scale) as Float32Array;
  const b = backend.typedArrayFromHeap(offset) as Float32Array;
  const s = new Float64Array(ch);
  const q = new Float64Array(ch);
  const ch2 = 2 * ch;
  const ch3 = 3 * ch;
  const ch4 = 4 * ch;
  const body = (rows - (rows % 4)) * ch;
  let i = 0;
  for (; i < body; i += ch4) {
    for (let c = 0; c < ch; c++) {
      const j = i + c;
      const v0 = xs[j];
      const v1 = xs[j + ch];
      const v2 = xs[j + ch2];
      const v3 = xs[j + ch3];
      s[c] += v0 + v1 + (v2 + v3);
      q[c] += v0 * v0 + v1 * v1 + (v2 * v2 + v3 * v3);
    }
  }
  for (; i < size; i += ch) {
    for (let c = 0; c < ch; c++) {
      const v = xs[i + c];
      s[c] += v;
      q[c] += v * v;
    }
  }
  const mean = new Float64Array(ch);
  const a = new Float64Array(ch);
  const means = backend.typedArrayFromHeap(meanOut) as Float32Array;
  const vars = backend.typedArrayFromHeap(varOut) as Float32Array;
  for (let c = 0; c < ch; c++) {
    const m = s[c] / rows;
    // Rounding can leave a tiny negative for a constant channel.
    const v = Math.max(0, q[c] / rows - m * m);
    mean[c] = m;
    a[c] = g[c] / Math.sqrt(v + eps);
    means[c] = m;
    vars[c] = v;
  }
  for (i = 0; i < body; i += ch4) {
    for (let c = 0; c < ch; c++) {
      const j = i + c;
      const mc = mean[c];
      const ac = a[c];
      const bc = b[c];
      ys[j] = (xs[j] - mc) * ac + bc;
      ys[j + ch] = (xs[j + ch] - mc) * ac + bc;
      ys[j + ch2] = (xs[j + ch2] - mc) * ac + bc;
      ys[j + ch3] = (xs[j + ch3] - mc) * ac + bc;
    }
  }
  for (; i < size; i += ch) {
    for (let c = 0; c < ch; c++) ys[i + c] = (xs[i + c] - mean[c]) * a[c] + b[c];
  }
  return [y, meanOut, varOut];
}

/** Gradients of batchNormTrain's y with respect to x, scale and offset. */
export function batchNormTrainGrad(args: KernelArgs): tf.TensorInfo[] {
  const { dy, x, scale, mean, variance } = args.inputs as Record<
    'dy' | 'x' | 'scale' | 'mean' | 'variance',
    tf.TensorInfo
  >;
  checkFloat32(BN_TRAIN_GRAD_KERNEL, dy, x, scale, mean, variance);
  const backend = args.backend as unknown as WasmBackendLike;
  const eps = epsilonOf(args);
  const ch = x.shape[x.shape.length - 1];
  const size = tf.util.sizeFromShape(x.shape);
  const rows = size / ch;
  const dxOut = backend.makeOutput(x.shape, 'float32');
  const dgOut = backend.makeOutput([ch], 'float32');
  const dbOut = backend.makeOutput([ch], 'float32');
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const dxs = backend.typedArrayFromHeap(dxOut) as Float32Array;
  const g = backend.typedArrayFromHeap(scale) as Float32Array;
  const mf = backend.typedArrayFromHeap(mean) as Float32Array;
  const vf = backend.typedArrayFromHeap(variance) as Float32Array;
  const m = Float64Array.from(mf);
  const sdy = new Float64Array(ch);
  const sdyx = new Float64Array(ch);
  const ch2 = 2 * ch;
  const ch3 = 3 * ch;
  const ch4 = 4 * ch;
  const body = (rows - (rows % 4)) * ch;
  let i = 0;
  for (; i < body; i += ch4) {
    for (let c = 0; c < ch; c++) {
      const j = i + c;
      const mc = m[c];
      const d0 = dys[j];
      const d1 = dys[j + ch];
      const d2 = dys[j + ch2];
      const d3 = dys[j + ch3];
      sdy[c] += d0 + d1 + (d2 + d3);
      sdyx[c] +=
        d0 * (xs[j] - mc) + d1 * (xs[j + ch] - mc) + (d2 * (xs[j + ch2] - mc) + d3 * (xs[j + ch3] - mc));
    }
  }
  for (; i < size; i += ch) {
    for (let c = 0; c < ch; c++) {
      const d = dys[i + c];
      sdy[c] += d;
      sdyx[c] += d * (xs[i + c] - m[c]);
    }
  }
  // With r = 1/sqrt(var + eps) and xhat = (x - mean) r:
  // dx = g r (dy - sum(dy)/M - xhat sum(dy xhat)/M) = ka dy - kb (x - mean) - kc.
  const ka = new Float64Array(ch);
  const kb = new Float64Array(ch);
  const kc = new Float64Array(ch);
  const dg = backend.typedArrayFromHeap(dgOut) as Float32Array;
  const db = backend.typedArrayFromHeap(dbOut) as Float32Array;
  for (let c = 0; c < ch; c++) {
    const r = 1 / Math.sqrt(vf[c] + eps);
    ka[c] = g[c] * r;
    kb[c] = (ka[c] * r * r * sdyx[c]) / rows;
    kc[c] = (ka[c] * sdy[c]) / rows;
    dg[c] = sdyx[c] * r;
    db[c] = sdy[c];
  }
  for (i = 0; i < body; i += ch4) {
    for (let c = 0; c < ch; c++) {
      const j = i + c;
      const mc = m[c];
      const a = ka[c];
      const b = kb[c];
      const k = kc[c];
      dxs[j] = a * dys[j] - b * (xs[j] - mc) - k;
      dxs[j + ch] = a * dys[j + ch] - b * (xs[j + ch] - mc) - k;
      dxs[j + ch2] = a * dys[j + ch2] - b * (xs[j + ch2] - mc) - k;
      dxs[j + ch3] = a * dys[j + ch3] - b * (xs[j + ch3] - mc) - k;
    }
  }
  for (; i < size; i += ch) {
    for (let c = 0; c < ch; c++) dxs[i + c] = ka[c] * dys[i + c] - kb[c] * (xs[i + c] - m[c]) - kc[c];
  }
  return [dxOut, dgOut, dbOut];
}

let registered = false;

/** Registers both kernels for wasm. Safe to call twice. */
export function registerBatchNormKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: BN_TRAIN_KERNEL, backendName: 'wasm', kernelFunc: batchNormTrain });
  tf.registerKernel({
    kernelName: BN_TRAIN_GRAD_KERNEL,
    backendName: 'wasm',
    kernelFunc: batchNormTrainGrad,
  });
}

/**
 * A fused softmax cross-entropy kernel for the CPU-side backends (wasm and cpu).
 *
 * Composed from tfjs ops, the loss, its gradient and the correct-prediction count of one
 * training step take about 16 kernels (one-hot, cast, log-softmax, products, sums, arg-max,
 * equal, ...), each with its own engine overhead, for a 256x10 tensor that one JS pass
 * handles in microseconds. This kernel returns, per row, the loss and the gradient
 * (softmax - target) and, for the batch, the number of rows whose arg-max is the label.
 * Backends without it (WebGL, WebGPU) use the composed ops in src/core/train/loss.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

import { SOFTMAX_XENT } from '../core/train/loss.js';

export { SOFTMAX_XENT };

export interface SoftmaxXentAttrs {
  /** Label smoothing epsilon: the target is (1 - eps) * onehot + eps / K. */
  labelSmoothing: number;
}

/**
 * The kernel's arithmetic on plain arrays. Writes per-row losses into `loss` and
 * softmax - target into `grad`, and returns how many rows' arg-max equals the label.
 * Subtracting the row max keeps exp() finite for logits like (1000, 1001).
 */
export function softmaxXentRows(
  logits: Float32Array,
  labels: Int32Array,
  rows: number,
  k: number,
  smoothing: number,
  loss: Float32Array,
  grad: Float32Array,
): number {
  let correct = 0;
  const off = smoothing / k;
  const on = 1 - smoothing + off;
  for (let r = 0; r < rows; r++) {
    const base = r * k;
    let max = -Infinity;
    let arg = 0;
    for (let j = 0; j < k; j++) {
      const v = logits[base + j];
      if (v > max) {
        max = v;
        arg = j;
      }
    }
    let sum = 0;
    for (let j = 0; j < k; j++) {
      const e = Math.exp(logits[base + j] - max);
      grad[base + j] = e;
      sum += e;
    }
    const logSum = Math.log(sum) + max;
    const label = labels[r];
    let l = 0;
    for (let j = 0; j < k; j++) {
      const target = j === label ? on : off;
      l -= target * (logits[base + j] - logSum);
      grad[base + j] = grad[base + j] / sum - target;
    }
    loss[r] = l;
    if (arg === label) correct++;
  }
  return correct;
}

interface HeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.TypedArray;
}

interface CpuBackend {
  data: { get(id: object): { values: tf.TypedArray } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.TypedArray): tf.TensorInfo;
}

function shapes(inputs: tf.NamedTensorInfoMap): {
  logits: tf.TensorInfo;
  labels: tf.TensorInfo;
  rows: number;
  k: number;
} {
  const logits = inputs.logits as tf.TensorInfo;
  const labels = inputs.labels as tf.TensorInfo;
  return { logits, labels, rows: logits.shape[0], k: logits.shape[1] };
}

let registered = false;

/** Registers the kernel for wasm and cpu (safe to call more than once). */
export function registerFusedXent(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: SOFTMAX_XENT,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as HeapBackend;
      const { logits, labels, rows, k } = shapes(inputs);
      const loss = b.makeOutput([rows], 'float32');
      const grad = b.makeOutput([rows, k], 'float32');
      const correct = b.makeOutput([], 'float32');
      const n = softmaxXentRows(
        b.typedArrayFromHeap(logits) as Float32Array,
        b.typedArrayFromHeap(labels) as Int32Array,
        rows,
        k,
        (attrs as unknown as SoftmaxXentAttrs).labelSmoothing,
        b.typedArrayFromHeap(loss) as Float32Array,
        b.typedArrayFromHeap(grad) as Float32Array,
      );
      (b.typedArrayFromHeap(correct) as Float32Array)[0] = n;
      return [loss, grad, correct];
    },
  });
  tf.registerKernel({
    kernelName: SOFTMAX_XENT,
    backendName: 'cpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { logits, labels, rows, k } = shapes(inputs);
      const loss = new Float32Array(rows);
      const grad = new Float32Array(rows * k);
      const n = softmaxXentRows(
        b.data.get(logits.dataId).values as Float32Array,
        b.data.get(labels.dataId).values as Int32Array,
        rows,
        k,
        (attrs as unknown as SoftmaxXentAttrs).labelSmoothing,
        loss,
        grad,
      );
      return [
        b.makeTensorInfo([rows], 'float32', loss),
        b.makeTensorInfo([rows, k], 'float32', grad),
        b.makeTensorInfo([], 'float32', Float32Array.of(n)),
      ];
    },
  });
}

/**
 * Does the ONNX file compute what the tfjs model computes? Runs the same inputs through the
 * model (softmax of its logits, inference mode) and through ONNX Runtime, and reports the
 * largest absolute difference in any class probability and how often the top class agrees.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import type { Net } from '../../core/models/net.js';
import { INPUT_NAME, OUTPUT_NAME } from './onnx.js';

/** The tolerance the tests and `export --check` hold the export to. */
export const PARITY_TOLERANCE = 1e-4;

export interface Parity {
  /** Images compared. */
  images: number;
  /** Largest |p_tfjs - p_onnx| over every image and class. */
  maxAbsDiff: number;
  /** Images whose top class is the same in both. */
  argmaxAgree: number;
  /** With labels: the share of images ONNX Runtime classifies correctly. */
  onnxAccuracy?: number;
  tfjsSeconds: number;
  onnxSeconds: number;
}

/** Whether a parity result is within PARITY_TOLERANCE with every top class agreeing. */
export function parityOk(p: Parity): boolean {
  return p.maxAbsDiff <= PARITY_TOLERANCE && p.argmaxAgree === p.images;
}

/** onnxruntime-node (an optional dependency), or a one-line error saying how to get it. */
export async function loadOnnxRuntime(): Promise<typeof import('onnxruntime-node')> {
  try {
    return await import('onnxruntime-node');
  } catch (err) {
    throw new UserError(
      `checking an ONNX export needs onnxruntime-node, which did not load (${(err as Error).message.split('\n')[0]}); run 'npm install onnxruntime-node'`,
    );
  }
}

function argmax(values: Float32Array, from: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (values[from + j] > values[from + best]) best = j;
  return best;
}

/**
 * Compares `net` (tfjs, the current backend) with the ONNX file `onnxBytes` on `count` NHWC
 * images of `shape`, prepared as the model takes them (pixels / scale). With `labels`, also
 * reports ONNX Runtime's accuracy on them.
 */
export async function onnxParity(
  net: Pick<Net, 'apply'>,
  onnxBytes: Uint8Array,
  images: Float32Array,
  count: number,
  shape: ImageShape,
  opts: { labels?: Uint8Array; batchSize?: number } = {},
): Promise<Parity> {
  const batchSize = opts.batchSize ?? 250;
  const ort = await loadOnnxRuntime();
  const session = await ort.InferenceSession.create(onnxBytes);
  const size = shape[0] * shape[1] * shape[2];
  let maxAbsDiff = 0;
  let argmaxAgree = 0;
  let correct = 0;
  let tfjsSeconds = 0;
  let onnxSeconds = 0;
  try {
    for (let start = 0; start < count; start += batchSize) {
      const n = Math.min(batchSize, count - start);
      const x = images.subarray(start * size, (start + n) * size);
      let t0 = performance.now();
      const probs = tf.tidy(() =>
        tf.softmax(net.apply(tf.tensor4d(x, [n, ...shape]), { training: false }) as tf.Tensor2D),
      );
      const expected = (await probs.data()) as Float32Array;
      probs.dispose();
      tfjsSeconds += (performance.now() - t0) / 1000;
      t0 = performance.now();
      const result = await session.run({ [INPUT_NAME]: new ort.Tensor('float32', x, [n, ...shape]) });
      const actual = result[OUTPUT_NAME].data as Float32Array;
      onnxSeconds += (performance.now() - t0) / 1000;
      if (actual.length !== expected.length)
        throw new Error(`ONNX output has ${actual.length} values, tfjs ${expected.length}`);
      const k = expected.length / n;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < k; j++)
          maxAbsDiff = Math.max(maxAbsDiff, Math.abs(expected[i * k + j] - actual[i * k + j]));
        const top = argmax(actual, i * k, k);
        if (argmax(expected, i * k, k) === top) argmaxAgree++;
        if (opts.labels && opts.labels[start + i] === top) correct++;
      }
    }
  } finally {
    await session.release();
  }
  return {
    images: count,
    maxAbsDiff,
    argmaxAgree,
    ...(opts.labels ? { onnxAccuracy: correct / count } : {}),
    tfjsSeconds,
    onnxSeconds,
  };
}

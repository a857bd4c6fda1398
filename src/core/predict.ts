/** Class probabilities for prepared inputs (no I/O: shared by the CLI, the server and tests). */
import * as tf from '@tensorflow/tfjs-core';
import type { Net } from './models/net.js';

/** Softmax probabilities for a batch of prepared inputs. */
export function predictProbabilities(
  model: Pick<Net, 'apply'>,
  inputs: Float32Array,
  n: number,
  shape: number[],
): Float32Array[] {
  const probs = tf.tidy(() =>
    tf.softmax(model.apply(tf.tensor(inputs, [n, ...shape]), { training: false }) as tf.Tensor2D),
  );
  const flat = probs.dataSync() as Float32Array;
  probs.dispose();
  const k = flat.length / n;
  return Array.from({ length: n }, (_, i) => flat.slice(i * k, (i + 1) * k));
}

/** Indices of the k largest values, largest first. */
export function topK(values: ArrayLike<number>, k: number): number[] {
  return Array.from(values, (v, i) => [v, i] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, k)
    .map(([, i]) => i);
}

/** Whole-split transforms, done once at load time rather than per batch. */
import * as tf from '@tensorflow/tfjs-core';
import { type ImageShape, pixelsAsFloat, type Split } from './dataset.js';

/**
 * Bilinear resize of every image to size x size (the seed's optional `Resize`), in chunks so
 * the temporary tensors stay small.
 */
export function resizeSplit(split: Split, shape: ImageShape, size: number, chunk = 2000): Split {
  const [h, w, c] = shape;
  if (h === size && w === size) return split;
  const outRow = size * size * c;
  const images = new Float32Array(split.count * outRow);
  for (let start = 0; start < split.count; start += chunk) {
    const n = Math.min(chunk, split.count - start);
    const out = tf.tidy(() => {
      const x = tf.tensor4d(pixelsAsFloat(split.images, start * h * w * c, n * h * w * c), [n, h, w, c]);
      return tf.image.resizeBilinear(x, [size, size], false, true);
    });
    images.set(out.dataSync() as Float32Array, start * outRow);
    out.dispose();
  }
  return { images, labels: split.labels, count: split.count };
}

/** The shape after an optional resize. */
export function resizedShape(shape: ImageShape, size?: number): ImageShape {
  return size ? [size, size, shape[2]] : shape;
}

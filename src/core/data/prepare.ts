/**
 * The rules for turning a picture into a model's input, followed by both preparers: Node's
 * (node/image.ts, with sharp: `predict`, `serve` and image folders) and the page's (a canvas,
 * web/src/pixels.ts). They resample differently, so the values differ slightly, but the steps
 * and their numbers are these.
 */
import { type ImageShape, pixelsAsFloat } from './dataset.js';
import type { Preprocessing } from './source.js';

/**
 * The picture is first brought to at most this many pixels a side (never fewer than 4x the
 * model's input): everything after works on that small copy, and a large JPEG decodes at a
 * fraction of its size.
 */
export const WORKING_SIDE = 256;

/** The side of the working copy for a model taking `shape`. */
export function workingSide(shape: ImageShape): number {
  return Math.max(WORKING_SIDE, 4 * Math.max(shape[0], shape[1]));
}

/** The light-background probe: the picture in gray, stretched to this many pixels a side. */
export const BORDER_PROBE_SIDE = 32;

/** Mean of the outermost ring of pixels of a single-channel image, in 0..255. */
export function borderMean(pixels: Uint8Array, width: number, height: number): number {
  let sum = 0;
  let n = 0;
  for (let x = 0; x < width; x++) {
    sum += pixels[x] + pixels[(height - 1) * width + x];
    n += 2;
  }
  for (let y = 1; y < height - 1; y++) {
    sum += pixels[y * width] + pixels[y * width + width - 1];
    n += 2;
  }
  return sum / n;
}

/**
 * Whether a probe (BORDER_PROBE_SIDE square, gray bytes) shows a light background: for a model
 * with `invertLightBackground` (MNIST-like data, light strokes on black) the picture is then
 * inverted.
 */
export function lightBackground(probe: Uint8Array): boolean {
  return borderMean(probe, BORDER_PROBE_SIDE, BORDER_PROBE_SIDE) > 127;
}

/**
 * Prepared bytes (0..255) as the model's input: divided by the run's `scale`. Every run records
 * 255, and then the values are exactly those the model trained on (pixelsAsFloat).
 */
export function inputFromBytes(bytes: Uint8Array, pre: Pick<Preprocessing, 'scale'>): Float32Array {
  if (pre.scale === 255) return pixelsAsFloat(bytes);
  return Float32Array.from(bytes, (v) => v / pre.scale);
}

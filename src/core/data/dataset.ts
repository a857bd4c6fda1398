/**
 * The in-memory dataset every part of imgclf trains and evaluates on. Data lives in memory once,
 * already scaled to [0, 1], so the hot loop only copies rows.
 */
import { UserError } from '../errors.js';

/** Height, width, channels of one image (NHWC layout, as tfjs uses). */
export type ImageShape = [number, number, number];

export interface Split {
  /** N * H * W * C pixels in [0, 1], row-major NHWC. */
  images: Float32Array;
  /** N class indices. */
  labels: Uint8Array;
  /** Number of examples. */
  count: number;
  /** The file each example came from (image folders), for reports that name their mistakes. */
  files?: string[];
}

export interface Dataset {
  /** Short name, e.g. "fashion-mnist". */
  name: string;
  /** English class names, index = label. */
  classNames: string[];
  shape: ImageShape;
  train: Split;
  test: Split;
}

/** Pixels per image (H * W * C). */
export function imageSize(shape: ImageShape): number {
  return shape[0] * shape[1] * shape[2];
}

/** Builds a split from raw bytes (0..255), scaling to [0, 1] once. */
export function splitFromBytes(
  pixels: Uint8Array,
  labels: Uint8Array,
  numClasses: number,
  source: string,
): Split {
  const count = labels.length;
  for (let i = 0; i < count; i++) {
    if (labels[i] >= numClasses) {
      throw new UserError(`${source}: label ${labels[i]} at index ${i} is outside 0..${numClasses - 1}`);
    }
  }
  const images = new Float32Array(pixels.length);
  const scale = 1 / 255;
  for (let i = 0; i < pixels.length; i++) images[i] = pixels[i] * scale;
  return { images, labels: Uint8Array.from(labels), count };
}

/** Per-class example counts. */
export function classCounts(labels: Uint8Array, numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (const l of labels) counts[l]++;
  return counts;
}

/**
 * Mean brightness (0..1) of the outermost pixel ring of the first `limit` images, over all
 * channels. MNIST-like data (light strokes on black) scores near 0, photos and scans higher;
 * it decides whether `predict` inverts light-background pictures for a model.
 */
export function borderBrightness(split: Split, shape: ImageShape, limit = 1000): number {
  const [h, w, c] = shape;
  const row = h * w * c;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < Math.min(split.count, limit); i++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (y !== 0 && y !== h - 1 && x !== 0 && x !== w - 1) continue;
        for (let k = 0; k < c; k++) sum += split.images[i * row + (y * w + x) * c + k];
        n += c;
      }
    }
  }
  return n ? sum / n : 0;
}

/**
 * The in-memory dataset every part of imgclf trains and evaluates on. Data lives in memory once,
 * as the bytes it was decoded to (a quarter of float32's size: 10,000 RGB images of 224x224 are
 * 1.5 GB as bytes, 6 GB as floats), and each batch is scaled to [0, 1] as it is gathered.
 */
import { UserError } from '../errors.js';

/** Height, width, channels of one image (NHWC layout, as tfjs uses). */
export type ImageShape = [number, number, number];

/**
 * Pixel storage: bytes 0..255 (decoded images, IDX and CSV data) or floats in [0, 1] (resized
 * data, computed features). Read rows through `copyPixels` or `pixelsAsFloat`.
 */
export type Pixels = Uint8Array | Float32Array;

/**
 * Bytes become floats by this factor: b * (1 / 255), the exact float32 values imgclf has always
 * trained on (b / 255 can differ in the last bit).
 */
export const BYTE_SCALE = 1 / 255;

/** b * BYTE_SCALE for every byte b, as float32: a lookup is faster than the multiply and round. */
const BYTE_FLOATS = Float32Array.from({ length: 256 }, (_, b) => b * BYTE_SCALE);

/** Copies `count` values of `src` from index `from` into `dst` at `at`, as floats in [0, 1]. */
export function copyPixels(src: Pixels, from: number, count: number, dst: Float32Array, at: number): void {
  if (src instanceof Float32Array) {
    dst.set(src.subarray(from, from + count), at);
    return;
  }
  for (let i = 0; i < count; i++) dst[at + i] = BYTE_FLOATS[src[from + i]];
}

/** `count` values of `src` from `from` as floats in [0, 1]: a view when already float, else a copy. */
export function pixelsAsFloat(src: Pixels, from = 0, count = src.length - from): Float32Array {
  if (src instanceof Float32Array) return src.subarray(from, from + count);
  const out = new Float32Array(count);
  copyPixels(src, from, count, out, 0);
  return out;
}

/**
 * `count` values of `src` from `from` as bytes 0..255: a view when already bytes, else floats
 * rounded to the nearest byte (to keep or write data that was scaled or resized as floats).
 */
export function pixelsAsBytes(src: Pixels, from = 0, count = src.length - from): Uint8Array {
  if (src instanceof Uint8Array) return src.subarray(from, from + count);
  return Uint8Array.from(src.subarray(from, from + count), (v) => Math.round(v * 255));
}

/**
 * Below this size as floats, `floatIfSmall` converts a byte split once, up front: the hot loop
 * then only copies rows (Fashion-MNIST's 60,000 images are 188 MB as floats). Larger data
 * (photo folders at 224 px) stays bytes and is scaled batch by batch.
 */
export const FLOAT_BUDGET_BYTES = 512 * 1024 * 1024;

/** `split` with float pixels when they fit FLOAT_BUDGET_BYTES (the same values either way). */
export function floatIfSmall(split: Split, budget = FLOAT_BUDGET_BYTES): Split {
  if (split.images instanceof Float32Array || split.images.length * 4 > budget) return split;
  return { ...split, images: pixelsAsFloat(split.images) };
}

export interface Split {
  /** N * H * W * C pixels, row-major NHWC: bytes 0..255 or floats in [0, 1]. */
  images: Pixels;
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

/** Builds a split from raw bytes (0..255), kept as bytes; labels are checked and copied. */
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
  return { images: pixels, labels: Uint8Array.from(labels), count };
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
  const unit = split.images instanceof Float32Array ? 1 : BYTE_SCALE;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < Math.min(split.count, limit); i++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (y !== 0 && y !== h - 1 && x !== 0 && x !== w - 1) continue;
        for (let k = 0; k < c; k++) sum += split.images[i * row + (y * w + x) * c + k] * unit;
        n += c;
      }
    }
  }
  return n ? sum / n : 0;
}

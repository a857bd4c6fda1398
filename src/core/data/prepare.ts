/**
 * The rules for turning a picture into a model's input, followed by both preparers: Node's
 * (node/image.ts, with sharp: `predict`, `serve` and image folders) and the page's (a canvas,
 * web/src/pixels.ts). They resample differently, so the values differ slightly, but the steps
 * and their numbers are these.
 */
import { copyPixels, type ImageShape, pixelsAsFloat } from './dataset.js';
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

/** The light-background probe: the picture in gray, seen as this many cells a side. */
export const BORDER_PROBE_SIDE = 32;

const toLinear = (v: number) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
};
const toSrgb = (l: number) => 255 * (l <= 0.0031308 ? 12.92 * l : 1.055 * l ** (1 / 2.4) - 0.055);
/** toLinear of every byte: the probe reads thousands of pixels a picture. */
const LINEAR = Float64Array.from({ length: 256 }, (_, v) => toLinear(v));

/**
 * Luminance of an sRGB pixel, in sRGB bytes, as libvips' b-w colourspace computes it (sharp's
 * greyscale): Rec. 709 weights in linear light. Node's fast path for pictures already at the
 * model's size and the page (which draws on a canvas) both turn colour into gray with it.
 */
export function gray(r: number, g: number, b: number): number {
  return Math.round(toSrgb(0.2126 * LINEAR[r] + 0.7152 * LINEAR[g] + 0.0722 * LINEAR[b]));
}

/** Pixels as both preparers hold them: H * W * C bytes, C 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA). */
export interface PixelGrid {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/**
 * Mean gray of a picture's border, 0..255: the picture is seen as a BORDER_PROBE_SIDE square grid
 * of cells, each the mean gray of the pixels it covers (the one nearest when the picture is
 * smaller than the grid), and the border is the grid's outermost ring. The ring is a thirty-second
 * of the picture deep, so a thin frame or a noisy edge row does not decide alone. Alpha is
 * ignored: both preparers have flattened the picture onto white before this.
 */
export function borderMean(p: PixelGrid): number {
  const n = BORDER_PROBE_SIDE;
  // The pixel span of cell i along a side of `size` pixels: at least one pixel.
  const span = (i: number, size: number): [number, number] => {
    const a = Math.min(size - 1, Math.floor((i * size) / n));
    return [a, Math.max(a + 1, Math.floor(((i + 1) * size) / n))];
  };
  const colour = p.channels >= 3;
  const cell = (cx: number, cy: number) => {
    const [x0, x1] = span(cx, p.width);
    const [y0, y1] = span(cy, p.height);
    let sum = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const at = (y * p.width + x) * p.channels;
        sum += colour ? gray(p.pixels[at], p.pixels[at + 1], p.pixels[at + 2]) : p.pixels[at];
      }
    }
    return sum / ((x1 - x0) * (y1 - y0));
  };
  let sum = 0;
  let cells = 0;
  for (let c = 0; c < n; c++) {
    sum += cell(c, 0) + cell(c, n - 1);
    cells += 2;
  }
  for (let c = 1; c < n - 1; c++) {
    sum += cell(0, c) + cell(n - 1, c);
    cells += 2;
  }
  return sum / cells;
}

/**
 * Whether a picture (its working copy, flattened onto white) has a light background: for a model
 * with `invertLightBackground` (MNIST-like data, light strokes on black) it is then inverted.
 */
export function lightBackground(p: PixelGrid): boolean {
  return borderMean(p) > 127;
}

/**
 * Prepared bytes (0..255) as the model's input: divided by the run's `scale`. Every run records
 * 255, and then the values are exactly those the model trained on (pixelsAsFloat).
 */
export function inputFromBytes(bytes: Uint8Array, pre: Pick<Preprocessing, 'scale'>): Float32Array {
  if (pre.scale === 255) return pixelsAsFloat(bytes);
  return Float32Array.from(bytes, (v) => v / pre.scale);
}

/** inputFromBytes written into `dst` at `at`, for a caller that gathers a batch in one buffer. */
export function inputInto(
  bytes: Uint8Array,
  pre: Pick<Preprocessing, 'scale'>,
  dst: Float32Array,
  at: number,
): void {
  if (pre.scale === 255) copyPixels(bytes, 0, bytes.length, dst, at);
  else for (let i = 0; i < bytes.length; i++) dst[at + i] = bytes[i] / pre.scale;
}

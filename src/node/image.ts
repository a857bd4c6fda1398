/**
 * Turning an arbitrary image file into a model input that looks like the training data
 * (Node only; decoding is sharp's). For Fashion-MNIST that means: grayscale, 28x28, object
 * centred, light object on a dark background. Photos usually have a light background, so
 * those are inverted; the border pixels decide which case an image is.
 */
import sharp, { type Metadata } from 'sharp';
import { UserError } from '../core/errors.js';
import type { ImageShape } from '../core/data/dataset.js';
import type { Preprocessing } from '../core/data/source.js';

/** Largest decoded image accepted, in pixels (guards against decompression bombs). */
export const MAX_PIXELS = 50_000_000;

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

/** The bytes are in no image format sharp knows (the server answers 415, not 400). */
export class NotAnImageError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'NotAnImageError';
  }
}

/** The image declares more pixels than imgclf decodes (a decompression bomb, or a huge scan). */
export class ImageTooLargeError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'ImageTooLargeError';
  }
}

export interface PreparedImage {
  /** H * W * C values in [0, 1], the model's input. */
  input: Float32Array;
  /** Whether the image was inverted to match a dark-background dataset. */
  inverted: boolean;
}

/**
 * The decode keeps at most this many pixels per side (never fewer than 4x the model's input):
 * libvips then decodes a large JPEG at a fraction of its size (shrink-on-load) instead of in
 * full, and everything after works on that small raw image.
 */
const WORKING_SIDE = 256;

/**
 * Decodes, converts and resizes `bytes` to the model's input. `name` is used in errors.
 *
 * The file is decoded once, into raw pixels no larger than needed; the background probe and
 * the final resize both start from those pixels.
 */
export async function prepareImage(
  bytes: Uint8Array,
  shape: ImageShape,
  pre: Preprocessing,
  name: string,
): Promise<PreparedImage> {
  const [height, width, channels] = shape;
  let meta: Metadata;
  try {
    // Reads the header only (no pixel limit needed: nothing is decoded yet), so unknown formats
    // are told apart from damaged images (415 vs 400) and from oversized ones (413).
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch {
    throw new NotAnImageError(
      `${name}: not an image imgclf can read (PNG, JPEG, WebP, GIF, TIFF or AVIF expected)`,
    );
  }
  if (!meta.width || !meta.height) throw new UserError(`${name}: image has no size`);
  if (meta.width * meta.height > MAX_PIXELS) {
    throw new ImageTooLargeError(
      `${name}: the image is ${meta.width}x${meta.height} pixels, more than the ${MAX_PIXELS / 1e6} million imgclf decodes; shrink it first`,
    );
  }
  try {
    const side = Math.max(WORKING_SIDE, 4 * Math.max(width, height));
    const decoded = await sharp(bytes, { limitInputPixels: MAX_PIXELS })
      .flatten({ background: '#ffffff' })
      .resize(side, side, { fit: 'inside', withoutEnlargement: true })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const { width: w, height: h, channels: c } = decoded.info;
    const raw = () => sharp(decoded.data, { raw: { width: w, height: h, channels: c } });
    let inverted = false;
    if (pre.invertLightBackground) {
      const probe = await raw().greyscale().resize(32, 32, { fit: 'fill' }).raw().toBuffer();
      inverted = borderMean(probe, 32, 32) > 127;
    }
    let img = raw();
    if (channels === 1) img = img.greyscale();
    if (inverted) img = img.negate({ alpha: false });
    const background = inverted || pre.invertLightBackground ? '#000000' : '#ffffff';
    img = img.resize(width, height, { fit: pre.resize, background });
    if (channels === 1) img = img.toColourspace('b-w');
    else img = img.removeAlpha().toColourspace('srgb');
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== channels || info.width !== width || info.height !== height) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
    }
    const input = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) input[i] = data[i] / pre.scale;
    return { input, inverted };
  } catch (err) {
    throw new UserError(`${name}: cannot decode the image (${(err as Error).message})`);
  }
}

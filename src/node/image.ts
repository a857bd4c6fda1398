/**
 * Turning an arbitrary image file into a model input that looks like the training data
 * (Node only; decoding is sharp's). For Fashion-MNIST that means: grayscale, 28x28, object
 * centred, light object on a dark background. Photos usually have a light background, so
 * those are inverted; the border pixels decide which case an image is.
 */
import sharp, { type Metadata, type Sharp } from 'sharp';
import { UserError } from '../core/errors.js';
import type { ImageShape } from '../core/data/dataset.js';
import { inputFromBytes, lightBackground, workingSide } from '../core/data/prepare.js';
import type { Preprocessing } from '../core/data/source.js';
import { jpegSize, pngSize } from './image-header.js';
import { decodePlainPng, type RawPixels } from './png.js';

/** Largest decoded image accepted, in pixels (guards against decompression bombs). */
export const MAX_PIXELS = 50_000_000;

/**
 * The formats imgclf decodes, as errors list them. SVG only when asked (`allowSvg`): rendering
 * one is unbounded work that no pixel count or timeout limits (a 1.6 KB file of nested <use>
 * renders for seconds in one uninterruptible call).
 */
export const IMAGE_FORMATS = ['PNG', 'JPEG', 'WebP', 'GIF', 'TIFF', 'AVIF'] as const;

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff' | 'avif' | 'svg';

/**
 * An SVG (with `allowSvg`) may hold at most this many <use> elements: each may repeat a group
 * that repeats others, so n of them can draw up to about e^(n/e) shapes; 16 keeps that in the
 * hundreds.
 */
export const MAX_SVG_USES = 16;

/** Largest image file read from an image folder, in bytes: a bigger one is skipped unread. */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024;

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
  /** H * W * C bytes (0..255), prepared: what the model's input is scaled from. */
  bytes: Uint8Array;
  /**
   * The model's input: `bytes` scaled by the run's preprocessing (inputFromBytes), made when first
   * read. Batch prediction and image folders copy `bytes` into their own buffers instead.
   */
  readonly input: Float32Array;
  /** Whether the image was inverted to match a dark-background dataset. */
  inverted: boolean;
}

function prepared(bytes: Uint8Array, pre: Preprocessing, inverted: boolean): PreparedImage {
  let input: Float32Array | undefined;
  return {
    bytes,
    inverted,
    get input() {
      return (input ??= inputFromBytes(bytes, pre));
    },
  };
}

export interface DecodeOptions {
  /** Decode SVG too (default false: see IMAGE_FORMATS). */
  allowSvg?: boolean;
  /** Most pixels (width x height of the first page, as the header declares) decoded; default MAX_PIXELS. */
  maxPixels?: number;
  /** Most pixels of an AVIF image, whose decoder is far slower per pixel; default maxPixels. */
  maxAvifPixels?: number;
  /** Whole seconds the decode may take before sharp stops it (0 or unset: no limit). */
  timeoutSeconds?: number;
}

/** What an image's header declares, read without decoding any pixel. */
export interface ImageHeader {
  format: ImageFormat;
  /** The size as the picture is seen, after its EXIF orientation (5..8 swap the stored sides). */
  width: number;
  height: number;
  /** Pages or frames in the file; only the first is ever decoded. */
  pages: number;
}

const ascii = (b: Uint8Array, at: number, n: number) =>
  b.length >= at + n ? String.fromCharCode(...b.subarray(at, at + n)) : '';

/**
 * The format by its magic bytes, before any decoder sees the file: anything else (PDF, XML,
 * libvips' own formats, compressed SVG) never reaches sharp. 'svg' is only a guess (text that
 * starts with '<'); sharp's metadata confirms it.
 */
function sniff(b: Uint8Array): ImageFormat | undefined {
  const head = ascii(b, 0, 12);
  if (head.startsWith('\x89PNG\r\n\x1a\n')) return 'png';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (head.startsWith('GIF87a') || head.startsWith('GIF89a')) return 'gif';
  if (head.startsWith('RIFF') && head.slice(8) === 'WEBP') return 'webp';
  if (/^(II\*\0|MM\0\*|II\+\0|MM\0\+)/.test(head)) return 'tiff';
  if (head.slice(4, 8) === 'ftyp') {
    // ISO-BMFF: the major brand, then compatible brands to the end of the ftyp box.
    const boxEnd = Math.min(b.length, ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0, 64);
    for (let at = 8; at + 4 <= boxEnd; at += 4) {
      if (at === 12) continue; // the minor version
      const brand = ascii(b, at, 4);
      if (brand === 'avif' || brand === 'avis') return 'avif';
    }
    return undefined;
  }
  const text = ascii(b, 0, Math.min(b.length, 64)).replace(/^\uFEFF|^\xEF\xBB\xBF/, '');
  return text.trimStart().startsWith('<') ? 'svg' : undefined;
}

/** What sharp calls each format (AVIF is its 'heif' with AV1 compression). */
const SHARP_FORMAT: Record<ImageFormat, string> = {
  png: 'png',
  jpeg: 'jpeg',
  webp: 'webp',
  gif: 'gif',
  tiff: 'tiff',
  avif: 'heif',
  svg: 'svg',
};

const expected = (allowSvg: boolean) =>
  `${IMAGE_FORMATS.slice(0, -1).join(', ')}${allowSvg ? `, ${IMAGE_FORMATS.at(-1)} or SVG` : ` or ${IMAGE_FORMATS.at(-1)}`} expected`;

/**
 * Reads and checks an image's header, decoding nothing: a format imgclf does not decode is a
 * NotAnImageError (the server's 415), a damaged header a UserError (400), more pixels than
 * allowed an ImageTooLargeError (413). The pixel count is the first page's, the one decoded.
 */
export async function readImageHeader(
  bytes: Uint8Array,
  name: string,
  opts: DecodeOptions = {},
): Promise<ImageHeader> {
  const allowSvg = opts.allowSvg ?? false;
  const format = sniff(bytes);
  if (format === undefined || (format === 'svg' && !allowSvg))
    throw new NotAnImageError(`${name}: not an image imgclf can read (${expected(allowSvg)})`);
  if (format === 'svg') checkSvg(bytes, name);
  const plain = format === 'png' ? pngSize(bytes) : format === 'jpeg' ? jpegSize(bytes) : undefined;
  if (plain) return checkedHeader(format, plain.width, plain.height, 1, name, opts);
  let meta: Metadata;
  try {
    // The header only, so no pixel limit is needed yet; `pages: 1` sizes the first page.
    meta = await sharp(bytes, { limitInputPixels: false, pages: 1 }).metadata();
  } catch {
    if (format === 'svg')
      throw new NotAnImageError(`${name}: not an image imgclf can read (${expected(true)})`);
    throw new UserError(`${name}: cannot decode the image (its ${format.toUpperCase()} header is damaged)`);
  }
  if (meta.format !== SHARP_FORMAT[format] || (format === 'avif' && meta.compression !== 'av1'))
    throw new NotAnImageError(`${name}: not an image imgclf can read (${expected(allowSvg)})`);
  // A photo taken sideways stores its pixels rotated and says so in EXIF Orientation; the
  // size that counts is the one prepareImage decodes to, upright.
  const { width, height } = meta.autoOrient ?? meta;
  return checkedHeader(format, width, height, meta.pages ?? 1, name, opts);
}

/** The header, once its size is known to be within the limits. */
function checkedHeader(
  format: ImageFormat,
  width: number | undefined,
  height: number | undefined,
  pages: number,
  name: string,
  opts: DecodeOptions,
): ImageHeader {
  if (!width || !height) throw new UserError(`${name}: image has no size`);
  const max =
    format === 'avif' ? (opts.maxAvifPixels ?? opts.maxPixels ?? MAX_PIXELS) : (opts.maxPixels ?? MAX_PIXELS);
  if (width * height > max) {
    throw new ImageTooLargeError(
      `${name}: the image is ${width}x${height} pixels, more than the ${+(max / 1e6).toFixed(2)} million imgclf decodes${format === 'avif' ? ' from an AVIF file' : ''}; shrink it first`,
    );
  }
  return { format, width, height, pages };
}

/** An SVG that could make librsvg work without end: entities, or too many <use> elements. */
function checkSvg(bytes: Uint8Array, name: string): void {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  if (/<!ENTITY/i.test(text))
    throw new ImageTooLargeError(`${name}: SVG with entity declarations is not decoded`);
  const uses = text.match(/<([\w-]+:)?use[\s/>]/g)?.length ?? 0;
  if (uses > MAX_SVG_USES)
    throw new ImageTooLargeError(
      `${name}: the SVG has ${uses} <use> elements, more than the ${MAX_SVG_USES} imgclf renders; send it as PNG`,
    );
}

/**
 * A sharp pipeline on the first page of an image file, upright: a photo taken sideways (EXIF
 * Orientation 2..8) is turned before anything else sees it, as every viewer shows it. Every
 * decode of a user's picture starts here (prepareImage for training, predict and serve; the
 * pictures of `predict --out`), so they all read it the same way. `maxPixels` is sharp's limit
 * while decoding.
 */
export function uprightImage(bytes: Uint8Array, maxPixels: number): Sharp {
  return sharp(bytes, { limitInputPixels: maxPixels, pages: 1, page: 0, autoOrient: true });
}

/**
 * The model's input from a picture that already has the model's size (a plain PNG decoded by
 * node/png.ts, or sharp's working copy of a small picture), or undefined when resampling or a
 * colour conversion is needed. Every step is then a per-pixel rule, applied as libvips applies
 * it, so the input is the one sharp's resize gives, byte for byte (`resizedInput`;
 * test/image-fast-path.test.ts): an opaque alpha channel dropped, gray copied into RGB, the
 * light-background probe, and inversion (255 - v). A picture with any transparency is left to
 * sharp, which flattens it onto white, and so is a colour picture for a gray model.
 */
export function inputAtSize(p: RawPixels, shape: ImageShape, pre: Preprocessing): PreparedImage | undefined {
  const [height, width, channels] = shape;
  if (p.width !== width || p.height !== height || !opaque(p)) return undefined;
  const inverted = pre.invertLightBackground && lightBackground(p);
  const src = p.pixels;
  const step = p.channels;
  const flip = inverted ? 255 : 0;
  const n = height * width;
  // Already the model's bytes: no copy.
  if (step === channels && !inverted) return prepared(src, pre, inverted);
  const out = new Uint8Array(n * channels);
  // One plain loop per case: this runs for every pixel of every picture.
  if (channels === 1 && step >= 3) {
    // libvips' gray of a colour goes through a table that core's `gray` does not copy; a
    // neutral pixel (r = g = b) comes back as itself, so only such pictures are taken.
    for (let i = 0, at = 0; i < n; i++, at += step) {
      const r = src[at];
      if (src[at + 1] !== r || src[at + 2] !== r) return undefined;
      out[i] = r ^ flip;
    }
  } else if (channels === 1 || step < 3) {
    // Gray to gray, or gray copied into each of R, G and B.
    for (let i = 0, at = 0, o = 0; i < n; i++, at += step) {
      const v = src[at] ^ flip;
      for (let k = 0; k < channels; k++) out[o++] = v;
    }
  } else {
    for (let i = 0, at = 0, o = 0; i < n; i++, at += step, o += 3) {
      out[o] = src[at] ^ flip;
      out[o + 1] = src[at + 1] ^ flip;
      out[o + 2] = src[at + 2] ^ flip;
    }
  }
  return prepared(out, pre, inverted);
}

/** Whether every pixel's alpha (where there is an alpha channel) is 255. */
function opaque(p: RawPixels): boolean {
  if (p.channels === 1 || p.channels === 3) return true;
  for (let at = p.channels - 1; at < p.pixels.length; at += p.channels)
    if (p.pixels[at] !== 255) return false;
  return true;
}

/**
 * The model's input from a working copy, by sharp: the light-background probe, gray or RGB,
 * inversion, and the resize with the run's mode (letterbox padding black for MNIST-like models,
 * else white).
 */
export async function resizedInput(
  copy: RawPixels,
  shape: ImageShape,
  pre: Preprocessing,
): Promise<PreparedImage> {
  const inverted = pre.invertLightBackground && lightBackground(copy);
  const raw = sharp(copy.pixels, {
    raw: { width: copy.width, height: copy.height, channels: copy.channels },
  });
  return finishedInput(raw, shape, pre, inverted);
}

/** The steps after the probe, on `img` (a working copy, or the decoded file itself). */
async function finishedInput(
  img: Sharp,
  shape: ImageShape,
  pre: Preprocessing,
  inverted: boolean,
): Promise<PreparedImage> {
  const [height, width, channels] = shape;
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
  return prepared(new Uint8Array(data.buffer, data.byteOffset, data.length), pre, inverted);
}

/**
 * Whether the file can be resized in the same pass that decodes it, with the bytes the two
 * passes give: no probe to wait for, and less than half the model's size away in each side, so
 * the working copy would be the picture itself and libvips' shrink-on-load (which changes the
 * pixels) cannot start. Pictures kept near the model's size (a dataset stored at 256 px for a
 * 224 px model) then cost one call into sharp instead of two.
 */
function resizedInOnePass(header: ImageHeader, shape: ImageShape, pre: Preprocessing): boolean {
  const [height, width] = shape;
  if (pre.invertLightBackground || (header.width === width && header.height === height)) return false;
  return header.width < 2 * width && header.height < 2 * height;
}

/**
 * Decodes, converts and resizes `bytes` to the model's input. `name` is used in errors.
 *
 * The header is checked first (readImageHeader; or pass the `header` already read). The file is
 * then decoded once, its first page only and upright (its EXIF orientation applied), into raw
 * pixels no larger than needed, within `timeoutSeconds`; the background probe and the final
 * resize both start from those pixels. All of it runs on libuv's threads (sharp): only the
 * model-sized copy is made here.
 *
 * Two shortcuts give the same bytes with less work (`inputAtSize`): a plain PNG at the model's
 * size is decoded here without sharp, and a working copy that already has the model's size
 * skips sharp's second pass. A call into sharp costs about 0.3 ms of CPU whatever the picture's
 * size, more than all the rest for a 28 px PNG.
 */
export async function prepareImage(
  bytes: Uint8Array,
  shape: ImageShape,
  pre: Preprocessing,
  name: string,
  opts: DecodeOptions & { header?: ImageHeader } = {},
): Promise<PreparedImage> {
  const png = decodePlainPng(bytes, shape[0] * shape[1]);
  const atSize = png && inputAtSize(png, shape, pre);
  if (atSize) return atSize;
  const header = opts.header ?? (await readImageHeader(bytes, name, opts));
  const seconds = opts.timeoutSeconds ?? 0;
  try {
    // The working copy (core/data/prepare.ts): libvips then decodes a large JPEG at a fraction
    // of its size (shrink-on-load) instead of in full.
    const limit = Math.max(1, header.width * header.height);
    if (resizedInOnePass(header, shape, pre)) {
      const file = uprightImage(bytes, limit).timeout({ seconds }).flatten({ background: '#ffffff' });
      return await finishedInput(file, shape, pre, false);
    }
    const side = workingSide(shape);
    const decoded = await uprightImage(bytes, limit)
      .timeout({ seconds })
      .flatten({ background: '#ffffff' })
      .resize(side, side, { fit: 'inside', withoutEnlargement: true })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const { width: w, height: h, channels: c } = decoded.info;
    const copy: RawPixels = {
      pixels: decoded.data,
      width: w,
      height: h,
      channels: c as RawPixels['channels'],
    };
    return inputAtSize(copy, shape, pre) ?? (await resizedInput(copy, shape, pre));
  } catch (err) {
    const message = (err as Error).message;
    if (seconds > 0 && /timeout/i.test(message))
      throw new ImageTooLargeError(
        `${name}: decoding took longer than ${seconds} s, the limit for one image; send a smaller image`,
      );
    throw new UserError(`${name}: cannot decode the image (${message.split('\n')[0]})`);
  }
}

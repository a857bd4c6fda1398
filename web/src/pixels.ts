/**
 * Turning a picture into a model's input in the page, the way `imgclf predict` does it in
 * Node (src/node/image.ts `prepareImage`, with sharp), by the core's rules (imgclf/core:
 * `workingSide`, `lightBackground`, `inputFromBytes`): transparency flattened onto white, the
 * picture brought to at most 256 pixels a side, then (for MNIST-like models) inverted when its
 * border is light, resized to the input size with the run's resize mode (fill stretches,
 * contain letterboxes, cover crops the centre), turned gray or kept RGB; the caller then
 * scales the bytes with `inputFromBytes`. Canvas resampling is not sharp's, so values differ
 * slightly; the labels agree (the tests compare the page's predictions with `imgclf
 * predict`'s).
 */
import {
  gray,
  type ImageShape,
  lightBackground,
  type PixelGrid,
  type Preprocessing,
  workingSide,
} from 'imgclf/core';

/** A picture the page can draw: a decoded file, a video frame, a canvas. */
export type Picture = ImageBitmap | HTMLVideoElement | HTMLCanvasElement;

function sizeOf(p: Picture): [number, number] {
  if (p instanceof HTMLVideoElement) return [p.videoWidth, p.videoHeight];
  return [p.width, p.height];
}

function canvas(w: number, h: number): [HTMLCanvasElement, CanvasRenderingContext2D] {
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  return [c, ctx];
}

/**
 * Decodes an image file (PNG, JPEG, WebP, GIF, ...), upright: a photo taken sideways stores
 * its pixels rotated and says so in EXIF Orientation, which 'from-image' applies, as `imgclf
 * predict` and training do (src/node/image.ts). Said explicitly, since older browsers'
 * createImageBitmap ignored the orientation by default. Every picture the page reads from a
 * file comes through here.
 */
export async function decode(blob: Blob): Promise<ImageBitmap> {
  try {
    return await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    throw new Error('not an image this browser can read');
  }
}

/** The picture flattened onto white and brought to at most `side` pixels a side. */
function working(p: Picture, side: number): HTMLCanvasElement {
  const [w, h] = sizeOf(p);
  if (!w || !h) throw new Error('the picture has no size (is the camera running?)');
  const scale = Math.min(1, side / Math.max(w, h));
  const [c, ctx] = canvas(Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale)));
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, c.width, c.height);
  ctx.drawImage(p, 0, 0, c.width, c.height);
  return c;
}

/** The working copy's pixels, for the core's light-background probe. */
function pixelGrid(src: HTMLCanvasElement): PixelGrid {
  const ctx = src.getContext('2d', { willReadFrequently: true })!;
  return {
    pixels: new Uint8Array(ctx.getImageData(0, 0, src.width, src.height).data.buffer),
    width: src.width,
    height: src.height,
    channels: 4,
  };
}

/** The input for a model of `shape` with `pre`: H * W * C bytes (0..255) and whether it was inverted. */
export function preparePixels(
  p: Picture,
  shape: ImageShape,
  pre: Preprocessing,
): { pixels: Uint8Array; inverted: boolean } {
  const [height, width, channels] = shape;
  const src = working(p, workingSide(shape));
  const inverted = pre.invertLightBackground && lightBackground(pixelGrid(src));
  const [, ctx] = canvas(width, height);
  // Letterbox padding: white, or black for MNIST-like models (white too when inverting after).
  ctx.fillStyle = pre.invertLightBackground && !inverted ? '#000' : '#fff';
  ctx.fillRect(0, 0, width, height);
  const [w, h] = [src.width, src.height];
  if (pre.resize === 'fill') {
    ctx.drawImage(src, 0, 0, width, height);
  } else if (pre.resize === 'contain') {
    const s = Math.min(width / w, height / h);
    const [dw, dh] = [w * s, h * s];
    ctx.drawImage(src, (width - dw) / 2, (height - dh) / 2, dw, dh);
  } else {
    const s = Math.max(width / w, height / h);
    const [sw, sh] = [width / s, height / s];
    ctx.drawImage(src, (w - sw) / 2, (h - sh) / 2, sw, sh, 0, 0, width, height);
  }
  const d = ctx.getImageData(0, 0, width, height).data;
  const pixels = new Uint8Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    let [r, g, b] = [d[i * 4], d[i * 4 + 1], d[i * 4 + 2]];
    if (inverted) [r, g, b] = [255 - r, 255 - g, 255 - b];
    if (channels === 1) pixels[i] = gray(r, g, b);
    else pixels.set([r, g, b], i * 3);
  }
  return { pixels, inverted };
}

/** H * W * C bytes as a canvas (gray repeated into RGB). */
export function pixelsCanvas(pixels: Uint8Array, shape: ImageShape): HTMLCanvasElement {
  const [height, width, channels] = shape;
  const [c, ctx] = canvas(width, height);
  const img = ctx.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let k = 0; k < 3; k++) img.data[i * 4 + k] = pixels[i * channels + (channels === 1 ? 0 : k)];
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/** H * W * C bytes as a PNG file. */
export async function encodePng(pixels: Uint8Array, shape: ImageShape): Promise<Uint8Array> {
  const blob = await canvasBlob(pixelsCanvas(pixels, shape), 'image/png');
  return new Uint8Array(await blob.arrayBuffer());
}

export function canvasBlob(c: HTMLCanvasElement, type: string, quality?: number): Promise<Blob> {
  return new Promise((resolve, reject) =>
    c.toBlob((b) => (b ? resolve(b) : reject(new Error('the canvas cannot be encoded'))), type, quality),
  );
}

/** A copy of the picture at most `side` pixels a side, as a JPEG file (webcam frames). */
export function snapshot(p: Picture, side: number): Promise<Blob> {
  const [w, h] = sizeOf(p);
  if (!w || !h) return Promise.reject(new Error('the camera has no picture yet'));
  const scale = Math.min(1, side / Math.max(w, h));
  const [c, ctx] = canvas(Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale)));
  ctx.drawImage(p, 0, 0, c.width, c.height);
  return canvasBlob(c, 'image/jpeg', 0.92);
}

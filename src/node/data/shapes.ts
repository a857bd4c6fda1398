/**
 * A small generated image folder (Node only; drawn with sharp from SVG): coloured circles,
 * squares, triangles and crosses on varied backgrounds, in mixed sizes and in PNG, JPEG, WebP
 * and GIF. It is the worked example of training on your own images, and the tests' fixture.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { Rng } from '../../core/data/rng.js';

export const SHAPE_CLASSES = ['circle', 'cross', 'square', 'triangle'] as const;
export type ShapeClass = (typeof SHAPE_CLASSES)[number];

const FORMATS = ['png', 'jpeg', 'webp', 'gif'] as const;
export type ImageFormat = (typeof FORMATS)[number];

// Darker than every background, so even a grayscale linear model sees the shape.
const COLOURS = ['#b22222', '#1f4e9a', '#1e7b1e', '#6a3d9a', '#b04a00', '#0f6f7f', '#222222'];
const BACKGROUNDS = ['#ffffff', '#f4f1e8', '#e8eef4', '#fdf6e3', '#eeeeee'];

/** The SVG of one shape, centred with some jitter in size and position. */
export function shapeSvg(shape: ShapeClass, size: number, rng: Rng): string {
  const colour = COLOURS[rng.int(COLOURS.length)];
  const bg = BACKGROUNDS[rng.int(BACKGROUNDS.length)];
  const r = size * (0.3 + 0.08 * rng.next());
  const cx = size / 2 + (rng.next() - 0.5) * size * 0.08;
  const cy = size / 2 + (rng.next() - 0.5) * size * 0.08;
  let body: string;
  switch (shape) {
    case 'circle':
      body = `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${colour}"/>`;
      break;
    case 'square':
      body = `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${colour}"/>`;
      break;
    case 'triangle':
      body = `<polygon points="${cx},${cy - r} ${cx + r},${cy + r * 0.8} ${cx - r},${cy + r * 0.8}" fill="${colour}"/>`;
      break;
    case 'cross': {
      const t = r * 0.35;
      body =
        `<rect x="${cx - r}" y="${cy - t}" width="${2 * r}" height="${2 * t}" fill="${colour}"/>` +
        `<rect x="${cx - t}" y="${cy - r}" width="${2 * t}" height="${2 * r}" fill="${colour}"/>`;
      break;
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="100%" height="100%" fill="${bg}"/>${body}</svg>`;
}

/** Encodes an SVG drawing in the given format. */
export async function renderSvg(svg: string, format: ImageFormat): Promise<Buffer> {
  const img = sharp(Buffer.from(svg));
  switch (format) {
    case 'png':
      return img.png().toBuffer();
    case 'jpeg':
      return img.jpeg({ quality: 90 }).toBuffer();
    case 'webp':
      return img.webp({ quality: 90 }).toBuffer();
    case 'gif':
      return img.gif().toBuffer();
  }
}

export interface ShapesOptions {
  /** Images per class. */
  perClass: number;
  classes?: readonly ShapeClass[];
  seed?: number;
  /** Side lengths are drawn from [minSize, maxSize] pixels. */
  minSize?: number;
  maxSize?: number;
}

/** Writes <dir>/<class>/<class>-<i>.<ext> for every class; returns the file paths. */
export async function writeShapesFolder(dir: string, opts: ShapesOptions): Promise<string[]> {
  const rng = new Rng(opts.seed ?? 1);
  const classes = opts.classes ?? SHAPE_CLASSES;
  const minSize = opts.minSize ?? 32;
  const maxSize = opts.maxSize ?? 96;
  const files: string[] = [];
  for (const shape of classes) {
    await mkdir(path.join(dir, shape), { recursive: true });
    for (let i = 0; i < opts.perClass; i++) {
      const size = minSize + rng.int(maxSize - minSize + 1);
      const format = FORMATS[files.length % FORMATS.length];
      const file = path.join(dir, shape, `${shape}-${i}.${format === 'jpeg' ? 'jpg' : format}`);
      await writeFile(file, await renderSvg(shapeSvg(shape, size, rng), format));
      files.push(file);
    }
  }
  return files;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/**
 * A valid PNG whose header declares width x height gray pixels but whose data is one row: a
 * few hundred bytes that would decode to a huge image. For testing the pixel limits (a
 * decompression bomb, an oversized scan); only its header is ever read.
 */
export function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth; colour type 0 (gray), compression, filter, interlace all 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(width + 1))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

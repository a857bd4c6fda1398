/**
 * Picture grids: dataset images enlarged with nearest-neighbour scaling (each source pixel
 * becomes an exact scale x scale block, so what you see is what the model saw), composed with
 * sharp onto a layer of captions. The caption layer is a small SVG of text and frames (one
 * text element per caption line, positioned by the grid layout), rasterized like the charts.
 */
import sharp from 'sharp';
import type { ImageShape } from '../../core/data/dataset.js';
import { FONT_FAMILY, svgToPng, textWidth } from './render.js';

export interface Caption {
  text: string;
  color?: string;
  bold?: boolean;
}

export interface GridItem {
  /** H * W * C pixels in [0, 1], as the dataset holds them. */
  pixels: Float32Array;
  captions: Caption[];
  /** Drawn with a red frame (a wrong prediction). */
  marked?: boolean;
}

export interface GridOptions {
  shape: ImageShape;
  title?: string;
  columns?: number;
}

export interface GridLayout {
  width: number;
  height: number;
  columns: number;
  rows: number;
  /** Each source pixel becomes a scale x scale block. */
  scale: number;
  /** Top-left corner of each image (its first pixel block). */
  tiles: { x: number; y: number }[];
  cellWidth: number;
  cellHeight: number;
  titleHeight: number;
}

export const CAPTION_SIZE = 13;
const LINE = 17;
const PAD = 8;
const FRAME = 3;
const TITLE_SIZE = 15;

/** Integer scale that makes an image about 112 pixels on its long side (4x for 28x28). */
export function gridScale(shape: ImageShape): number {
  return Math.max(1, Math.round(112 / Math.max(shape[0], shape[1])));
}

export function gridLayout(count: number, captionLines: number, opts: GridOptions): GridLayout {
  const [h, w] = opts.shape;
  const scale = gridScale(opts.shape);
  const columns = Math.max(1, Math.min(opts.columns ?? 8, count));
  const rows = Math.max(1, Math.ceil(count / columns));
  const cellWidth = Math.max(w * scale + 2 * (PAD + FRAME), 150);
  const cellHeight = h * scale + 2 * FRAME + PAD + captionLines * LINE + PAD;
  const titleHeight = opts.title ? TITLE_SIZE + 2 * PAD + 4 : PAD;
  const tiles = Array.from({ length: count }, (_, i) => ({
    x: PAD + (i % columns) * cellWidth + Math.floor((cellWidth - w * scale) / 2),
    y: titleHeight + Math.floor(i / columns) * cellHeight + FRAME,
  }));
  return {
    width: columns * cellWidth + 2 * PAD,
    height: titleHeight + rows * cellHeight + PAD,
    columns,
    rows,
    scale,
    tiles,
    cellWidth,
    cellHeight,
    titleHeight,
  };
}

export function escapeXml(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!,
  );
}

/** Shortens `text` with an ellipsis so it fits `maxWidth` pixels at `size`. */
export function fitText(text: string, size: number, maxWidth: number): string {
  if (textWidth(text, size) <= maxWidth) return text;
  const chars = [...text];
  while (chars.length > 1 && textWidth(chars.join('') + '…', size) > maxWidth) chars.pop();
  return chars.join('') + '…';
}

export interface TextSpec {
  x: number;
  y: number;
  text: string;
  size?: number;
  color?: string;
  bold?: boolean;
  anchor?: 'start' | 'middle' | 'end';
}

/** A white layer with text and frames, rendered to PNG: the canvas grids are composed onto. */
export async function textLayer(
  width: number,
  height: number,
  texts: TextSpec[],
  frames: { x: number; y: number; width: number; height: number; color: string }[] = [],
): Promise<Buffer> {
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...frames.map(
      (f) => `<rect x="${f.x}" y="${f.y}" width="${f.width}" height="${f.height}" fill="${f.color}"/>`,
    ),
    ...texts.map(
      (t) =>
        `<text x="${t.x}" y="${t.y}" font-family="${escapeXml(FONT_FAMILY)}" font-size="${t.size ?? CAPTION_SIZE}"` +
        ` fill="${t.color ?? '#222'}" text-anchor="${t.anchor ?? 'start'}"${t.bold ? ' font-weight="bold"' : ''}>` +
        `${escapeXml(t.text)}</text>`,
    ),
    '</svg>',
  ];
  return svgToPng(parts.join(''), 1);
}

/** One dataset image as 8-bit pixels, enlarged by `scale` with nearest-neighbour sampling. */
export async function tilePng(pixels: Float32Array, shape: ImageShape, scale: number): Promise<Buffer> {
  const [h, w, c] = shape;
  const bytes = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) bytes[i] = Math.round(Math.min(1, Math.max(0, pixels[i])) * 255);
  return sharp(bytes, { raw: { width: w, height: h, channels: c as 1 | 3 | 4 } })
    .resize(w * scale, h * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/** Draws `items` in a grid with captions under each image; returns PNG bytes and the layout. */
export async function imageGrid(
  items: GridItem[],
  opts: GridOptions,
): Promise<{ png: Buffer; layout: GridLayout }> {
  const lines = Math.max(1, ...items.map((it) => it.captions.length));
  const layout = gridLayout(Math.max(items.length, 1), lines, opts);
  const [h, w] = opts.shape;
  const s = layout.scale;
  const texts: TextSpec[] = [];
  const frames: { x: number; y: number; width: number; height: number; color: string }[] = [];
  if (opts.title)
    texts.push({
      x: PAD,
      y: PAD + TITLE_SIZE,
      text: fitText(opts.title, TITLE_SIZE, layout.width - 2 * PAD),
      size: TITLE_SIZE,
      bold: true,
    });
  items.forEach((it, i) => {
    const { x, y } = layout.tiles[i];
    if (it.marked)
      frames.push({
        x: x - FRAME,
        y: y - FRAME,
        width: w * s + 2 * FRAME,
        height: h * s + 2 * FRAME,
        color: '#d62728',
      });
    const cx = x + (w * s) / 2;
    it.captions.forEach((c, j) => {
      texts.push({
        x: cx,
        y: y + h * s + FRAME + PAD + CAPTION_SIZE + j * LINE,
        text: fitText(c.text, CAPTION_SIZE, layout.cellWidth - 6),
        color: c.color,
        bold: c.bold,
        anchor: 'middle',
      });
    });
  });
  const base = await textLayer(layout.width, layout.height, texts, frames);
  const tiles = await Promise.all(
    items.map(async (it, i) => ({
      input: await tilePng(it.pixels, opts.shape, s),
      left: layout.tiles[i].x,
      top: layout.tiles[i].y,
    })),
  );
  const png = await sharp(base).composite(tiles).png().toBuffer();
  return { png, layout };
}

/**
 * Annotated prediction pictures for `imgclf predict --out`: the image as given, what the model
 * saw (the prepared input, enlarged), and a bar chart of the top classes.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { Lang } from '../../core/data/classes.js';
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import { writeFileAtomic } from '../fs.js';
import { MAX_PIXELS, uprightImage } from '../image.js';
import { probabilitySpec } from './charts.js';
import { CAPTION_SIZE, fitText, gridScale, type GridItem, imageGrid, textLayer, tilePng } from './grid.js';
import { FONT_FAMILY, renderVegaLite, svgToPng } from './render.js';
import { strings } from './text.js';

/** Longest side of the original image in the picture, in pixels. */
export const ORIGINAL_SIZE = 224;
const PAD = 16;
const HEADER = 54;
const LINE = 17;

export interface AnnotateInput {
  /** The file's bytes (any format sharp reads). */
  bytes: Uint8Array;
  name: string;
  /** The prepared model input, H * W * C in [0, 1]. */
  input: Float32Array;
  shape: ImageShape;
  inverted: boolean;
  /** Top classes, most probable first, names as displayed. */
  top: { label: string; probability: number }[];
  lang: Lang;
}

export async function annotatedPrediction(a: AnnotateInput): Promise<Buffer> {
  const t = strings(a.lang);
  const source = uprightImage(a.bytes, MAX_PIXELS);
  // The size as the picture is shown (a sideways photo's stored sides are swapped).
  const meta = (await source.metadata()).autoOrient;
  const original = await source
    .flatten({ background: '#ffffff' })
    .resize(ORIGINAL_SIZE, ORIGINAL_SIZE, { fit: 'inside' })
    .png()
    .toBuffer({ resolveWithObject: true });
  const ow = original.info.width;
  const oh = original.info.height;
  const scale = gridScale(a.shape);
  const [h, w] = a.shape;
  const tile = await tilePng(a.input, a.shape, scale);
  const chart = await renderVegaLite(probabilitySpec(a.top, t, FONT_FAMILY));
  const chartPng = await svgToPng(chart.svg, 1);
  const inputColumn = Math.max(w * scale, 150);
  const inputX = PAD + ORIGINAL_SIZE + PAD + Math.round((inputColumn - w * scale) / 2);
  const chartX = PAD + ORIGINAL_SIZE + PAD + inputColumn + PAD;
  const width = Math.ceil(chartX + chart.width + PAD);
  const captionBelow = 2 * LINE + 6;
  const height = Math.ceil(
    HEADER + Math.max(oh + captionBelow, h * scale + captionBelow, chart.height) + PAD,
  );
  const best = a.top[0];
  const headline = `${t.predShort}: ${best.label} (${(best.probability * 100).toFixed(1)}%)`;
  const originalX = PAD + Math.round((ORIGINAL_SIZE - ow) / 2);
  const caption = (x: number, y: number, text: string) =>
    ({ x, y, text, anchor: 'middle', color: '#555' }) as const;
  const base = await textLayer(
    width,
    height,
    [
      { x: PAD, y: 24, text: headline, size: 17, bold: true },
      { x: PAD, y: 44, text: fitText(a.name, CAPTION_SIZE, width - 2 * PAD), color: '#555' },
      caption(PAD + ORIGINAL_SIZE / 2, HEADER + oh + LINE + 2, t.image),
      caption(PAD + ORIGINAL_SIZE / 2, HEADER + oh + 2 * LINE + 2, `${meta.width}×${meta.height}`),
      caption(inputX + (w * scale) / 2, HEADER + h * scale + LINE + 2, t.modelSees),
      caption(
        inputX + (w * scale) / 2,
        HEADER + h * scale + 2 * LINE + 2,
        `${w}×${h}${a.inverted ? `, ${t.inverted}` : ''}`,
      ),
    ],
    // A thin frame: a light-background photo would otherwise melt into the white page.
    [{ x: originalX - 1, y: HEADER - 1, width: ow + 2, height: oh + 2, color: '#bbbbbb' }],
  );
  return sharp(base)
    .composite([
      { input: original.data, left: originalX, top: HEADER },
      { input: tile, left: inputX, top: HEADER },
      { input: chartPng, left: Math.round(chartX), top: HEADER },
    ])
    .png()
    .toBuffer();
}

/** `--out` must be a folder (or not exist yet: it is created). */
export function checkOutDir(dir: string): void {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) throw new UserError(`--out ${dir} is a file, not a folder`);
}

/**
 * A file name in `dir` for `source`'s picture: its base name with .png, numbered when two
 * inputs of one call share a base name (a rerun overwrites its own earlier pictures).
 */
export function pictureName(dir: string, source: string, taken: Set<string>): string {
  if (taken.size === 0) checkOutDir(dir);
  const base = path.basename(source).replace(/\.[^.]+$/, '') || 'image';
  let name = `${base}.png`;
  for (let n = 2; taken.has(name); n++) name = `${base}-${n}.png`;
  taken.add(name);
  return path.join(dir, name);
}

/** Writes `a`'s annotated picture into `dir` and returns its path. */
export async function writeFilePicture(dir: string, taken: Set<string>, a: AnnotateInput): Promise<string> {
  const file = pictureName(dir, a.name, taken);
  await writeFileAtomic(file, await annotatedPrediction(a));
  return file;
}

export interface ShownTestImage {
  pixels: Float32Array;
  /** Display names. */
  truth: string;
  label: string;
}

/** The grid `predict --out` writes for test images (no files given): DIR/predictions.png. */
export async function writeTestGrid(
  dir: string,
  shown: ShownTestImage[],
  shape: ImageShape,
  lang: Lang,
): Promise<string> {
  checkOutDir(dir);
  const t = strings(lang);
  const items: GridItem[] = shown.map((s) => {
    const wrong = s.truth !== s.label;
    return {
      pixels: s.pixels,
      marked: wrong,
      captions: [
        { text: `${t.trueShort}: ${s.truth}` },
        { text: `${t.predShort}: ${s.label}`, color: wrong ? '#d62728' : '#2a8a2a', bold: wrong },
      ],
    };
  });
  const correct = shown.filter((s) => s.truth === s.label).length;
  const { png } = await imageGrid(items, { shape, title: t.predictionsTitle(shown.length, correct) });
  const file = path.join(dir, 'predictions.png');
  await writeFileAtomic(file, png);
  return file;
}

/**
 * Kaggle-style image CSV: one image per row, `label,pixel1,...,pixelN`, an optional header row,
 * pixels 0..255 row-major (HWC order for colour, so N = H*W or H*W*3 with square images). Pure:
 * text in, typed arrays out, so it runs in the browser too.
 */
import { UserError } from '../errors.js';
import type { ImageShape } from './dataset.js';

export interface CsvImages {
  /** The label column as written, one per image. */
  labels: string[];
  /** count * H * W * C bytes. */
  pixels: Uint8Array;
  count: number;
  shape: ImageShape;
}

/** The image shape N pixels describe: a square gray image, else a square RGB one. */
export function csvShape(n: number, name: string): ImageShape {
  const gray = Math.round(Math.sqrt(n));
  if (gray > 0 && gray * gray === n) return [gray, gray, 1];
  const rgb = Math.round(Math.sqrt(n / 3));
  if (rgb > 0 && rgb * rgb * 3 === n) return [rgb, rgb, 3];
  throw new UserError(
    `${name}: rows have ${n} pixel values, which is neither a square gray image (H*H) nor a square RGB one (H*H*3)`,
  );
}

function isNumber(s: string): boolean {
  return s.trim() !== '' && Number.isFinite(Number(s));
}

/** Parses the CSV text. `name` (the file) starts every error message. */
export function parseImageCsv(text: string, name: string): CsvImages {
  const lines = text.split(/\r?\n/);
  let first = 0;
  while (first < lines.length && lines[first].trim() === '') first++;
  if (first === lines.length) throw new UserError(`${name}: the CSV file is empty`);
  const head = lines[first].split(',');
  // A header names its columns; a data row has numbers in every pixel column.
  const hasHeader = head.slice(1).some((f) => !isNumber(f));
  const columns = head.length;
  if (columns < 2)
    throw new UserError(`${name}: line ${first + 1} has one column; expected label,pixel1,...`);
  const shape = csvShape(columns - 1, name);
  const rows: number[] = [];
  for (let i = hasHeader ? first + 1 : first; i < lines.length; i++) if (lines[i].trim() !== '') rows.push(i);
  if (rows.length === 0) throw new UserError(`${name}: the CSV file has a header but no rows`);
  const n = columns - 1;
  const pixels = new Uint8Array(rows.length * n);
  const labels: string[] = new Array(rows.length);
  rows.forEach((lineIndex, r) => {
    const fields = lines[lineIndex].split(',');
    const lineNo = lineIndex + 1;
    if (fields.length !== columns) {
      throw new UserError(
        `${name}: line ${lineNo} has ${fields.length} values but the first row has ${columns} (ragged row)`,
      );
    }
    const label = fields[0].trim();
    if (label === '') throw new UserError(`${name}: line ${lineNo} has an empty label`);
    labels[r] = label;
    const base = r * n;
    for (let c = 1; c < columns; c++) {
      const v = Number(fields[c]);
      if (fields[c].trim() === '' || !Number.isFinite(v)) {
        throw new UserError(`${name}: line ${lineNo}, column ${c + 1}: '${fields[c]}' is not a number`);
      }
      if (v < 0 || v > 255) {
        throw new UserError(`${name}: line ${lineNo}, column ${c + 1}: pixel value ${v} is outside 0..255`);
      }
      pixels[base + c - 1] = Math.round(v);
    }
  });
  return { labels, pixels, count: rows.length, shape };
}

/** Class names from label values: numeric order when every label is a whole number, else text order. */
export function csvClassNames(labels: string[]): string[] {
  const unique = [...new Set(labels)];
  const numeric = unique.every((l) => /^-?\d+$/.test(l));
  return numeric ? unique.sort((a, b) => Number(a) - Number(b)) : unique.sort();
}

/** Label indices into `classNames`; a label outside them is an error naming the file. */
export function csvLabelIndices(labels: string[], classNames: string[], name: string): Uint8Array {
  const index = new Map(classNames.map((c, i) => [c, i]));
  const out = new Uint8Array(labels.length);
  labels.forEach((l, i) => {
    const k = index.get(l);
    if (k === undefined)
      throw new UserError(`${name}: label '${l}' (row ${i + 1}) is not one of the training labels`);
    out[i] = k;
  });
  return out;
}

/** Writes images back as CSV with a header (used to export a dataset, and by tests). */
export function toImageCsv(pixels: Uint8Array, labels: string[], shape: ImageShape): string {
  const n = shape[0] * shape[1] * shape[2];
  const header = ['label', ...Array.from({ length: n }, (_, i) => `pixel${i + 1}`)].join(',');
  const rows = labels.map((l, r) => [l, ...pixels.subarray(r * n, (r + 1) * n)].join(','));
  return [header, ...rows].join('\n') + '\n';
}

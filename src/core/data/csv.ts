/**
 * Kaggle-style image CSV: one image per row, `label,pixel1,...,pixelN`, an optional header row,
 * pixels 0..255 row-major (HWC order for colour, so N = H*W or H*W*3 with square images). Pure:
 * text in, typed arrays out, so it runs in the browser too. The text can come whole
 * (`parseImageCsv`) or in pieces (`ImageCsvParser`, which the Node reader streams a file into).
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

/** Whether a line holds nothing but white space (the test `line.trim() === ''`, done cheaply). */
function isBlank(line: string): boolean {
  if (line.length === 0) return true;
  const c = line.charCodeAt(0);
  // A printable ASCII first character is not white space: no need to trim the whole row.
  if (c > 32 && c < 127) return false;
  return line.trim() === '';
}

/**
 * Longest line accepted, in characters: a square image of ~90 million values. Longer means the
 * file has no line breaks (one image per line is the format), and V8 cannot hold a string much
 * longer anyway (2^29 characters).
 */
export const MAX_CSV_LINE = 2 ** 28;

/**
 * The CSV parser, fed text a piece at a time: `push` any number of chunks (a line may span
 * chunks), then `finish`. Lines end at '\n' with an optional '\r' before it, exactly as
 * `text.split(/\r?\n/)` splits them, so a file gives the same images read whole or streamed.
 * No string is longer than a chunk or a line: files over V8's string limit (~512 MB) parse.
 * Every error names the file (`name`) and the line.
 */
export class ImageCsvParser {
  private lineNo = 0;
  /** Columns of the first non-blank line; 0 until it is seen. */
  private columns = 0;
  private shape: ImageShape | undefined;
  private pixels = new Uint8Array(0);
  private capacity = 0;
  private labels: string[] = [];
  private count = 0;
  /** The unfinished last line (the text after the last '\n' seen). */
  private rest = '';
  private done = false;

  constructor(readonly name: string) {}

  /** Feeds the next piece of the text. */
  push(chunk: string): void {
    if (this.done) throw new Error('ImageCsvParser: push after finish');
    let nl = chunk.indexOf('\n');
    if (nl < 0) {
      this.keep(chunk);
      return;
    }
    // The line the previous chunks left unfinished ends in this one.
    let start = 0;
    if (this.rest !== '') {
      this.keep(chunk.slice(0, nl));
      const line = this.rest;
      this.rest = '';
      this.line(line.endsWith('\r') ? line.slice(0, -1) : line);
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    while (nl >= 0) {
      const end = nl > start && chunk.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      this.line(chunk.slice(start, end));
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    this.rest = '';
    this.keep(chunk.slice(start));
  }

  /** Ends the text (the last line needs no line break) and returns the images. */
  finish(): CsvImages {
    if (this.done) throw new Error('ImageCsvParser: finish called twice');
    this.done = true;
    // split() keeps a last line's '\r' when no '\n' follows it; so does this.
    this.line(this.rest);
    this.rest = '';
    const { name } = this;
    if (this.columns === 0) throw new UserError(`${name}: the CSV file is empty`);
    if (this.count === 0) throw new UserError(`${name}: the CSV file has a header but no rows`);
    const used = this.count * (this.columns - 1);
    const pixels = used === this.pixels.length ? this.pixels : this.pixels.slice(0, used);
    this.pixels = new Uint8Array(0);
    return { labels: this.labels, pixels, count: this.count, shape: this.shape! };
  }

  private keep(text: string): void {
    if (this.rest.length + text.length > MAX_CSV_LINE) {
      throw new UserError(
        `${this.name}: line ${this.lineNo + 1} is longer than ${MAX_CSV_LINE} characters; expected one image per line`,
      );
    }
    this.rest += text;
  }

  private line(text: string): void {
    this.lineNo++;
    if (isBlank(text)) return;
    if (this.columns === 0) {
      const head = text.split(',');
      // A header names its columns; a data row has numbers in every pixel column.
      const hasHeader = head.slice(1).some((f) => !isNumber(f));
      if (head.length < 2)
        throw new UserError(`${this.name}: line ${this.lineNo} has one column; expected label,pixel1,...`);
      this.shape = csvShape(head.length - 1, this.name);
      this.columns = head.length;
      if (hasHeader) return;
    }
    this.row(text);
  }

  private row(text: string): void {
    const { name, lineNo, columns } = this;
    let fields = 1;
    for (let i = text.indexOf(','); i >= 0; i = text.indexOf(',', i + 1)) fields++;
    if (fields !== columns) {
      throw new UserError(
        `${name}: line ${lineNo} has ${fields} values but the first row has ${columns} (ragged row)`,
      );
    }
    const comma = text.indexOf(',');
    const label = text.slice(0, comma).trim();
    if (label === '') throw new UserError(`${name}: line ${lineNo} has an empty label`);
    const n = columns - 1;
    if (this.count === this.capacity) this.grow(n);
    const pixels = this.pixels;
    const base = this.count * n;
    let start = comma + 1;
    for (let c = 1; c < columns; c++) {
      const end = c === n ? text.length : text.indexOf(',', start);
      // Fast path: plain digits, which Number() reads as the same decimal integer.
      let v = end - start > 0 && end - start <= 15 ? 0 : -1;
      for (let k = start; v >= 0 && k < end; k++) {
        const d = text.charCodeAt(k) - 48;
        v = d >= 0 && d <= 9 ? v * 10 + d : -1;
      }
      if (v < 0 || v > 255) {
        // Everything else (spaces, signs, decimals, exponents, junk) as Number() reads it.
        const field = text.slice(start, end);
        const x = Number(field);
        if (field.trim() === '' || !Number.isFinite(x)) {
          throw new UserError(`${name}: line ${lineNo}, column ${c + 1}: '${field}' is not a number`);
        }
        if (x < 0 || x > 255) {
          throw new UserError(`${name}: line ${lineNo}, column ${c + 1}: pixel value ${x} is outside 0..255`);
        }
        v = Math.round(x);
      }
      pixels[base + c - 1] = v;
      start = end + 1;
    }
    this.labels.push(label);
    this.count++;
  }

  /** Doubles the room for rows (amortised: each byte is copied about once). */
  private grow(n: number): void {
    this.capacity = Math.max(64, this.capacity * 2);
    const bigger = new Uint8Array(this.capacity * n);
    bigger.set(this.pixels);
    this.pixels = bigger;
  }
}

/** Parses the whole CSV text. `name` (the file) starts every error message. */
export function parseImageCsv(text: string, name: string): CsvImages {
  const parser = new ImageCsvParser(name);
  parser.push(text);
  return parser.finish();
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

/**
 * Kaggle-style image CSV: one image per row, `label,pixel1,...,pixelN`, an optional header row,
 * pixels whole numbers 0..255 row-major (HWC order for colour, so N = H*W or H*W*3 with square
 * images). Pure: text in, typed arrays out, so it runs in the browser too. The text can come
 * whole (`parseImageCsv`) or in pieces (`ImageCsvParser`, which the Node reader streams a file
 * into).
 *
 * Fields may be quoted as RFC 4180 says (`"cat"`, `"a ""b"""`, a quoted field spanning lines):
 * a record holding a quote is split by d3-dsv, a small browser-safe CSV parser. Records without
 * one, nearly every record of a real file, take the fast path below, which reads the pixels
 * straight out of the line. Measured on a 60000 x 785 CSV (Fashion-MNIST's size, 94 MB), Node
 * 20 on a shared 2-core machine (seconds; memory is the process's RSS after parsing):
 *
 *   | parser, on the whole file                        | unquoted file   |
 *   | this fast path (labels + pixels as bytes)        | 1.15 s, 220 MB  |
 *   | csv-parse/sync (fields as strings only)          | 6.96 s, 685 MB  |
 *   | papaparse (fields as strings only)               | 1.32 s, 574 MB  |
 *   | d3-dsv csvParseRows (fields as strings only)     | 1.41 s, 595 MB  |
 *
 *   | one call per record, as quoted records are split | 60000 lines     | 6000 all-quoted lines |
 *   | csv-parse/sync                                   | 36 s            | 5.5 s                 |
 *   | papaparse                                        | 1.65 s          | 2.9 s                 |
 *   | d3-dsv csvParseRows                              | 1.19 s          | 0.28 s                |
 *
 * So a library for every line would cost more time and 2.5x the memory (every field a string)
 * before a pixel is converted, and quoted records, which are rare, go to d3-dsv, 10 to 20 times
 * faster per record than csv-parse or papaparse. This parser on the same images with every
 * field quoted (188 MB): 12.3 s, against 2.2 to 2.9 s unquoted, both with the machine under
 * load (the old parser took the same 2.2 to 2.9 s there).
 */
import { csvParseRows } from 'd3-dsv';
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

/**
 * A pixel field as a byte: digits only (spaces around them allowed), 0..255. Decimals, signs,
 * exponents and hex (`1.7`, `-1`, `1e2`, `0x10`) are refused rather than rounded or read as
 * Number() would: a file holding them is not 8-bit pixels (scaled to [0, 1] already, or another
 * format), and guessing would train on the wrong values.
 */
function pixelValue(field: string, name: string, lineNo: number, column: number): number {
  const digits = field.trim();
  if (/^\d{1,15}$/.test(digits)) {
    const v = Number(digits);
    if (v <= 255) return v;
  }
  if (/^(\d{1,15}|-0*[1-9]\d{0,14})$/.test(digits)) {
    throw new UserError(
      `${name}: line ${lineNo}, column ${column}: pixel value ${Number(digits)} is outside 0..255`,
    );
  }
  throw new UserError(
    `${name}: line ${lineNo}, column ${column}: '${field}' is not a pixel value (a whole number 0..255)`,
  );
}

/** How many '"' a line holds: an odd count leaves a quoted field open at its end. */
function quotes(text: string): number {
  let n = 0;
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) n++;
  return n;
}

/** The fields of a record holding quotes, unquoted as RFC 4180 says (d3-dsv). */
function fields(text: string): string[] {
  return csvParseRows(text)[0] ?? [''];
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
  /** A record whose quoted field goes on past the end of its line, and where it started. */
  private open: { text: string; lineNo: number; quotes: number } | undefined;
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
    if (this.open)
      throw new UserError(
        `${name}: line ${this.open.lineNo} opens a quoted field that is never closed; check its quotes`,
      );
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
    if (this.open) {
      // The line goes on with a quoted field (and its record) that an earlier line opened.
      const open = this.open;
      if (open.text.length + text.length + 1 > MAX_CSV_LINE) {
        throw new UserError(
          `${this.name}: the record from line ${open.lineNo} is longer than ${MAX_CSV_LINE} characters; a quoted field may be missing its closing quote`,
        );
      }
      open.text += '\n' + text;
      open.quotes += quotes(text);
      if (open.quotes % 2 === 0) {
        this.open = undefined;
        this.record(open.text, open.lineNo);
      }
      return;
    }
    if (isBlank(text)) return;
    if (text.indexOf('"') >= 0) {
      const n = quotes(text);
      if (n % 2 === 1) {
        this.open = { text, lineNo: this.lineNo, quotes: n };
        return;
      }
    }
    this.record(text, this.lineNo);
  }

  /** One record (a line, or more when a quoted field holds line breaks) starting at `lineNo`. */
  private record(text: string, lineNo: number): void {
    const quoted = text.indexOf('"') >= 0;
    if (this.columns === 0) {
      const head = quoted ? fields(text) : text.split(',');
      if (head.length < 2)
        throw new UserError(`${this.name}: line ${lineNo} has one column; expected label,pixel1,...`);
      this.shape = csvShape(head.length - 1, this.name);
      this.columns = head.length;
      // A header names its columns; a data row has numbers in every pixel column.
      if (head.slice(1).some((f) => !isNumber(f))) return;
    }
    if (quoted) this.quotedRow(fields(text), lineNo);
    else this.row(text, lineNo);
  }

  private ragged(fields: number, lineNo: number): UserError {
    return new UserError(
      `${this.name}: line ${lineNo} has ${fields} values but the first row has ${this.columns} (ragged row)`,
    );
  }

  /** Adds a row's label and returns the offset of its pixels. */
  private addRow(label: string, lineNo: number): number {
    if (label === '') throw new UserError(`${this.name}: line ${lineNo} has an empty label`);
    const n = this.columns - 1;
    if (this.count === this.capacity) this.grow(n);
    this.labels.push(label);
    return this.count++ * n;
  }

  /** A record with quotes, split into its fields. */
  private quotedRow(values: string[], lineNo: number): void {
    if (values.length !== this.columns) throw this.ragged(values.length, lineNo);
    const base = this.addRow(values[0].trim(), lineNo);
    for (let c = 1; c < values.length; c++) {
      const field = values[c];
      // As in the fast path: one to three plain digits are read here, pixelValue judges the rest.
      let v = field.length > 0 && field.length <= 3 ? 0 : -1;
      for (let k = 0; v >= 0 && k < field.length; k++) {
        const d = field.charCodeAt(k) - 48;
        v = d >= 0 && d <= 9 ? v * 10 + d : -1;
      }
      if (v < 0 || v > 255) v = pixelValue(field, this.name, lineNo, c + 1);
      this.pixels[base + c - 1] = v;
    }
  }

  /** The fast path: a line without quotes, its pixels read in place. */
  private row(text: string, lineNo: number): void {
    const { name, columns } = this;
    let count = 1;
    for (let i = text.indexOf(','); i >= 0; i = text.indexOf(',', i + 1)) count++;
    if (count !== columns) throw this.ragged(count, lineNo);
    const comma = text.indexOf(',');
    const n = columns - 1;
    const base = this.addRow(text.slice(0, comma).trim(), lineNo);
    const pixels = this.pixels;
    let start = comma + 1;
    for (let c = 1; c < columns; c++) {
      const end = c === n ? text.length : text.indexOf(',', start);
      // One to three plain digits, the usual field, are read here; pixelValue judges the rest.
      let v = end - start > 0 && end - start <= 3 ? 0 : -1;
      for (let k = start; v >= 0 && k < end; k++) {
        const d = text.charCodeAt(k) - 48;
        v = d >= 0 && d <= 9 ? v * 10 + d : -1;
      }
      if (v < 0 || v > 255) v = pixelValue(text.slice(start, end), name, lineNo, c + 1);
      pixels[base + c - 1] = v;
      start = end + 1;
    }
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

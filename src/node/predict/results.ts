/**
 * The results file of a batch prediction: one row per image, CSV (RFC 4180 quoting, by d3-dsv)
 * or JSON Lines, chosen by the file's extension. Parquet is not offered: no well-kept writer
 * appends row groups to a file a killed job left behind, which resuming needs.
 *
 *   CSV    path,label,probability,top1_label,top1_probability,…,topK_probability,error
 *   JSONL  {"path":…,"label":…,"probability":…,"top":[{"label":…,"probability":…},…]}
 *          or {"path":…,"error":…} for an image that could not be read
 *
 * Rows are appended a batch at a time, each batch written whole to the file before the next is
 * read, so a job killed at any moment (kill -9, Ctrl-C, out of memory) leaves every finished batch
 * in the file: the kernel holds what was written. The file is also flushed to disk (fdatasync)
 * at most once every SYNC_EVERY_MS and when it is closed, so a power cut loses at most that much
 * (which a rerun predicts again): a flush a batch cost more than predicting the batch for small
 * images.
 * A rerun with the same file resumes (openResults): a last line the kill cut short is cut off,
 * and the paths already there are skipped, without being loaded into memory (see Resume).
 */
import { csvFormatRows, csvParseRows } from 'd3-dsv';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';

export type ResultsFormat = 'csv' | 'jsonl';

export interface ResultRow {
  path: string;
  /** The top-k classes, most probable first; empty for an error row. */
  top: { label: string; probability: number }[];
  error?: string;
}

/** The format of `file` by its extension. */
export function resultsFormatOf(file: string): ResultsFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.parquet')
    throw new UserError(
      `${file}: Parquet results are not supported; write .csv or .jsonl (both convert to Parquet with duckdb or pandas)`,
    );
  throw new UserError(
    `${file}: the results file must end in .csv or .jsonl (got '${ext || 'no extension'}')`,
  );
}

/** The CSV header for top-k rows. */
export function csvHeader(k: number): string[] {
  const top = Array.from({ length: k }, (_, i) => [`top${i + 1}_label`, `top${i + 1}_probability`]).flat();
  return ['path', 'label', 'probability', ...top, 'error'];
}

/** Six decimals: enough to rank, and a row stays short. */
const prob = (p: number) => Number(p.toFixed(6));

/** The text of rows, each ending in '\n'. */
export function formatRows(rows: ResultRow[], format: ResultsFormat, k: number): string {
  if (format === 'jsonl') {
    const line = (r: ResultRow) =>
      JSON.stringify(
        r.error !== undefined
          ? { path: r.path, error: r.error }
          : {
              path: r.path,
              label: r.top[0].label,
              probability: prob(r.top[0].probability),
              top: r.top.map((t) => ({ label: t.label, probability: prob(t.probability) })),
            },
      );
    return rows.map((r) => line(r) + '\n').join('');
  }
  const cells = (r: ResultRow): string[] => {
    if (r.error !== undefined) return [r.path, '', '', ...Array<string>(2 * k).fill(''), r.error];
    const top = r.top.flatMap((t) => [t.label, String(prob(t.probability))]);
    return [r.path, r.top[0].label, String(prob(r.top[0].probability)), ...top, ''];
  };
  return csvFormatRows(rows.map(cells)) + '\n';
}

/** One record of an existing results file and the byte offset just past it. */
interface StoredRow {
  path: string;
  end: number;
  /** The CSV header's cells (the first record of a CSV file). */
  header?: string[];
}

/**
 * The complete records of `file` up to byte `limit`, streamed. A record ends at a '\n' (in CSV,
 * one outside quotes: a path may hold a newline); what follows the last one is a write that a
 * kill cut short, and is not returned. A complete line that does not parse is damage, not a
 * kill: it stops with the line's number.
 */
async function* records(file: string, format: ResultsFormat, limit: number): AsyncGenerator<StoredRow> {
  const stream = createReadStream(file, { end: limit - 1 });
  let carry = Buffer.alloc(0);
  let offset = 0; // file offset of carry[0]
  let pending = ''; // a CSV record's lines so far, while a quoted field spans lines
  let lineNo = 0;
  let first = true;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    let at = 0;
    for (let nl = buf.indexOf(10, at); nl !== -1; nl = buf.indexOf(10, at)) {
      const line = buf.toString('utf8', at, nl);
      at = nl + 1;
      lineNo++;
      const end = offset + at;
      if (format === 'jsonl') {
        if (line.trim() === '') continue;
        let row: { path?: unknown };
        try {
          row = JSON.parse(line) as { path?: unknown };
        } catch {
          throw new UserError(`${file}: line ${lineNo} is not JSON; it is no results file imgclf wrote`);
        }
        if (typeof row.path !== 'string')
          throw new UserError(`${file}: line ${lineNo} has no "path"; it is no results file imgclf wrote`);
        yield { path: row.path, end };
        continue;
      }
      pending += line + '\n';
      // An odd number of quotes so far: the record goes on past this newline.
      if ((pending.match(/"/g)?.length ?? 0) % 2 === 1) continue;
      const [cells] = csvParseRows(pending.replace(/\r?\n$/, ''));
      pending = '';
      if (first) {
        first = false;
        yield { path: '', end, header: cells };
      } else if (cells && cells.length > 0) yield { path: cells[0], end };
    }
    buf = buf.subarray(at);
    offset += at;
    carry = Buffer.from(buf);
  }
}

/**
 * What a rerun skips. Rows are written in the input's order, so when the input has not changed
 * the finished rows are its first rows: each is matched as the input reaches it, one at a time,
 * and nothing is held. At the first path that differs (files added or removed since), the rest
 * of the file's paths are read into a set, and only that tail is held.
 */
export class Resume {
  private pending: string | undefined;
  private started = false;
  private rest: Set<string> | undefined;

  constructor(private readonly paths: AsyncIterator<string>) {}

  private async next(): Promise<string | undefined> {
    const r = await this.paths.next();
    return r.done ? undefined : r.value;
  }

  /** Whether `p` has a row already; ask in the input's order. */
  async done(p: string): Promise<boolean> {
    if (this.rest) return this.rest.has(p);
    if (!this.started) {
      this.started = true;
      this.pending = await this.next();
    }
    if (this.pending === undefined) return false;
    if (this.pending === p) {
      this.pending = await this.next();
      return true;
    }
    this.rest = new Set([this.pending]);
    for (let q = await this.next(); q !== undefined; q = await this.next()) this.rest.add(q);
    return this.rest.has(p);
  }
}

/** Longest time finished rows wait before they are flushed to disk. */
export const SYNC_EVERY_MS = 1000;

export interface OpenResults {
  handle: FileHandle;
  /** When the file was last flushed to disk (performance.now()). */
  synced: number;
  format: ResultsFormat;
  /** What a rerun skips; it reads the file as the input asks. */
  resume: Resume;
  /** Bytes of a cut-short last line removed, if any. */
  cut: number;
}

/**
 * Opens `file` for appending rows of `k` classes. A new or empty file gets its header (CSV);
 * an existing one is checked to have the same columns, and a last line a kill left unfinished
 * is cut off before anything is appended.
 */
export async function openResults(file: string, k: number): Promise<OpenResults> {
  const format = resultsFormatOf(file);
  const header = csvHeader(k);
  const size = await stat(file).then(
    (s) => {
      if (!s.isFile()) throw new UserError(`${file}: the results file is not a regular file`);
      return s.size;
    },
    () => 0,
  );
  let complete = 0;
  if (size > 0) {
    for await (const r of records(file, format, size)) {
      if (r.header && r.header.join(',') !== header.join(','))
        throw new UserError(
          `${file} has the columns ${r.header.slice(0, 5).join(',')},… of another --top-k or another program; give another --results-file or the same --top-k`,
        );
      complete = r.end;
    }
  }
  if (size > complete) await truncate(file, complete);
  const handle = await open(file, 'a');
  if (complete === 0 && format === 'csv') {
    await handle.appendFile(csvFormatRows([header]) + '\n');
    await handle.datasync();
  }
  // The rows there now, up to `complete`: rows this run appends are never taken as done.
  const done = async function* () {
    if (complete === 0) return;
    for await (const r of records(file, format, complete)) if (!r.header) yield r.path;
  };
  return { handle, synced: performance.now(), format, resume: new Resume(done()), cut: size - complete };
}

/** Appends `rows` to the file; flushes to disk when the last flush is SYNC_EVERY_MS old. */
export async function appendRows(results: OpenResults, rows: ResultRow[], k: number): Promise<void> {
  if (rows.length === 0) return;
  // appendFile writes all of it (a bare write may write part).
  await results.handle.appendFile(formatRows(rows, results.format, k));
  if (performance.now() - results.synced >= SYNC_EVERY_MS) {
    await results.handle.datasync();
    results.synced = performance.now();
  }
}

/** Flushes what is left to disk and closes the file. */
export async function closeResults(results: OpenResults): Promise<void> {
  try {
    await results.handle.datasync();
  } finally {
    await results.handle.close();
  }
}

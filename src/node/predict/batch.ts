/**
 * Batch prediction: a stream of image paths in, rows of top-k classes out, a batch at a time,
 * with memory bounded by the batch whatever the count.
 *
 * Reading and decoding run beside inference: while batch k goes through the model, the files
 * of batch k+1 are read and decoded, DECODERS at a time. Decoding is sharp's, on libuv's
 * threads, so promises in flight are enough; the ONNX engine runs on its own threads too, so
 * both overlap fully (the tfjs engine computes on this thread and lets decoding advance between
 * its steps). An image that cannot be read or decoded is a row with its error, not a stop.
 */
import { inputInto } from '../../core/data/prepare.js';
import { topK } from '../../core/predict.js';
import { readImageFile } from '../data/folder.js';
import type { Engine } from '../export/engine.js';
import { type DecodeOptions, ImageTooLargeError, prepareImage } from '../image.js';
import type { RunMetadata } from '../run/rundir.js';
import type { ResultRow } from './results.js';

/** Images per batch by default: large enough for the model's matrix products, small in memory. */
export const DEFAULT_BATCH_SIZE = 64;
/** Files read and decoded at once: libuv's pool has four threads, and reads wait on the disk. */
export const DECODERS = 8;

export interface BatchPredictOptions {
  engine: Engine;
  metadata: Pick<RunMetadata, 'classNames' | 'inputShape' | 'preprocessing'>;
  paths: AsyncIterable<string>;
  /** Whether a path has its row already (a resumed job); asked in the input's order. */
  isDone?: (path: string) => Promise<boolean>;
  batchSize?: number;
  topK: number;
  decode?: DecodeOptions;
  /** Called with each batch's rows, in the input's order; the next batch waits for it. */
  onBatch: (rows: ResultRow[], counts: BatchCounts) => Promise<void> | void;
}

export interface BatchCounts {
  /** Rows made so far, error rows included. */
  rows: number;
  errors: number;
  /** Paths skipped as done. */
  skipped: number;
}

/** One file of a batch: the model's input, or why there is none. */
type Decoded = { path: string; bytes: Uint8Array } | { path: string; error: string };

/** A read or decode failure as the row's error, without the path the row already names. */
function reasonOf(file: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'file not found';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a folder';
  }
  const message = (e.message ?? String(err)).split('\n')[0].replace(`${file}: `, '');
  return err instanceof ImageTooLargeError ? `too large: ${message}` : message;
}

async function decodeAll(
  paths: string[],
  metadata: BatchPredictOptions['metadata'],
  decode: DecodeOptions,
): Promise<Decoded[]> {
  const out: Decoded[] = new Array(paths.length);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      const file = paths[i];
      try {
        const bytes = await readImageFile(file);
        const { bytes: prepared } = await prepareImage(
          bytes,
          metadata.inputShape,
          metadata.preprocessing,
          file,
          decode,
        );
        out[i] = { path: file, bytes: prepared };
      } catch (err) {
        out[i] = { path: file, error: reasonOf(file, err) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DECODERS, paths.length) }, worker));
  return out;
}

/** Runs every path through the engine; returns the counts at the end. */
export async function predictBatches(opts: BatchPredictOptions): Promise<BatchCounts> {
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const names = opts.metadata.classNames;
  const k = Math.min(opts.topK, names.length);
  const row = opts.metadata.inputShape.reduce((a, b) => a * b, 1);
  const counts: BatchCounts = { rows: 0, errors: 0, skipped: 0 };
  const it = opts.paths[Symbol.asyncIterator]();

  // The next batch's paths (done ones skipped), read and decoded.
  const nextBatch = async (): Promise<Decoded[]> => {
    const paths: string[] = [];
    while (paths.length < batchSize) {
      const r = await it.next();
      if (r.done) break;
      if (opts.isDone && (await opts.isDone(r.value))) counts.skipped++;
      else paths.push(r.value);
    }
    return decodeAll(paths, opts.metadata, opts.decode ?? {});
  };

  // One input buffer for every batch: a fresh one each time (38 MB at 224 px) costs more in
  // page faults and collection than the model's pass over it.
  let buffer = new Float32Array(0);
  let pending = nextBatch();
  for (;;) {
    const batch = await pending;
    if (batch.length === 0) break;
    pending = nextBatch();
    // Awaited at the top of the next turn; until then a failure must not count as unhandled.
    pending.catch(() => {});
    const good = batch.filter((d): d is Extract<Decoded, { bytes: Uint8Array }> => 'bytes' in d);
    if (buffer.length < good.length * row) buffer = new Float32Array(batchSize * row);
    const input = buffer.subarray(0, good.length * row);
    good.forEach((d, i) => inputInto(d.bytes, opts.metadata.preprocessing, input, i * row));
    const probs = good.length ? await opts.engine.probabilities(input, good.length) : [];
    let g = 0;
    const rows: ResultRow[] = batch.map((d) => {
      if ('error' in d) {
        counts.errors++;
        return { path: d.path, top: [], error: d.error };
      }
      const p = probs[g++];
      return { path: d.path, top: topK(p, k).map((i) => ({ label: names[i], probability: p[i] })) };
    });
    counts.rows += rows.length;
    await opts.onBatch(rows, counts);
  }
  return counts;
}

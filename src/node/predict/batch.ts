/**
 * Batch prediction: a stream of image paths in, rows of top-k classes out, a batch at a time,
 * with memory bounded by the batch whatever the count.
 *
 * Reading and decoding run beside inference: while batch k goes through the model, the files
 * of batch k+1 are read, decoded and scaled to the model's floats (decode.ts),
 * DECODERS files at a time. sharp decodes on libuv's threads, the ONNX engine computes on its
 * own, and the tfjs engine computes on this thread and lets decoding advance between its steps.
 * Decoding threads of our own (worker_threads, each sent a share of every batch) were measured
 * and not kept: on 2 cores they took 1.31x the wall time and 1.37x the CPU of this, for
 * 2,000 JPEGs at 224 px; each thread's isolate, start-up and copies cost more than they freed.
 * An image that cannot be read or decoded is a row with its error, not a stop.
 */
import { topK } from '../../core/predict.js';
import type { Engine } from '../export/engine.js';
import { batchDecoder } from './decode.js';
import type { RunMetadata } from '../run/rundir.js';
import type { ResultRow } from './results.js';

/** Images per batch by default: large enough for the model's matrix products, small in memory. */
export const DEFAULT_BATCH_SIZE = 64;

export interface BatchPredictOptions {
  engine: Engine;
  metadata: Pick<RunMetadata, 'classNames' | 'inputShape' | 'preprocessing'>;
  paths: AsyncIterable<string>;
  /** Whether a path has its row already (a resumed job); asked in the input's order. */
  isDone?: (path: string) => Promise<boolean>;
  batchSize?: number;
  topK: number;
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

/** Runs every path through the engine; returns the counts at the end. */
export async function predictBatches(opts: BatchPredictOptions): Promise<BatchCounts> {
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const names = opts.metadata.classNames;
  const k = Math.min(opts.topK, names.length);
  const row = opts.metadata.inputShape.reduce((a, b) => a * b, 1);
  const counts: BatchCounts = { rows: 0, errors: 0, skipped: 0 };
  const it = opts.paths[Symbol.asyncIterator]();

  const decode = batchDecoder(opts.metadata);
  // The next batch's paths (done ones skipped), read and decoded.
  const nextBatch = async () => {
    const paths: string[] = [];
    while (paths.length < batchSize) {
      const r = await it.next();
      if (r.done) break;
      if (opts.isDone && (await opts.isDone(r.value))) counts.skipped++;
      else paths.push(r.value);
    }
    return {
      paths,
      ...(paths.length ? await decode(paths) : { floats: new Float32Array(0), errors: [] }),
    };
  };

  let pending = nextBatch();
  for (;;) {
    const { paths, floats, errors } = await pending;
    if (paths.length === 0) break;
    pending = nextBatch();
    // Awaited at the top of the next turn; until then a failure must not count as unhandled.
    pending.catch(() => {});
    // The model's input: the decoded floats, with the rows of unreadable files squeezed out.
    let good = 0;
    for (let i = 0; i < paths.length; i++) {
      if (errors[i] !== undefined) continue;
      if (good !== i) floats.copyWithin(good * row, i * row, (i + 1) * row);
      good++;
    }
    const probs = good ? await opts.engine.probabilities(floats.subarray(0, good * row), good) : [];
    let g = 0;
    const rows: ResultRow[] = paths.map((path, i) => {
      const error = errors[i];
      if (error !== undefined) {
        counts.errors++;
        return { path, top: [], error };
      }
      const p = probs[g++];
      return { path, top: topK(p, k).map((j) => ({ label: names[j], probability: p[j] })) };
    });
    counts.rows += rows.length;
    await opts.onBatch(rows, counts);
  }
  return counts;
}

/**
 * Minibatches as typed arrays. A batch is gathered row by row from the in-memory split into one
 * reusable buffer: slicing a big tfjs tensor instead costs ~124 ms a batch on wasm.
 */
import { copyPixels, type Split } from './dataset.js';
import { permutation, type Rng } from './rng.js';

export interface Batch {
  /** batchSize * imageSize pixels; a view (of a buffer the next batch overwrites, or of the split). Read-only. */
  x: Float32Array;
  /** Class indices, as int32 for tfjs. */
  y: Int32Array;
  /** Examples in this batch (the last one may be short). */
  size: number;
  /** Position of the first example in the epoch's order. */
  offset: number;
}

export interface BatchOptions {
  batchSize: number;
  /** Pixels per example. */
  rowSize: number;
  /** Shuffle with this generator; omit for the split's own order (evaluation). */
  rng?: Rng;
  /** Keep the final short batch (the seed's DataLoader does). Default true. */
  keepLast?: boolean;
}

/** Number of batches one pass yields. */
export function batchCount(count: number, batchSize: number, keepLast = true): number {
  return keepLast ? Math.ceil(count / batchSize) : Math.floor(count / batchSize);
}

/** Yields the batches of one epoch. The order is fixed by `rng` when given. */
export function* batches(split: Split, opts: BatchOptions): Generator<Batch> {
  const { batchSize, rowSize } = opts;
  const order = opts.rng ? permutation(split.count, opts.rng) : undefined;
  const x = new Float32Array(batchSize * rowSize);
  const y = new Int32Array(batchSize);
  const n = batchCount(split.count, batchSize, opts.keepLast ?? true);
  for (let b = 0; b < n; b++) {
    const offset = b * batchSize;
    const size = Math.min(batchSize, split.count - offset);
    if (!order) {
      // Evaluation order: the rows are contiguous already; float data is handed out as a view.
      for (let i = 0; i < size; i++) y[i] = split.labels[offset + i];
      const rows = split.images;
      yield {
        x:
          rows instanceof Float32Array
            ? rows.subarray(offset * rowSize, (offset + size) * rowSize)
            : (copyPixels(rows, offset * rowSize, size * rowSize, x, 0), x.subarray(0, size * rowSize)),
        y: y.subarray(0, size),
        size,
        offset,
      };
      continue;
    } else {
      // One copy per row (a memcpy for floats, scaled for bytes).
      for (let i = 0; i < size; i++) {
        const j = order[offset + i];
        copyPixels(split.images, j * rowSize, rowSize, x, i * rowSize);
        y[i] = split.labels[j];
      }
    }
    yield { x: x.subarray(0, size * rowSize), y: y.subarray(0, size), size, offset };
  }
}

/** A training batch given by its rows' indices in the split, without its pixels. */
export interface RowBatch {
  /** Indices into the split of this batch's examples (a view of the epoch's order). Read-only. */
  rows: Uint32Array;
  y: Int32Array;
  size: number;
  offset: number;
}

/**
 * The batches of one shuffled epoch as row indices, in the order `batches` draws with the same
 * generator, for a step that reads the rows where it computes (the fused dense step reads a
 * byte split in place). Nothing is copied but the labels.
 */
export function* batchRows(split: Split, batchSize: number, rng: Rng): Generator<RowBatch> {
  const order = permutation(split.count, rng);
  const y = new Int32Array(batchSize);
  const n = batchCount(split.count, batchSize);
  for (let b = 0; b < n; b++) {
    const offset = b * batchSize;
    const size = Math.min(batchSize, split.count - offset);
    const rows = order.subarray(offset, offset + size);
    for (let i = 0; i < size; i++) y[i] = split.labels[rows[i]];
    yield { rows, y: y.subarray(0, size), size, offset };
  }
}

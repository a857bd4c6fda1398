/**
 * Minibatches as typed arrays. A batch is gathered row by row from the in-memory split into one
 * reusable buffer: slicing a big tfjs tensor instead costs ~124 ms a batch on wasm.
 */
import { type Split } from './dataset.js';
import { permutation, type Rng } from './rng.js';

export interface Batch {
  /** batchSize * imageSize pixels; a view that the next batch overwrites. */
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
      // Evaluation order: one contiguous copy.
      x.set(split.images.subarray(offset * rowSize, (offset + size) * rowSize));
      for (let i = 0; i < size; i++) y[i] = split.labels[offset + i];
    } else {
      // A plain indexed loop: set(subarray()) allocates a view per row, which cost more than
      // the copy itself (0.15 s per Fashion-MNIST epoch).
      const src = split.images;
      for (let i = 0; i < size; i++) {
        const j = order[offset + i];
        const from = j * rowSize;
        const to = i * rowSize;
        for (let k = 0; k < rowSize; k++) x[to + k] = src[from + k];
        y[i] = split.labels[j];
      }
    }
    yield { x: x.subarray(0, size * rowSize), y: y.subarray(0, size), size, offset };
  }
}

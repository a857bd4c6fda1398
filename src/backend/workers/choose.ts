/**
 * How many training threads a run uses when the user does not say (`--workers`).
 *
 * A thread pays when a step has enough arithmetic to hide what splitting costs: one more
 * gradient exchange and update per step (about 6 ms for the cnn's 420k parameters, under 1 ms
 * for softmax), a wake-up per step, and shards too thin for the kernels to run at full speed.
 * Measured here, 2 cores, seconds per epoch on 1 and 2 threads (`imgclf train --model M
 * --epochs 2 --workers N`, second epoch):
 *
 *   softmax  2 M multiply-adds a step of 256     0.21 s -> 0.30 s  (slower)
 *   mlp     52 M                                  1.72 s -> 1.66 s  (no gain)
 *   lenet  107 M                                  9.25 s -> 5.23 s  (1.8x)
 *   cnn   1086 M                                 55.3 s -> 30.4 s  (1.8x, npm run bench)
 *
 * So the default splits steps of at least MIN_STEP_MACS over the cores there are, never into
 * shards below MIN_SHARD examples, and keeps everything smaller on one thread.
 */
import { availableParallelism } from 'node:os';
import type { Net } from '../../core/models/net.js';

/** Forward multiply-adds per step below which one thread is as fast. */
export const MIN_STEP_MACS = 80e6;
/** Fewest examples per thread. */
export const MIN_SHARD = 16;

export interface WorkerChoice {
  workers: number;
  /** Why, for the run's first line. */
  reason: string;
}

export function chooseWorkers(
  net: Net,
  batchSize: number,
  requested: number | undefined,
  cores = availableParallelism(),
): WorkerChoice {
  if (requested !== undefined) return { workers: requested, reason: '--workers' };
  const macs = (net.macsPerExample?.() ?? net.countParams()) * batchSize;
  if (cores < 2) return { workers: 1, reason: 'one core' };
  if (macs < MIN_STEP_MACS)
    return { workers: 1, reason: `${(macs / 1e6).toFixed(0)} M multiply-adds a step is too little to split` };
  const workers = Math.max(1, Math.min(cores, Math.floor(batchSize / MIN_SHARD)));
  return { workers, reason: workers > 1 ? `${cores} cores` : `batch of ${batchSize} is too small to split` };
}

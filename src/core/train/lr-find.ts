/**
 * The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's lr_find):
 * train from a fresh model for a few hundred steps while the learning rate grows
 * exponentially from tiny to huge, record the loss at each step, and stop once the loss
 * blows up. The loss falls fastest somewhere below the rate where it starts to climb: that
 * rate is a good first guess for training. It is a suggestion from one short run, not a
 * measurement of the best rate.
 */
import * as tf from '@tensorflow/tfjs-core';
import { augmentBatch, type AugmentOptions } from '../data/augment.js';
import { batches } from '../data/batches.js';
import { type ImageShape, imageSize, type Split } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import type { Net } from '../models/net.js';
import type { Optimizer } from '../optim/optimizers.js';
import { trainStep } from './loop.js';

export interface LrFindOptions {
  shape: ImageShape;
  batchSize: number;
  seed: number;
  /** First and last learning rate of the sweep. */
  startLr?: number;
  endLr?: number;
  /** Steps of the sweep (fewer when the loss diverges first). */
  steps?: number;
  labelSmoothing?: number;
  augment?: AugmentOptions;
}

export interface LrFindResult {
  /** Learning rate of each step. */
  lrs: number[];
  /** Mean loss of each step's batch. */
  losses: number[];
  /** The losses smoothed (exponential moving average, bias-corrected), as the picture shows. */
  smoothed: number[];
  /** The rate where the smoothed loss falls fastest: the suggestion. */
  suggested: number;
  /** The rate of the lowest smoothed loss (training there is usually too aggressive). */
  minimum: number;
  /** True when the sweep stopped early because the loss blew up. */
  diverged: boolean;
}

/** Smoothing of the recorded loss, as fastai uses. */
const BETA = 0.98;
/** The sweep stops once the smoothed loss is this many times its minimum. */
const BLOW_UP = 4;

/** Runs the range test on `net` (its weights change: give it a fresh model). */
export async function lrFind(
  net: Net,
  optimizer: Optimizer,
  train: Split,
  opts: LrFindOptions,
): Promise<LrFindResult> {
  const start = opts.startLr ?? 1e-6;
  const end = opts.endLr ?? 10;
  const steps = opts.steps ?? 200;
  const [h, w, c] = opts.shape;
  const rowSize = imageSize(opts.shape);
  const rng = new Rng(opts.seed);
  const augmentRng = new Rng(opts.seed ^ 0xa5a5a5);
  const scratch = new Float32Array(rowSize);
  const lrs: number[] = [];
  const losses: number[] = [];
  const smoothed: number[] = [];
  let avg = 0;
  let best = Infinity;
  let diverged = false;
  sweep: while (lrs.length < steps) {
    for (const batch of batches(train, { batchSize: opts.batchSize, rowSize, rng })) {
      if (lrs.length >= steps) break sweep;
      const lr = start * (end / start) ** (lrs.length / Math.max(steps - 1, 1));
      const n = batch.size;
      if (opts.augment) augmentBatch(batch.x, n, opts.shape, augmentRng, opts.augment, scratch);
      // One host read per step: the sweep needs every loss, and it is a few hundred steps.
      const loss = tf.tidy(() => {
        const r = trainStep(
          net,
          optimizer,
          tf.tensor4d(batch.x, [n, h, w, c]),
          batch.y,
          lr,
          opts.labelSmoothing ?? 0,
        );
        r.correct.dispose();
        return tf.div(r.loss, n);
      });
      const value = (await loss.data())[0];
      loss.dispose();
      lrs.push(lr);
      losses.push(value);
      avg = BETA * avg + (1 - BETA) * value;
      const s = avg / (1 - BETA ** lrs.length);
      smoothed.push(s);
      if (!Number.isFinite(s) || (lrs.length > 10 && s > BLOW_UP * best)) {
        diverged = true;
        break sweep;
      }
      best = Math.min(best, s);
    }
  }
  return { lrs, losses, smoothed, ...suggest(lrs, smoothed), diverged };
}

/**
 * The steepest descent of the smoothed loss against log(lr), before its minimum, and the
 * minimum itself. The first tenth of the sweep is skipped: the moving average is still
 * settling there.
 */
export function suggest(lrs: number[], smoothed: number[]): { suggested: number; minimum: number } {
  const finite = smoothed.map((s) => (Number.isFinite(s) ? s : Infinity));
  let minAt = 0;
  for (let i = 1; i < finite.length; i++) if (finite[i] < finite[minAt]) minAt = i;
  const from = Math.min(Math.floor(lrs.length / 10), Math.max(minAt - 1, 0));
  let steepest = from;
  let slope = Infinity;
  for (let i = from + 1; i <= minAt; i++) {
    const g = (finite[i] - finite[i - 1]) / (Math.log(lrs[i]) - Math.log(lrs[i - 1]));
    if (g < slope) {
      slope = g;
      steepest = i;
    }
  }
  return { suggested: lrs[steepest] ?? lrs[0], minimum: lrs[minAt] ?? lrs[0] };
}

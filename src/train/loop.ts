/**
 * The training loop: small functions that return numbers. `trainEpoch` runs one pass over the
 * training split, `evaluate` one pass over a split in order, and `fit` composes them into a
 * history. Pictures and files are made from the history afterwards, never in here.
 *
 * Per-batch loss and correct counts are summed on the backend and read once per epoch, so a
 * GPU backend is not stalled by a host sync on every step.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { batchCount, batches } from '../data/batches.js';
import { type ImageShape, imageSize, type Split } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import { crossEntropy, crossEntropyAndCorrect } from './loss.js';

export interface EpochResult {
  /** Mean per-example training loss over the epoch. */
  loss: number;
  /** Fraction of training examples classified correctly while training. */
  accuracy: number;
  /** Wall-clock seconds of the training pass. */
  seconds: number;
}

export interface TrainEpochOptions {
  batchSize: number;
  shape: ImageShape;
  rng: Rng;
  labelSmoothing?: number;
  /**
   * Called after every batch with (batches done, batches total). When it returns a promise the
   * loop awaits it: a browser page uses that to yield to the UI between steps.
   */
  onBatch?: (done: number, total: number) => void | Promise<void>;
  /** Checked before every batch; returning true ends the epoch early. */
  shouldStop?: () => boolean;
}

/** The variables a layers model trains (LayerVariable.read() is the tf.Variable itself). */
export function trainableVariables(model: tfl.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

/** One pass over `split` with minibatch updates. */
export async function trainEpoch(
  model: tfl.LayersModel,
  optimizer: tf.Optimizer,
  split: Split,
  opts: TrainEpochOptions,
): Promise<EpochResult> {
  const start = performance.now();
  const [h, w, c] = opts.shape;
  const rowSize = imageSize(opts.shape);
  const vars = trainableVariables(model);
  const total = batchCount(split.count, opts.batchSize);
  let lossSum = tf.scalar(0);
  let correctSum = tf.scalar(0);
  let seen = 0;
  let done = 0;
  for (const batch of batches(split, { batchSize: opts.batchSize, rowSize, rng: opts.rng })) {
    if (opts.shouldStop?.()) break;
    const n = batch.size;
    tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [n, h, w, c]);
      const y = tf.tensor1d(batch.y, 'int32');
      let correct: tf.Scalar | undefined;
      // The seed's l.mean().backward(): the batch mean drives the gradient.
      const meanLoss = optimizer.minimize(
        () => {
          const logits = model.apply(x, { training: true }) as tf.Tensor2D;
          const r = crossEntropyAndCorrect(logits, y, opts.labelSmoothing ?? 0);
          correct = tf.keep(r.correct);
          return tf.mean(r.loss) as tf.Scalar;
        },
        true,
        vars,
      )!;
      const newLoss = tf.add(lossSum, tf.mul(meanLoss, n));
      const newCorrect = tf.add(correctSum, correct!);
      correct!.dispose();
      lossSum.dispose();
      correctSum.dispose();
      lossSum = tf.keep(newLoss) as tf.Scalar;
      correctSum = tf.keep(newCorrect) as tf.Scalar;
    });
    seen += n;
    const pending = opts.onBatch?.(++done, total);
    if (pending) await pending;
  }
  const loss = (await lossSum.data())[0] / Math.max(seen, 1);
  const correct = (await correctSum.data())[0];
  lossSum.dispose();
  correctSum.dispose();
  return { loss, accuracy: correct / Math.max(seen, 1), seconds: (performance.now() - start) / 1000 };
}

export interface EvalResult {
  accuracy: number;
  /** Mean cross-entropy over the split. */
  loss: number;
  /** Arg-max class per example, in split order. */
  predicted: Int32Array;
  seconds: number;
}

export interface EvaluateOptions {
  shape: ImageShape;
  /** Larger than the training batch: evaluation keeps no gradients. */
  batchSize?: number;
  /** Also return softmax probabilities (N * K), e.g. for reports. */
  withProbabilities?: boolean;
}

/** Evaluation mode (no dropout, BN running statistics), in the split's order. */
export function evaluate(
  model: tfl.LayersModel,
  split: Split,
  opts: EvaluateOptions,
): EvalResult & { probabilities?: Float32Array } {
  const start = performance.now();
  const [h, w, c] = opts.shape;
  const rowSize = imageSize(opts.shape);
  const predicted = new Int32Array(split.count);
  let probabilities: Float32Array | undefined;
  let lossSum = 0;
  let correct = 0;
  for (const batch of batches(split, { batchSize: opts.batchSize ?? 1000, rowSize })) {
    const n = batch.size;
    const [pred, loss, probs] = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [n, h, w, c]);
      const y = tf.tensor1d(batch.y, 'int32');
      const logits = model.apply(x, { training: false }) as tf.Tensor2D;
      const loss = tf.sum(crossEntropy(logits, y));
      const probs = opts.withProbabilities ? tf.softmax(logits) : undefined;
      return [tf.argMax(logits, 1), loss, probs] as const;
    });
    const p = pred.dataSync() as Int32Array;
    predicted.set(p, batch.offset);
    lossSum += loss.dataSync()[0];
    if (probs) {
      const k = probs.shape[1]!;
      probabilities ??= new Float32Array(split.count * k);
      probabilities.set(probs.dataSync() as Float32Array, batch.offset * k);
      probs.dispose();
    }
    for (let i = 0; i < n; i++) if (p[i] === batch.y[i]) correct++;
    pred.dispose();
    loss.dispose();
  }
  return {
    accuracy: correct / Math.max(split.count, 1),
    loss: lossSum / Math.max(split.count, 1),
    predicted,
    probabilities,
    seconds: (performance.now() - start) / 1000,
  };
}

export interface EpochMetrics {
  epoch: number;
  train_loss: number;
  train_accuracy: number;
  test_accuracy: number;
  test_loss: number;
  /** Seconds of the training pass alone. */
  seconds: number;
  /** Seconds of the evaluation pass. */
  eval_seconds: number;
}

export interface FitOptions {
  epochs: number;
  batchSize: number;
  seed: number;
  shape: ImageShape;
  labelSmoothing?: number;
  onEpoch?: (m: EpochMetrics) => void | Promise<void>;
  onBatch?: (epoch: number, done: number, total: number) => void | Promise<void>;
  shouldStop?: () => boolean;
}

/** Trains for `epochs`, evaluating on `test` after each one, and returns the history. */
export async function fit(
  model: tfl.LayersModel,
  optimizer: tf.Optimizer,
  train: Split,
  test: Split,
  opts: FitOptions,
): Promise<EpochMetrics[]> {
  const rng = new Rng(opts.seed);
  const history: EpochMetrics[] = [];
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    if (opts.shouldStop?.()) break;
    const r = await trainEpoch(model, optimizer, train, {
      batchSize: opts.batchSize,
      shape: opts.shape,
      rng,
      labelSmoothing: opts.labelSmoothing,
      onBatch: (d, t) => opts.onBatch?.(epoch, d, t),
      shouldStop: opts.shouldStop,
    });
    const ev = evaluate(model, test, { shape: opts.shape });
    const m: EpochMetrics = {
      epoch,
      train_loss: r.loss,
      train_accuracy: r.accuracy,
      test_accuracy: ev.accuracy,
      test_loss: ev.loss,
      seconds: r.seconds,
      eval_seconds: ev.seconds,
    };
    history.push(m);
    await opts.onEpoch?.(m);
  }
  return history;
}

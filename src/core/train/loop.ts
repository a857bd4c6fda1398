/**
 * The training loop: small functions that return numbers. `trainEpoch` runs one pass over the
 * training split, `evaluate` one pass over a split in order, and `fit` composes them into a
 * history. Pictures and files are made from the history afterwards, never in here.
 *
 * Every model trains here, layers models and softmax-scratch alike, through the `Net`
 * interface: the loop takes gradients of the batch loss with tf.variableGrads and hands them
 * to an `Optimizer` with the learning rate the schedule gives for that step.
 *
 * Per-batch loss and correct counts are summed on the backend and read once per epoch, so a
 * GPU backend is not stalled by a host sync on every step.
 */
import * as tf from '@tensorflow/tfjs-core';
import { augmentBatch, type AugmentOptions } from '../data/augment.js';
import { batchCount, batches, batchRows } from '../data/batches.js';
import { floatIfSmall, type ImageShape, imageSize, type Split } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import type { Net } from '../models/net.js';
import { seedDropout } from '../models/dropout.js';
import { correctCount, crossEntropy, crossEntropyAndCorrect } from './loss.js';
import type { Optimizer } from '../optim/optimizers.js';
import { createSchedule, type Schedule } from '../optim/schedule.js';
import { UserError } from '../errors.js';

export interface EpochResult {
  /** Mean per-example training loss over the epoch. */
  loss: number;
  /** Fraction of training examples classified correctly while training. */
  accuracy: number;
  /** Wall-clock seconds of the training pass. */
  seconds: number;
  /** True when shouldStop ended the pass before its last batch. */
  stopped: boolean;
  /** Batches done in this epoch (all of them unless stopped). */
  batches: number;
  /** Optimizer steps done in the run after this pass. */
  step: number;
  /** Raw sums, to continue a stopped epoch later. */
  sums: EpochSums;
}

/** Running sums of a partly done epoch. */
export interface EpochSums {
  loss: number;
  correct: number;
  seen: number;
  seconds: number;
}

/**
 * Runs the optimizer steps somewhere other than this thread: the Node worker pool
 * (backend/workers) splits every batch across threads. The loop still draws the order,
 * augments and schedules; the runner only computes. Its weights and optimizer state live with
 * it: `load` hands over the net's and the optimizer's, `sync` brings them back (before an
 * evaluation or a save).
 */
export interface StepRunner {
  /** Threads the steps are split over. */
  readonly workers: number;
  load(net: Net, optimizer: Optimizer): Promise<void>;
  /**
   * Starts one step on this batch and returns once the batch is handed over (its buffers can
   * be reused) and the step before has finished, so the next batch is built while this one runs.
   */
  step(x: Float32Array, y: Int32Array, lr: number, step: number): Promise<void>;
  /** Waits for every started step; returns each one's summed loss and correct count, in order. */
  drain(): Promise<{ loss: number; correct: number }[]>;
  sync(net: Net, optimizer: Optimizer): Promise<void>;
  /**
   * A step on rows of the split itself, when its pixels are bytes and nothing augments them:
   * the runner reads (and scales) rows `rows` of `images` where it computes, so the loop
   * gathers no pixels and `fit` keeps the split as bytes, a quarter of the memory to read.
   * Runners without it get every batch as floats through `step`.
   */
  stepRows?(images: Uint8Array, rows: Uint32Array, y: Int32Array, lr: number, step: number): Promise<void>;
  /**
   * Evaluates `split` where the steps run (each thread a share of every batch), with the
   * weights of the last step, as `evaluate` does here. Called after `sync`.
   */
  evaluate?(split: Split, shape: ImageShape): Promise<EvalResult>;
}

/** Whether `runner` reads the split's rows itself in this epoch (see StepRunner.stepRows). */
export function readsRows(
  runner: StepRunner | undefined,
  images: Split['images'],
  augment: unknown,
): boolean {
  return runner?.stepRows !== undefined && images instanceof Uint8Array && !augment;
}

export interface TrainEpochOptions {
  batchSize: number;
  shape: ImageShape;
  /** Draws the epoch's order. */
  rng: Rng;
  labelSmoothing?: number;
  /** Learning rate per optimizer step (default: the optimizer's base rate). */
  schedule?: Schedule;
  /** Optimizer steps done before this pass (the schedule's position). */
  startStep?: number;
  /** Skip this many batches (a resumed epoch), continuing from `sums`. */
  startBatch?: number;
  sums?: EpochSums;
  augment?: AugmentOptions & { rng: Rng };
  /**
   * Called after every batch with (batches done, batches total). When it returns a promise the
   * loop awaits it: a browser page uses that to yield to the UI between steps.
   */
  onBatch?: (done: number, total: number) => void | Promise<void>;
  /** Checked before every batch; returning true ends the epoch early. */
  shouldStop?: () => boolean;
  /** Runs the steps elsewhere (worker threads) instead of on this thread. */
  runner?: StepRunner;
  /** Seeds each step's dropout masks (with the step number), so the run repeats exactly. */
  seed?: number;
}

/**
 * The per-example loss and the batch's correct count: the model's own loss when it has one
 * (softmax-scratch), else cross-entropy from logits (a fused kernel where the backend has it).
 */
function lossAndCorrect(
  net: Net,
  logits: tf.Tensor2D,
  y: tf.Tensor1D,
  smoothing: number,
): { loss: tf.Tensor1D; correct: tf.Scalar } {
  if (net.loss) return { loss: net.loss(logits, y, smoothing), correct: correctCount(logits, y) };
  return crossEntropyAndCorrect(logits, y, smoothing);
}

/**
 * Gradients of one batch's loss: the mean over `divisor` examples (the seed's
 * `l.mean().backward()`), or the sum when the optimizer divides by the batch size itself (the
 * seed's from-scratch updater). A worker thread passes its shard with the whole batch's size as
 * the divisor, so the shards' gradients add up to the batch's. Returns the summed per-example
 * loss and the correct count as tensors; the caller disposes everything.
 */
export function lossGradients(
  net: Net,
  reduction: 'mean' | 'sum',
  x: tf.Tensor4D,
  labels: ArrayLike<number>,
  labelSmoothing: number,
  divisor: number = x.shape[0],
): { grads: tf.Tensor[]; loss: tf.Scalar; correct: tf.Scalar } {
  const vars = net.trainableVariables;
  const n = x.shape[0];
  const sum = reduction === 'sum';
  const y = tf.tensor1d(labels as Int32Array, 'int32');
  let correct: tf.Scalar | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const logits = net.apply(x, { training: true }) as tf.Tensor2D;
    const { loss: per, correct: c } = lossAndCorrect(net, logits, y, labelSmoothing);
    correct = tf.keep(c);
    if (sum) return tf.sum(per) as tf.Scalar;
    return (divisor === n ? tf.mean(per) : tf.div(tf.sum(per), divisor)) as tf.Scalar;
  }, vars);
  y.dispose();
  // `correct` is kept (the tape would dispose it): the caller disposes it.
  const loss = (sum ? value : tf.mul(value, divisor)) as tf.Scalar;
  if (loss !== value) value.dispose();
  return { grads: vars.map((v) => grads[v.name]), loss, correct: correct! };
}

/**
 * One optimizer step on one batch: the seed's `l.mean().backward()` (or `l.sum()` for its
 * from-scratch updater) and `updater`. Returns the batch's summed loss and correct count, as
 * tensors inside the caller's tidy scope.
 */
export function trainStep(
  net: Net,
  optimizer: Optimizer,
  x: tf.Tensor4D,
  labels: ArrayLike<number>,
  lr: number,
  labelSmoothing: number,
): { loss: tf.Scalar; correct: tf.Scalar } {
  const { grads, loss, correct } = lossGradients(
    net,
    optimizer.lossReduction ?? 'mean',
    x,
    labels,
    labelSmoothing,
  );
  optimizer.apply(net.trainableVariables, grads, lr, x.shape[0]);
  return { loss, correct };
}

/** One pass over `split` with minibatch updates. */
export async function trainEpoch(
  net: Net,
  optimizer: Optimizer,
  split: Split,
  opts: TrainEpochOptions,
): Promise<EpochResult> {
  const start = performance.now();
  const [h, w, c] = opts.shape;
  const rowSize = imageSize(opts.shape);
  const total = batchCount(split.count, opts.batchSize);
  const smoothing = opts.labelSmoothing ?? 0;
  const scratch = new Float32Array(rowSize);
  const carried = opts.sums ?? { loss: 0, correct: 0, seen: 0, seconds: 0 };
  let lossSum = tf.scalar(carried.loss);
  let correctSum = tf.scalar(carried.correct);
  let seen = carried.seen;
  let step = opts.startStep ?? 0;
  let done = 0;
  let stopped = false;
  // A runner that reads the rows itself gets indices; everyone else gets the pixels. Both
  // draw the epoch's order alike from opts.rng.
  const byRows = readsRows(opts.runner, split.images, opts.augment);
  const epoch = byRows
    ? batchRows(split, opts.batchSize, opts.rng)
    : batches(split, { batchSize: opts.batchSize, rowSize, rng: opts.rng });
  for (const batch of epoch) {
    if (done < (opts.startBatch ?? 0)) {
      done++;
      continue;
    }
    if (opts.shouldStop?.()) {
      stopped = true;
      break;
    }
    const n = batch.size;
    const lr = opts.schedule ? opts.schedule(step) : optimizer.lr;
    if ('rows' in batch) {
      await opts.runner!.stepRows!(split.images as Uint8Array, batch.rows, batch.y, lr, step);
    } else {
      if (opts.augment) augmentBatch(batch.x, n, opts.shape, opts.augment.rng, opts.augment, scratch);
      if (opts.runner) await opts.runner.step(batch.x, batch.y, lr, step);
      else {
        if (opts.seed !== undefined) seedDropout(opts.seed, step);
        tf.tidy(() => {
          const r = trainStep(net, optimizer, tf.tensor4d(batch.x, [n, h, w, c]), batch.y, lr, smoothing);
          const newLoss = tf.add(lossSum, r.loss);
          const newCorrect = tf.add(correctSum, r.correct);
          r.correct.dispose(); // kept by trainStep past the gradient tape, so not tidied
          lossSum.dispose();
          correctSum.dispose();
          lossSum = tf.keep(newLoss) as tf.Scalar;
          correctSum = tf.keep(newCorrect) as tf.Scalar;
        });
      }
    }
    seen += n;
    step++;
    const pending = opts.onBatch?.(++done, total);
    if (pending) await pending;
  }
  let lossTotal = carried.loss;
  let correct = carried.correct;
  if (opts.runner) {
    // Every started step finishes before the epoch (or a stop) is reported. The sums continue
    // from the carried ones step by step, so a resumed epoch adds up exactly as an unbroken one.
    for (const r of await opts.runner.drain()) {
      lossTotal += r.loss;
      correct += r.correct;
    }
  } else {
    lossTotal = (await lossSum.data())[0];
    correct = (await correctSum.data())[0];
  }
  lossSum.dispose();
  correctSum.dispose();
  const seconds = carried.seconds + (performance.now() - start) / 1000;
  return {
    loss: lossTotal / Math.max(seen, 1),
    accuracy: correct / Math.max(seen, 1),
    seconds,
    stopped,
    batches: done,
    step,
    sums: { loss: lossTotal, correct, seen, seconds },
  };
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

/**
 * One evaluation batch in evaluation mode (no dropout, BN running statistics): the arg-max per
 * row, the summed cross-entropy, and the softmax if asked. Call inside tf.tidy. The worker
 * threads evaluate their shards with it too (backend/workers), so both give the same numbers.
 */
export function evaluationTensors(
  net: Net,
  x: tf.Tensor4D,
  y: tf.Tensor1D,
  withProbabilities = false,
): [tf.Tensor1D, tf.Scalar, tf.Tensor2D | undefined] {
  const logits = net.apply(x, { training: false }) as tf.Tensor2D;
  const probs = withProbabilities ? tf.softmax(logits) : undefined;
  return [tf.argMax(logits, 1), tf.sum(crossEntropy(logits, y)), probs];
}

/** Evaluation mode (no dropout, BN running statistics), in the split's order. */
export function evaluate(
  net: Net,
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
    const [pred, loss, probs] = tf.tidy(() =>
      evaluationTensors(
        net,
        tf.tensor4d(batch.x, [n, h, w, c]),
        tf.tensor1d(batch.y, 'int32'),
        opts.withProbabilities,
      ),
    );
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

/**
 * The training loss stopped being a finite number: the model diverged (usually a learning
 * rate too high for it). Nothing of the diverged epoch is reported, so nothing of it is saved.
 */
export class DivergedError extends UserError {
  constructor(
    readonly epoch: number,
    readonly lr: number,
  ) {
    super(`the training loss became NaN or infinite in epoch ${epoch} at lr ${lr}: the model diverged`);
    this.name = 'DivergedError';
  }
}

export interface EpochMetrics {
  epoch: number;
  train_loss: number;
  train_accuracy: number;
  test_accuracy: number;
  test_loss: number;
  /** On the held-out validation split, when there is one. */
  val_accuracy?: number;
  val_loss?: number;
  /** Learning rate of the epoch's last step. */
  lr?: number;
  /** Seconds of the training pass alone. */
  seconds: number;
  /** Seconds of the evaluation pass. */
  eval_seconds: number;
  /**
   * Fine-tuning (--fine-tune): 'head' for an epoch of the head alone on cached features,
   * 'fine-tune' for one of backbone layers and head together on the images. Absent otherwise.
   */
  phase?: TrainPhase;
}

/** The phases of a fine-tuning run (EpochMetrics.phase). */
export type TrainPhase = 'head' | 'fine-tune';

/**
 * A run in phases (fine-tuning): this `fit` is phase `name`, which starts after epoch `start`
 * of the run, the earlier phase's epochs being `before`. A fresh start continues their
 * numbering and history; the schedule spans this phase's epochs alone, as fastai schedules each
 * `fit` of `fine_tune` on its own, and the best epoch is chosen among this phase's.
 */
export interface FitPhase {
  name: TrainPhase;
  start: number;
  before: EpochMetrics[];
}

/** Where a run stands: enough to continue it exactly (with the weights and optimizer state). */
export interface FitState {
  /** Epochs fully done. */
  epoch: number;
  /** Batches done in the next epoch (non-zero after an interrupt). */
  batch: number;
  /** Optimizer steps done. */
  step: number;
  /** Shuffle generator at the start of the next epoch. */
  epochRng: number;
  /** Augmentation generator now. */
  augmentRng: number;
  /** Sums of the partly done epoch. */
  sums: EpochSums;
  history: EpochMetrics[];
  /**
   * The best epoch by validation accuracy (0 = none yet, or no validation split), its
   * validation accuracy and its test accuracy: the one place the run's best epoch is kept.
   */
  bestValAccuracy: number;
  bestEpoch: number;
  bestTestAccuracy?: number;
  /** The epoch after which early stopping (FitOptions.patience) ended the run. */
  stoppedEarly?: number;
}

export interface FitOptions {
  epochs: number;
  batchSize: number;
  seed: number;
  shape: ImageShape;
  labelSmoothing?: number;
  /** Schedule name (core/optim/schedule.ts); default constant. */
  schedule?: string;
  /** Warmup in epochs (fractions allowed). */
  warmup?: number;
  /** Batch augmentation, seeded from `seed`. */
  augment?: AugmentOptions;
  /** Validation split: the best epoch by its accuracy is reported to onEpoch. */
  val?: Split;
  /**
   * Early stopping: with a validation split, end the run after this many epochs without a
   * better validation accuracy, and put the best epoch's weights back into the model.
   */
  patience?: number;
  /**
   * With a validation split, end with the best epoch's weights in the model even when every
   * epoch ran (Keras's `restore_best_weights`): what a caller keeping the run in memory wants.
   * A caller that saves every epoch to disk keeps the best epoch there instead.
   */
  restoreBest?: boolean;
  /** Continue from this state (the caller has restored weights and optimizer state). */
  resume?: FitState;
  /** After each epoch; `best` is true when validation accuracy improved. */
  onEpoch?: (m: EpochMetrics, state: FitState, best: boolean) => void | Promise<void>;
  /** When shouldStop ends the run mid-epoch, with the state to continue from. */
  onStop?: (state: FitState) => void | Promise<void>;
  onBatch?: (epoch: number, done: number, total: number) => void | Promise<void>;
  shouldStop?: () => boolean;
  /** Runs the optimizer steps on worker threads (backend/workers); the caller closes it. */
  runner?: StepRunner;
  /** This fit is one phase of a run (fine-tuning); `epochs` counts the run's epochs. */
  phase?: FitPhase;
}

/** Trains for `epochs`, evaluating on `test` (and `val`) after each one, and returns the history. */
export async function fit(
  net: Net,
  optimizer: Optimizer,
  train: Split,
  test: Split,
  opts: FitOptions,
): Promise<EpochMetrics[]> {
  const rng = new Rng(opts.seed);
  const augmentRng = new Rng(opts.seed ^ 0xa5a5a5);
  // Data that fits as floats is converted once here, not batch by batch; a runner that reads
  // byte rows itself (the fused dense step) reads them as they are.
  if (!readsRows(opts.runner, train.images, opts.augment)) train = floatIfSmall(train);
  test = floatIfSmall(test);
  const valSplit = opts.val && floatIfSmall(opts.val);
  const perEpoch = batchCount(train.count, opts.batchSize);
  const phase = opts.phase;
  const schedule = createSchedule({
    name: opts.schedule ?? 'constant',
    lr: optimizer.lr,
    totalSteps: perEpoch * (opts.epochs - (phase?.start ?? 0)),
    stepsPerEpoch: perEpoch,
    warmupSteps: (opts.warmup ?? 0) * perEpoch,
  });
  const r0 = opts.resume;
  const state: FitState = r0
    ? {
        ...r0,
        history: [...r0.history],
        // Checkpoints written before bestTestAccuracy was kept: read it from the history.
        bestTestAccuracy:
          r0.bestTestAccuracy ?? r0.history.find((m) => m.epoch === r0.bestEpoch)?.test_accuracy,
      }
    : {
        epoch: phase?.start ?? 0,
        batch: 0,
        step: 0,
        epochRng: rng.snapshot,
        augmentRng: augmentRng.snapshot,
        sums: { loss: 0, correct: 0, seen: 0, seconds: 0 },
        history: [...(phase?.before ?? [])],
        bestValAccuracy: -1,
        bestEpoch: 0,
      };
  augmentRng.snapshot = state.augmentRng;
  // Early stopping and restoreBest keep the best epoch's weights to put back (only then: they
  // cost a copy).
  const holdBest = Boolean((opts.patience || opts.restoreBest) && opts.val);
  let bestWeights: tf.Tensor[] | undefined;
  const keepBest = (): void => {
    bestWeights?.forEach((w) => w.dispose());
    bestWeights = net.getWeights().map((w) => tf.clone(w));
  };
  if (holdBest && r0 && r0.bestEpoch === r0.epoch) keepBest();
  let interrupted = false;
  const runner = opts.runner;
  await runner?.load(net, optimizer);
  for (let epoch = state.epoch + 1; epoch <= opts.epochs && state.stoppedEarly === undefined; epoch++) {
    if (opts.shouldStop?.()) {
      interrupted = true;
      await opts.onStop?.(state);
      break;
    }
    rng.snapshot = state.epochRng;
    const r = await trainEpoch(net, optimizer, train, {
      batchSize: opts.batchSize,
      shape: opts.shape,
      rng,
      labelSmoothing: opts.labelSmoothing,
      schedule,
      startStep: state.step,
      startBatch: state.batch,
      sums: state.sums,
      augment: opts.augment ? { ...opts.augment, rng: augmentRng } : undefined,
      onBatch: (d, t) => opts.onBatch?.(epoch, d, t),
      shouldStop: opts.shouldStop,
      runner,
      seed: opts.seed,
    });
    // The runner's weights and optimizer state come back before anything reads or saves them.
    await runner?.sync(net, optimizer);
    // The loss is read once per epoch (no host sync per step), so this is the first moment a
    // divergence can be seen; the epoch's weights are thrown away with it.
    if (!Number.isFinite(r.sums.loss)) throw new DivergedError(epoch, schedule(Math.max(r.step - 1, 0)));
    if (r.stopped) {
      // rng has already drawn this epoch's order; the resumed run redraws it from epochRng.
      Object.assign(state, { batch: r.batches, step: r.step, sums: r.sums, augmentRng: augmentRng.snapshot });
      interrupted = true;
      await opts.onStop?.(state);
      break;
    }
    const evaluateSplit = (split: Split) =>
      runner?.evaluate ? runner.evaluate(split, opts.shape) : evaluate(net, split, { shape: opts.shape });
    const ev = await evaluateSplit(test);
    const val = valSplit ? await evaluateSplit(valSplit) : undefined;
    const m: EpochMetrics = {
      epoch,
      train_loss: r.loss,
      train_accuracy: r.accuracy,
      test_accuracy: ev.accuracy,
      test_loss: ev.loss,
      ...(val ? { val_accuracy: val.accuracy, val_loss: val.loss } : {}),
      lr: schedule(r.step - 1),
      seconds: r.seconds,
      eval_seconds: ev.seconds + (val?.seconds ?? 0),
      ...(phase ? { phase: phase.name } : {}),
    };
    const best = val !== undefined && val.accuracy > state.bestValAccuracy;
    state.history.push(m);
    Object.assign(state, {
      epoch,
      batch: 0,
      step: r.step,
      epochRng: rng.snapshot,
      augmentRng: augmentRng.snapshot,
      sums: { loss: 0, correct: 0, seen: 0, seconds: 0 },
      ...(best ? { bestValAccuracy: val.accuracy, bestEpoch: epoch, bestTestAccuracy: ev.accuracy } : {}),
    });
    if (holdBest && best) keepBest();
    if (opts.patience && opts.val) {
      if (epoch - state.bestEpoch >= opts.patience) {
        state.stoppedEarly = epoch;
        if (bestWeights) net.setWeights(bestWeights);
      }
    }
    await opts.onEpoch?.(m, state, best);
  }
  if (opts.restoreBest && bestWeights && !interrupted && state.stoppedEarly === undefined) {
    if (state.bestEpoch !== state.epoch) net.setWeights(bestWeights);
  }
  bestWeights?.forEach((w) => w.dispose());
  return state.history;
}

/** The epoch a run keeps, and the test accuracy it reports for it. */
export interface KeptEpoch {
  epoch: number;
  testAccuracy: number | undefined;
  /** With a validation split: the best epoch is kept (and may not be the last). */
  byValidation: boolean;
}

/**
 * The one rule for which epoch a run keeps and which test accuracy it reports, followed by
 * every door (the session's run directory, the library's `fit` and `saveRun`, `train --json`):
 * with a validation split, the epoch with the best validation accuracy (the earliest of
 * equals); without one, the last epoch.
 */
export function keptEpoch(state: Pick<FitState, 'history' | 'bestEpoch' | 'bestTestAccuracy'>): KeptEpoch {
  if (state.bestEpoch > 0) {
    const best = state.history.find((m) => m.epoch === state.bestEpoch);
    return {
      epoch: state.bestEpoch,
      testAccuracy: state.bestTestAccuracy ?? best?.test_accuracy,
      byValidation: true,
    };
  }
  const last = state.history.at(-1);
  return { epoch: last?.epoch ?? 0, testAccuracy: last?.test_accuracy, byValidation: false };
}

/**
 * The "training" of a model with no trainable variables (knn): it memorizes the training
 * split, then is evaluated once on (a sample of) it, the test split and the validation split.
 * That is its one epoch, in the same history and state shapes `fit` returns, so every door
 * (the session, the library's `fit`) saves and reports it as it does a trained model.
 */
import { type ImageShape, pixelsAsFloat, type Split } from '../data/dataset.js';
import { subset } from '../data/split.js';
import type { Net } from '../models/net.js';
import { type EpochMetrics, evaluate, type FitState } from './loop.js';

/** Training examples a memorizing model is scored on (evenly spaced): its train metrics. */
const MEMORY_SAMPLE = 2000;

/** Whether `net` memorizes its data (knn: Net.memorize) instead of training. */
export function memorizes(net: Net): net is Net & Required<Pick<Net, 'memorize'>> {
  return typeof net.memorize === 'function';
}

export function memorizeAndEvaluate(
  model: Net & Required<Pick<Net, 'memorize'>>,
  train: Split,
  test: Split,
  val: Split | undefined,
  shape: ImageShape,
): { history: EpochMetrics[]; state: FitState } {
  const start = performance.now();
  model.memorize(pixelsAsFloat(train.images), train.labels, train.count);
  const seconds = (performance.now() - start) / 1000;
  const every = Math.ceil(train.count / MEMORY_SAMPLE);
  const sample =
    every > 1
      ? subset(
          train,
          shape,
          Array.from({ length: Math.ceil(train.count / every) }, (_, i) => i * every),
        )
      : train;
  const onTrain = evaluate(model, sample, { shape });
  const ev = evaluate(model, test, { shape });
  const v = val ? evaluate(model, val, { shape }) : undefined;
  const m: EpochMetrics = {
    epoch: 1,
    train_loss: onTrain.loss,
    train_accuracy: onTrain.accuracy,
    test_accuracy: ev.accuracy,
    test_loss: ev.loss,
    ...(v ? { val_accuracy: v.accuracy, val_loss: v.loss } : {}),
    seconds,
    eval_seconds: onTrain.seconds + ev.seconds + (v?.seconds ?? 0),
  };
  const state: FitState = {
    epoch: 1,
    batch: 0,
    step: 0,
    epochRng: 0,
    augmentRng: 0,
    sums: { loss: 0, correct: 0, seen: 0, seconds: 0 },
    history: [m],
    bestValAccuracy: v?.accuracy ?? -1,
    bestEpoch: v ? 1 : 0,
    ...(v ? { bestTestAccuracy: ev.accuracy } : {}),
  };
  return { history: [m], state };
}

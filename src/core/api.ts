/**
 * The public API over the core, for any JavaScript runtime (the browser included): build a
 * model, train it, evaluate it and predict with it. `imgclf/core` exports it as it is; the Node
 * entry (`imgclf`, src/node/api.ts) wraps the functions that touch tensors so that a fast
 * backend is chosen first.
 *
 * Nothing here holds a default: `fit` resolves its settings with `resolveConfig`
 * (core/plan.ts), so a setting left out gets the model's own default, exactly as
 * `imgclf train` and the page get it, and trains with `optimizerFor` and `fitOptionsFor`.
 */
import {
  type Dataset,
  type ImageShape,
  imageSize,
  pixelsAsFloat,
  type Split,
  splitFromBytes,
} from './data/dataset.js';
import { checkPair, parseIdx } from './data/idx.js';
import { stratifiedSplit } from './data/split.js';
import { check, UserError } from './errors.js';
import { create, list, type ModelDefaults, type Net } from './models/index.js';
import { modelDefaults, resolveConfig, sizeToData, type TrainConfig } from './plan.js';
import { predictProbabilities } from './predict.js';
import { TRAIN_CHOICE_NAMES, type TrainChoiceSetting } from './settings.js';
import { type EpochMetrics, evaluate as evaluatePass, keptEpoch } from './train/loop.js';
import { memorizes } from './train/memorize.js';
import { trainRun } from './train/run.js';

/** A model built by `createModel` or loaded from a run: a `Net` that knows what it takes. */
export interface Model extends Net {
  /** The image shape [height, width, channels] the model takes. */
  readonly inputShape: ImageShape;
  /** How many classes it tells apart (its number of outputs). */
  readonly numClasses: number;
  /** Class names, index = label, when known (a loaded run knows them). */
  readonly classNames?: string[];
  /** The model options it was built with (hidden sizes, dropout, ...). */
  readonly options: Record<string, unknown>;
  /** What the last `fit` of this model did; `saveRun` records it. */
  lastFit?: FitSummary;
}

/** What a `fit` did, kept on the model for `saveRun`. */
export interface FitSummary {
  /** The resolved plan it trained with (batch size and epochs sized to the data, if defaulted). */
  plan: TrainConfig;
  /**
   * The epoch whose weights the model holds (core/train/loop.ts keptEpoch): with a validation
   * split the best one by validation accuracy, otherwise the last.
   */
  keptEpoch: number;
  /** With `patience`: the epoch after which early stopping ended training. */
  stoppedEarly?: number;
}

/** What `createModel` builds a model for. */
export interface CreateModelOptions {
  /** Image shape [height, width, channels]: a dataset's `shape`. */
  inputShape: ImageShape;
  /** Number of classes (2 to 256): a dataset's `classNames.length`. */
  numClasses: number;
  /** Seeds the weight initialization (default 0): the same seed gives the same weights. */
  seed?: number;
  /** Model options, e.g. `{ hidden: [256, 128] }` for mlp (see docs/models.md). */
  options?: Record<string, unknown>;
  /** Class names, index = label; `predict` and `saveRun` use them when given. */
  classNames?: string[];
}

/** A registered model, as `listModels` describes it. */
export interface ModelInfo {
  name: string;
  description: string;
  /** The training settings `fit` uses for this model when none are given. */
  defaults: Required<ModelDefaults>;
  /**
   * True for a model that memorizes its training data (knn): `fit` makes one pass over it,
   * with no optimizer and no batches.
   */
  memorizes: boolean;
}

/** Every choice `resolvePlan` accepts: all optional, each falls back to the model's default. */
export type PlanChoices = Partial<TrainConfig>;

/**
 * The training settings `fit` takes (those core/settings.ts declares for the training loop and
 * the optimizer); each one left out gets the model's default.
 */
export const TRAIN_CHOICES = TRAIN_CHOICE_NAMES;

/** The settings of one training run (see core/settings.ts for each one's meaning). */
export type TrainChoices = Partial<Pick<TrainConfig, TrainChoiceSetting>>;

/** What `onEpoch` is told besides the epoch's metrics. */
export interface EpochInfo {
  /** Epochs this `fit` runs. */
  epochs: number;
  /** True when the validation accuracy is the best so far (always false without `val`). */
  best: boolean;
  /** The resolved plan `fit` trains with. */
  plan: TrainConfig;
}

export interface FitOptions extends TrainChoices {
  /**
   * A validation split (see `validationSplit`): evaluated after every epoch as `val_accuracy`,
   * and the model ends with the best epoch's weights (as `imgclf train --val-split` keeps the
   * best epoch); with `patience`, training stops after that many epochs without a better one.
   */
  val?: Split;
  /** After every epoch; a returned promise is awaited before the next epoch. */
  onEpoch?: (metrics: EpochMetrics, info: EpochInfo) => void | Promise<void>;
  /** After every batch, with the epoch (from 1), batches done and batches in the epoch. */
  onBatch?: (epoch: number, done: number, total: number) => void | Promise<void>;
  /** Checked before every batch: returning true ends `fit` early with the epochs finished. */
  shouldStop?: () => boolean;
}

const FIT_HOOKS = ['val', 'onEpoch', 'onBatch', 'shouldStop'] as const;

/** The result of `evaluate`. */
export interface Evaluation {
  /** Fraction of the split classified correctly. */
  accuracy: number;
  /** Mean cross-entropy over the split. */
  loss: number;
  /** The predicted class of every example, in the split's order. */
  predicted: Int32Array;
  /** Seconds the pass took. */
  seconds: number;
}

export interface PredictOptions {
  /** How many examples to predict (default: all from `offset` on). */
  count?: number;
  /** The first example to predict (default 0). */
  offset?: number;
  /** Class names, index = label: adds `labelName` and `trueName` (default: the model's). */
  classNames?: string[];
  /** Examples per forward pass (default 1000). */
  batchSize?: number;
}

/** One prediction. `label` and `true` are class indices; the names come with class names. */
export interface Prediction {
  /** The example's index in the split. */
  index: number;
  /** The predicted class index (the most probable class). */
  label: number;
  /** The true class index, from the split's labels. */
  true: number;
  /** `label === true`. */
  correct: boolean;
  /** Softmax probability of each class, index = class. */
  probabilities: number[];
  /** `classNames[label]`, when class names are known. */
  labelName?: string;
  /** `classNames[true]`, when class names are known. */
  trueName?: string;
}

/** Adds what a `Model` knows to a `Net` (the same object, returned). */
export function asModel(
  net: Net,
  info: {
    inputShape: ImageShape;
    numClasses: number;
    classNames?: string[];
    options?: Record<string, unknown>;
  },
): Model {
  return Object.assign(net, {
    inputShape: [...info.inputShape] as ImageShape,
    numClasses: info.numClasses,
    classNames: info.classNames,
    options: info.options ?? {},
  });
}

/**
 * Builds a registered model (`listModels()` names them) with fresh weights. Synchronous: in
 * Node, call it after data was loaded through imgclf or after `await ready()`, so its weights
 * are made on the fast backend from the start.
 */
export function createModel(name: string, spec: CreateModelOptions): Model {
  check(
    Array.isArray(spec.inputShape) &&
      spec.inputShape.length === 3 &&
      spec.inputShape.every((d) => Number.isInteger(d) && d >= 1),
    () => `inputShape must be [height, width, channels] (got ${JSON.stringify(spec.inputShape)})`,
  );
  check(
    Number.isInteger(spec.numClasses) && spec.numClasses >= 2 && spec.numClasses <= 256,
    () => `numClasses must be a whole number from 2 to 256 (got ${spec.numClasses})`,
  );
  check(
    spec.classNames === undefined || spec.classNames.length === spec.numClasses,
    () => `classNames has ${spec.classNames!.length} names but numClasses is ${spec.numClasses}`,
  );
  const seed = spec.seed ?? 0;
  check(Number.isInteger(seed) && seed >= 0, `seed must be a whole number >= 0 (got ${seed})`);
  const net = create(name, {
    inputShape: spec.inputShape,
    numClasses: spec.numClasses,
    seed,
    options: spec.options,
  });
  return asModel(net, spec);
}

/** The registered models with their descriptions and default training settings. */
export function listModels(): ModelInfo[] {
  return list().map((e) => ({
    name: e.name,
    description: e.description,
    defaults: modelDefaults(e.name),
    memorizes: e.memorizes ?? false,
  }));
}

/**
 * The complete, validated training plan for `choices`: the global defaults (the seed's recipe),
 * then the model's own, then the choices. The one place defaults come from; unknown keys and
 * out-of-range values are errors.
 */
export function resolvePlan(choices: PlanChoices = {}): TrainConfig {
  return resolveConfig(choices);
}

/**
 * The training choices in `options` (defined ones only). Of a resolved plan, they are the
 * options that make `fit` train exactly by that plan: `fit(model, train, test,
 * trainChoicesOf(plan))`.
 */
export function trainChoicesOf(options: object): TrainChoices {
  const out: Record<string, unknown> = {};
  for (const key of TRAIN_CHOICES) {
    const value = (options as Record<string, unknown>)[key];
    if (value !== undefined) out[key] = value;
  }
  return out as TrainChoices;
}

/** Fails with one line when `split` does not hold images of `shape` with labels below `numClasses`. */
function checkSplit(split: Split, shape: ImageShape, numClasses: number, what: string): void {
  check(
    split &&
      (split.images instanceof Float32Array || split.images instanceof Uint8Array) &&
      split.labels instanceof Uint8Array,
    `${what} must be a split: { images: Uint8Array (0..255) or Float32Array (0..1), labels: Uint8Array, count }`,
  );
  const row = imageSize(shape);
  check(
    split.labels.length === split.count && split.images.length === split.count * row,
    () =>
      `${what} holds ${split.count} labels and ${split.images.length} pixel values, but the model takes ${shape.join('x')} images (${row} values each)`,
  );
  check(split.count > 0, `${what} is empty`);
  let max = 0;
  for (const l of split.labels) if (l > max) max = l;
  check(max < numClasses, () => `${what} has label ${max}, but the model has ${numClasses} classes`);
}

/**
 * Trains `model` on `train` and evaluates it on `test` after every epoch; returns the history
 * (one `EpochMetrics` per epoch). Settings left out get the model's defaults (for softmax the
 * seed's: 5 epochs of SGD, lr 0.1, batch 256), resolved as `resolvePlan({ model, ...options })`
 * and, like `imgclf train`, batch size and epochs left out are sized to a small training set.
 * Each call is a fresh optimizer and schedule over the model's current weights.
 */
export async function fit(
  model: Model,
  train: Split,
  test: Split,
  options: FitOptions = {},
): Promise<EpochMetrics[]> {
  for (const key of Object.keys(options)) {
    if (
      !(TRAIN_CHOICES as readonly string[]).includes(key) &&
      !(FIT_HOOKS as readonly string[]).includes(key)
    ) {
      throw new UserError(
        `unknown fit option '${key}'; known: ${[...TRAIN_CHOICES, ...FIT_HOOKS].join(', ')}`,
      );
    }
  }
  checkSplit(train, model.inputShape, model.numClasses, 'the training split');
  checkSplit(test, model.inputShape, model.numClasses, 'the test split');
  const { val, onEpoch } = options;
  if (val) checkSplit(val, model.inputShape, model.numClasses, 'the validation split');
  check(
    options.patience === undefined || val,
    'patience watches validation accuracy: pass a val split too (see validationSplit)',
  );
  const requested = resolveConfig({
    model: model.name,
    ...trainChoicesOf(options),
    // The plan records the validation fraction the caller chose by splitting.
    ...(val ? { valSplit: Math.min(0.9, val.count / (train.count + val.count)) } : {}),
  });
  // A model that memorizes (knn) takes one pass, whatever the epochs.
  const { plan } = memorizes(model)
    ? { plan: { ...requested, epochs: 1 } }
    : sizeToData(requested, train.count);
  const summary: FitSummary = { plan, keptEpoch: 0 };
  const run = await trainRun(
    model,
    plan,
    { train, test, val, shape: model.inputShape },
    [
      { shouldStop: options.shouldStop, onBatch: options.onBatch },
      {
        onEpoch: async (m, state, best) => {
          summary.stoppedEarly = state.stoppedEarly;
          summary.keptEpoch = keptEpoch(state).epoch;
          await onEpoch?.(m, { epochs: plan.epochs, best, plan });
        },
      },
    ],
    // The model ends with the epoch the run keeps (keptEpoch): the best one by validation.
    { restoreBest: true },
  );
  model.lastFit = summary;
  return run.history;
}

/** Accuracy and mean loss of `model` on `split`, in evaluation mode (no dropout), in order. */
export async function evaluate(
  model: Model,
  split: Split,
  options: { batchSize?: number } = {},
): Promise<Evaluation> {
  checkSplit(split, model.inputShape, model.numClasses, 'the split');
  const r = evaluatePass(model, split, { shape: model.inputShape, batchSize: options.batchSize });
  return { accuracy: r.accuracy, loss: r.loss, predicted: r.predicted, seconds: r.seconds };
}

/**
 * Class probabilities for examples of `split` (the first `count` from `offset`), as the seed's
 * `predict_ch3` shows them. `label` and `true` are class indices; with class names (the
 * option, or the model's own) each prediction also has `labelName` and `trueName`.
 */
export async function predict(
  model: Model,
  split: Split,
  options: PredictOptions = {},
): Promise<Prediction[]> {
  checkSplit(split, model.inputShape, model.numClasses, 'the split');
  const offset = options.offset ?? 0;
  check(
    Number.isInteger(offset) && offset >= 0 && offset <= split.count,
    `offset must be a whole number from 0 to ${split.count} (got ${offset})`,
  );
  const count = Math.min(options.count ?? split.count - offset, split.count - offset);
  check(Number.isInteger(count) && count >= 0, `count must be a whole number >= 0 (got ${options.count})`);
  const names = options.classNames ?? model.classNames;
  check(
    names === undefined || names.length === model.numClasses,
    () => `classNames has ${names!.length} names but the model has ${model.numClasses} classes`,
  );
  const batch = options.batchSize ?? 1000;
  check(Number.isInteger(batch) && batch >= 1, `batchSize must be a whole number >= 1 (got ${batch})`);
  const row = imageSize(model.inputShape);
  const out: Prediction[] = [];
  for (let start = offset; start < offset + count; start += batch) {
    const n = Math.min(batch, offset + count - start);
    const probs = predictProbabilities(
      model,
      pixelsAsFloat(split.images, start * row, n * row),
      n,
      model.inputShape,
    );
    probs.forEach((p, i) => {
      let label = 0;
      for (let k = 1; k < p.length; k++) if (p[k] > p[label]) label = k;
      const truth = split.labels[start + i];
      out.push({
        index: start + i,
        label,
        true: truth,
        correct: label === truth,
        probabilities: Array.from(p),
        ...(names ? { labelName: names[label], trueName: names[truth] } : {}),
      });
    });
  }
  return out;
}

/**
 * Holds out `fraction` (above 0, at most 0.9) of each class of `data.train` as a validation
 * split, seeded, as `imgclf train --val-split` does: pass `val` to `fit`, train on `train`.
 */
export function validationSplit(
  data: Pick<Dataset, 'train' | 'shape' | 'classNames'>,
  fraction: number,
  seed = 0,
): { train: Split; val: Split } {
  check(
    Number.isFinite(fraction) && fraction > 0 && fraction <= 0.9,
    `fraction must be above 0 and at most 0.9 (got ${fraction})`,
  );
  return stratifiedSplit(data.train, data.shape, data.classNames.length, fraction, seed);
}

/**
 * A split from the bytes of two IDX files (uncompressed), as the Fashion-MNIST and MNIST files
 * are: images (N x H x W bytes) and labels (N bytes). The pixels stay bytes; `fit`, `evaluate`
 * and `predict` scale them to [0, 1]. `name` (e.g. 'train') starts the files' names in errors.
 */
export function splitFromIdx(
  images: Uint8Array,
  labels: Uint8Array,
  numClasses: number,
  name?: string,
): { split: Split; shape: ImageShape } {
  const [imagesName, labelsName] = name ? [`${name} images`, `${name} labels`] : ['images', 'labels'];
  const img = parseIdx(images, imagesName);
  const lbl = parseIdx(labels, labelsName, 1);
  checkPair(img, lbl, imagesName, labelsName);
  check(
    img.dims.length === 3 || img.dims.length === 4,
    `${imagesName}: expected N x H x W (x C), got ${img.dims.join('x')}`,
  );
  const shape: ImageShape = [img.dims[1], img.dims[2], img.dims[3] ?? 1];
  return { split: splitFromBytes(img.data, lbl.data, numClasses, labelsName), shape };
}

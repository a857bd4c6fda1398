/**
 * The Node half of the public API (`import ... from 'imgclf'`): the backend, data from files,
 * run directories and the CLI's `train` in code, plus the core API (src/core/api.ts) with a
 * fast backend chosen before its first tensor work.
 *
 * The backend: `ready()` chooses imgclf's default once (`selectBackend('auto')`: tfjs-node when
 * installed, else wasm with our kernels, else cpu); `useBackend(name)` chooses another. Every
 * async function here awaits it first. `createModel` is synchronous and cannot: built before
 * any of them ran, a model's weights start on tfjs's cpu backend (registered below so that
 * works) and move to the chosen backend when `fit` first uses them.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFile } from 'node:fs/promises';
import { type BackendName, selectBackend } from '../backend/index.js';
import {
  asModel,
  evaluate as evaluateCore,
  type Evaluation,
  fit as fitCore,
  type FitOptions,
  type Model,
  type PlanChoices,
  predict as predictCore,
  type PredictOptions,
  type Prediction,
  type TrainChoices,
  trainChoicesOf,
} from '../core/api.js';
import type { Dataset, Split } from '../core/data/dataset.js';
import {
  type DataSource,
  folderPreprocessing,
  type Preprocessing,
  preprocessingByBorder,
  type ResizeMode,
} from '../core/data/source.js';
import { check, UserError } from '../core/errors.js';
import { dataSourceOf, resolveConfig, sizeToData, type TrainConfig } from '../core/plan.js';
import { predictProbabilities, topK } from '../core/predict.js';
import { DATA_SETTING_NAMES } from '../core/settings.js';
import type { EpochMetrics } from '../core/train/loop.js';
import { runMetadata } from '../core/run-format.js';
import { loadDataset as loadSource, sourceEntry } from './data/load.js';
import { prepareImage } from './image.js';
import { loadRunData as loadDataOfRun, runDataSource } from './run/data.js';
import {
  loadRun as loadRunDir,
  METADATA_FILE,
  metadataText,
  METRICS_FILE,
  metricsText,
  modelFiles,
  type RunMetadata,
  saveRunFiles,
} from './run/rundir.js';
import { lockRun } from './run/lock.js';
import { holdsRun } from './run/save.js';
// Types only: the session (and the report's vega under it) loads when `train` is first called.
import type { Progress, ResumeOverrides, SessionResult } from './session.js';

// ---------------------------------------------------------------------------------------------
// The backend.

/** The backend last asked for, and the promise of its selection. */
let requested: BackendName = 'auto';
let selection: Promise<string> | undefined;

function select(name: BackendName): Promise<string> {
  requested = name;
  const chosen = selectBackend(name);
  selection = chosen;
  // A failed selection is not remembered: the next call tries again.
  chosen.catch(() => {
    if (selection === chosen) selection = undefined;
  });
  return chosen;
}

/**
 * Makes sure a TensorFlow.js backend is ready: on the first call imgclf's default (`'auto'`:
 * tfjs-node when installed, else wasm, else cpu), afterwards the one already chosen. Resolves
 * to the backend's name. Loading data, `fit`, `evaluate`, `predict` and `loadRun` call it
 * themselves; call it first when your first tensor work is your own or `createModel`.
 */
export function ready(): Promise<string> {
  return selection ?? select('auto');
}

/**
 * Chooses the backend: `'auto'`, `'wasm'`, `'cpu'` or `'tensorflow'` (needs
 * @tensorflow/tfjs-node). Resolves to the name of the backend in use. Tensors made before
 * move to it when next used.
 */
export function useBackend(name: BackendName): Promise<string> {
  return select(name);
}

// ---------------------------------------------------------------------------------------------
// The core API, with the backend ready first.

/** Trains `model`; see `imgclf/core`'s `fit`. Chooses the backend first (`ready()`). */
export async function fit(
  model: Model,
  train: Split,
  test: Split,
  options: FitOptions = {},
): Promise<EpochMetrics[]> {
  await ready();
  return fitCore(model, train, test, options);
}

/** Accuracy, mean loss and every prediction of `model` on `split`. Chooses the backend first. */
export async function evaluate(
  model: Model,
  split: Split,
  options: { batchSize?: number } = {},
): Promise<Evaluation> {
  await ready();
  return evaluateCore(model, split, options);
}

/**
 * Predictions for examples of `split` (all, or `count` from `offset`): class indices `label`
 * and `true`, the probabilities, and `labelName`/`trueName` when class names are known.
 * Chooses the backend first.
 */
export async function predict(
  model: Model,
  split: Split,
  options: PredictOptions = {},
): Promise<Prediction[]> {
  await ready();
  return predictCore(model, split, options);
}

// ---------------------------------------------------------------------------------------------
// Data.

/** What `loadDataset` loads: a built-in set, or your own folder or CSV. */
export interface DatasetOptions {
  /** A built-in IDX set: 'fashion-mnist' (default), 'mnist' or 'kmnist'. */
  dataset?: string;
  /** Your own data: a folder with one subfolder per class (or train/ and test/), or a .csv file. */
  data?: string;
  /**
   * The kind of `data`: 'folder', 'csv' or a registered kind (node/data/sources.ts); by
   * default a .csv file is 'csv' and anything else 'folder'.
   */
  dataKind?: string;
  /** A test CSV for a CSV `data`; without one, `valSplit` of the rows is held out. */
  testData?: string;
  /** Image folders: images become imageSize x imageSize pixels (default 28). */
  imageSize?: number;
  /** Image folders: 1 (gray) or 3 (RGB, the default). */
  channels?: 1 | 3;
  /** Image folders: fill (stretch, the default), contain (letterbox) or cover (crop). */
  resizeMode?: ResizeMode;
  /** Data without a test split: the fraction held out, stratified, as the test split (default 0.1). */
  valSplit?: number;
  /** Seeds the held-out split (default 0). */
  seed?: number;
  /** Built-in sets and CSVs: resize the images to N x N (bilinear). */
  resize?: number;
  /** Built-in sets: the folder holding the IDX files (default: searched, then downloaded). */
  dataDir?: string;
  /** Image folders: an unreadable file is an error instead of being skipped. */
  strict?: boolean;
  /** Built-in sets: download when not found (default true). */
  download?: boolean;
  /** Informational lines (which files, warnings). */
  log?: (message: string) => void;
  /** Image folders: decoding progress. */
  onProgress?: (done: number, total: number) => void;
}

/** The settings `loadDataset` takes: those core/settings.ts declares for the data. */
const DATA_CHOICES = DATA_SETTING_NAMES;
const DATA_HOOKS = ['download', 'log', 'onProgress'] as const;

/** A dataset and where it came from. */
export interface LoadedData extends Dataset {
  /** The source, paths made absolute: `saveRun` records it, so the CLI reloads the same splits. */
  source: DataSource;
  /** Image folders: files that could not be decoded and were skipped. */
  skipped: string[];
  /** True when the test split was held out of the data (a folder or CSV without a test split). */
  heldOut: boolean;
}

/**
 * Loads a built-in set (found locally or downloaded and verified), an image folder or a CSV
 * into memory: pixels in [0, 1], byte labels, class names and the image shape. Defaults
 * (image size, channels, held-out fraction) are those of `imgclf train --data`.
 */
export async function loadDataset(options: DatasetOptions = {}): Promise<LoadedData> {
  const choices: PlanChoices = {};
  for (const [key, value] of Object.entries(options)) {
    if ((DATA_CHOICES as readonly string[]).includes(key)) {
      if (value !== undefined) (choices as Record<string, unknown>)[key] = value;
    } else if (!(DATA_HOOKS as readonly string[]).includes(key)) {
      throw new UserError(
        `unknown dataset option '${key}'; known: ${[...DATA_CHOICES, ...DATA_HOOKS].join(', ')}`,
      );
    }
  }
  const plan = resolveConfig(choices);
  await ready();
  const loaded = await loadSource({
    source: dataSourceOf(plan),
    strict: plan.strict,
    download: options.download,
    log: options.log,
    onProgress: options.onProgress,
  });
  return {
    ...loaded.dataset,
    source: loaded.source,
    skipped: loaded.skipped.map((s) => s.path),
    heldOut: loaded.heldOut,
  };
}

/**
 * Fashion-MNIST (60000 train / 10000 test, 28x28x1, 10 classes), as the seed's
 * `load_data_fashion_mnist`: found locally ($IMGCLF_DATA_DIR, the user cache, Debian's
 * dataset-fashion-mnist) or downloaded and verified. Chooses the backend first.
 */
export function loadFashionMnist(
  options: Pick<DatasetOptions, 'dataDir' | 'resize' | 'download' | 'log'> = {},
): Promise<LoadedData> {
  return loadDataset({ ...options, dataset: 'fashion-mnist' });
}

// ---------------------------------------------------------------------------------------------
// Run directories.

/** A run directory, loaded: what `imgclf evaluate/predict/serve --run DIR` read. */
export interface Run {
  dir: string;
  /** The saved model, with its class names. */
  model: Model;
  /** Class names, input shape, preprocessing, data source, the resolved plan, versions. */
  metadata: RunMetadata;
  /** One entry per epoch trained. */
  history: EpochMetrics[];
}

/** Loads a run directory written by `imgclf train`, `train` or `saveRun`, checking every part. */
export async function loadRun(dir: string, options: { log?: (message: string) => void } = {}): Promise<Run> {
  await ready();
  const run = await loadRunDir(dir, options.log);
  const meta = run.metadata;
  const model = asModel(run.model, {
    inputShape: meta.inputShape,
    numClasses: meta.classNames.length,
    classNames: meta.classNames,
    options: (meta.config?.modelOptions as Record<string, unknown> | undefined) ?? {},
  });
  return { dir: run.dir, model, metadata: meta, history: run.metrics };
}

/**
 * The data a run was trained on, reloaded from the source its metadata records (and checked
 * against its class names and input shape): evaluate a loaded run on its own test split.
 */
export async function loadRunData(
  run: Pick<Run, 'metadata'> & { dir?: string },
  options: { dataDir?: string; download?: boolean } = {},
): Promise<Dataset & { source: DataSource }> {
  await ready();
  const dataset = await loadDataOfRun(run.metadata, options.dataDir, {
    download: options.download,
    runDir: run.dir,
  });
  return { ...dataset, source: runDataSource(run.metadata, options.dataDir, run.dir) };
}

export interface SaveRunOptions {
  /** The trained model. */
  model: Model;
  /**
   * The data it was trained on, as `loadDataset` returned it: class names, the data's name
   * and its source, so `imgclf evaluate --run` and `predict --run` reload the same test split.
   */
  data?: Dataset & { source?: DataSource };
  /** Class names, index = label (default: the data's, then the model's). */
  classNames?: string[];
  /** What `fit` returned; written to metrics.jsonl. */
  history?: EpochMetrics[];
  /**
   * The training settings to record as the run's plan. Default: the plan of the model's last
   * `fit` (`model.lastFit`), which also tells which epoch the weights are from.
   */
  plan?: TrainChoices;
  /**
   * How `predict` and `serve` prepare a new picture. Default: from the data (MNIST-like data
   * inverts light-background pictures, image folders take photos as they are).
   */
  preprocessing?: Preprocessing;
  /** Replace a run that `dir` already holds (without it, that is an error). */
  force?: boolean;
}

/** The plan choices that describe a data source, so a run's plan names its data. */
function sourceChoices(source: DataSource | undefined): PlanChoices {
  return source ? sourceEntry(source.kind).planChoices(source) : {};
}

/**
 * Writes a complete run directory from a model trained in code: model.json + weights.bin,
 * metadata.json (class names, input shape, preprocessing, data source, plan, versions),
 * metrics.jsonl and the manifest, in one all-or-nothing save. `imgclf evaluate`, `predict`,
 * `report` and `serve` accept it with `--run DIR` (evaluate and test-image predictions need
 * `data` with a source, so they can reload the test split).
 */
export async function saveRun(dir: string, options: SaveRunOptions): Promise<Run> {
  const { model, data } = options;
  const shape = model.inputShape;
  const classNames = options.classNames ?? data?.classNames ?? model.classNames;
  check(classNames, 'saveRun needs class names: pass data (a loaded dataset) or classNames');
  check(
    classNames.length === model.numClasses,
    () => `${classNames.length} class names for a model with ${model.numClasses} classes`,
  );
  check(
    !data || data.shape.join('x') === shape.join('x'),
    () => `the data is ${data!.shape.join('x')} but the model takes ${shape.join('x')} images`,
  );
  const history = options.history ?? [];
  const source = data?.source;
  const preprocessing =
    options.preprocessing ??
    (data && source
      ? sourceEntry(source.kind).preprocessing(source, data.train, shape)
      : data
        ? // Arrays of unknown origin are judged by their background, as a CSV is.
          preprocessingByBorder(data.train, shape)
        : folderPreprocessing('fill'));
  const last = options.plan === undefined ? model.lastFit : undefined;
  const trained: PlanChoices = options.plan ?? last?.plan ?? {};
  const choices: PlanChoices = trainChoicesOf(trained);
  // Patience is only a plan with the validation fraction it watched.
  if (choices.patience !== undefined) {
    if (trained.valSplit !== undefined) choices.valSplit = trained.valSplit;
    else delete choices.patience;
  }
  // The epoch whose weights are saved (keptEpoch's rule, applied by fit): with a validation
  // split the best one, otherwise the last.
  const kept = history.find((m) => m.epoch === last?.keptEpoch) ?? history.at(-1);
  const byValidation = kept?.val_accuracy !== undefined && last !== undefined;
  const resolved = resolveConfig({
    ...sourceChoices(source),
    ...choices,
    model: model.name,
    backend: requested,
    modelOptions: model.options,
    out: dir,
  });
  // As fit sized what it was not told (a no-op for a fit's own plan).
  const plan = data ? sizeToData(resolved, data.train.count).plan : resolved;
  const metadata: RunMetadata = runMetadata(
    {
      model: model.name,
      dataset: data?.name ?? 'custom',
      classNames,
      inputShape: [...shape],
      preprocessing,
      data: source,
      config: { ...plan },
      backend: tf.getBackend(),
    },
    kept && {
      kept: { epoch: kept.epoch, testAccuracy: kept.test_accuracy, byValidation },
      finalTestAccuracy: history.at(-1)?.test_accuracy,
      stoppedEarly:
        last?.stoppedEarly !== undefined
          ? { epoch: last.stoppedEarly, patience: last.plan.patience! }
          : undefined,
    },
  );
  // One writer per run directory (node/run/lock.ts), as `train` takes it.
  const lock = await lockRun(dir);
  try {
    const replace = holdsRun(dir);
    if (replace && !options.force)
      throw new UserError(`${dir} already holds a run; pass force: true to replace it, or another directory`);
    const files = await modelFiles(model);
    files.set(METADATA_FILE, metadataText(metadata));
    files.set(METRICS_FILE, metricsText(history));
    await saveRunFiles(dir, files, { epoch: history.at(-1)?.epoch ?? 0, replace });
  } finally {
    await lock.release();
  }
  return { dir, model, metadata, history };
}

/** One image classified by `predictImage`. */
export interface ImagePrediction {
  /** The predicted class index, and its name. */
  label: number;
  labelName: string;
  /** Softmax probability of each class, index = class. */
  probabilities: number[];
  /** The `topK` most probable classes, most probable first. */
  top: { label: number; labelName: string; probability: number }[];
  /** Whether the picture was inverted to match dark-background training data. */
  inverted: boolean;
}

/**
 * Classifies a picture file (PNG, JPEG, WebP, GIF, TIFF, AVIF; any size, colour or gray) with
 * a run's model, prepared as `imgclf predict FILE` prepares it (the run's preprocessing). SVG
 * only with `allowSvg`, as `imgclf serve --allow-svg`: rendering one is work no limit bounds,
 * so a program that takes pictures from others should leave it off.
 */
export async function predictImage(
  run: Pick<Run, 'model' | 'metadata'>,
  image: string | Uint8Array,
  options: { topK?: number; allowSvg?: boolean } = {},
): Promise<ImagePrediction> {
  const names = run.metadata.classNames;
  const k = options.topK ?? 3;
  check(Number.isInteger(k) && k >= 1, `topK must be a whole number >= 1 (got ${k})`);
  let bytes: Uint8Array;
  const name = typeof image === 'string' ? image : 'image';
  if (typeof image === 'string') {
    try {
      bytes = await readFile(image);
    } catch {
      throw new UserError(`${image}: cannot read the file (does it exist?)`);
    }
  } else {
    bytes = image;
  }
  await ready();
  const shape = run.metadata.inputShape;
  const { input, inverted } = await prepareImage(bytes, shape, run.metadata.preprocessing, name, {
    allowSvg: options.allowSvg ?? false,
  });
  const [p] = predictProbabilities(run.model, input, 1, shape);
  const top = topK(p, Math.min(k, names.length)).map((i) => ({
    label: i,
    labelName: names[i],
    probability: p[i],
  }));
  return { label: top[0].label, labelName: top[0].labelName, probabilities: Array.from(p), top, inverted };
}

// ---------------------------------------------------------------------------------------------
// The CLI's train, in code.

/** `train`'s options: any plan choice (see `TrainConfig`), how to run, and what to be told. */
export interface TrainOptions extends PlanChoices {
  /** Continue the run in this directory from its checkpoint (only epochs, backend, dataDir, fineTuneEpochs may change). */
  resume?: string;
  /** Replace a run that `out` already holds. */
  force?: boolean;
  /** Informational lines: what is loaded, what is saved, where the report is. */
  log?: (message: string) => void;
  /** After each finished epoch, with the plan's epoch count. */
  onEpoch?: (metrics: EpochMetrics, epochs: number) => void;
  /** A progress display for `total` items (decoding images, batches of an epoch). */
  progress?: (total: number, label: string, unit?: string) => Progress;
  /** Checked before every batch: true stops the run and writes a checkpoint to resume from. */
  shouldStop?: () => boolean;
}

/** What `train` did: the history, the run directory, the backend and the data. */
export type TrainResult = SessionResult;

/**
 * `imgclf train` in code: resolves the plan, loads the data, trains, saves every epoch into
 * the run directory (`out`, default runs/<timestamp>) and writes the report. Settings left
 * out get the model's defaults; the backend is the one `useBackend` chose, else `'auto'`.
 */
export async function train(options: TrainOptions = {}): Promise<TrainResult> {
  const { resume, force, log, onEpoch, progress, shouldStop, ...rest } = options;
  const given = Object.entries(rest).filter(([, v]) => v !== undefined);
  const { planOfRun, RESUME_OVERRIDES, trainSession } = await import('./session.js');
  let plan: TrainConfig;
  if (resume) {
    const other = given.filter(([k]) => !(RESUME_OVERRIDES as readonly string[]).includes(k)).map(([k]) => k);
    check(
      other.length === 0,
      () =>
        `a resumed run keeps the plan it was started with; only ${RESUME_OVERRIDES.join(', ')} may change (got ${other.join(', ')})`,
    );
    plan = await planOfRun(resume, Object.fromEntries(given) as ResumeOverrides);
  } else {
    plan = resolveConfig({ backend: requested, ...(Object.fromEntries(given) as PlanChoices) });
  }
  const result = await trainSession(
    plan,
    { log, onEpoch, progress, shouldStop, lang: plan.lang },
    { resume, force },
  );
  requested = plan.backend;
  selection = Promise.resolve(result.backend);
  return result;
}

/**
 * The plan: one resolved training config, and the only place defaults live. `resolveConfig`
 * starts from GLOBAL_DEFAULTS (the seed's settings), takes the model's own defaults over them,
 * then the user's choices over both; unknown keys are errors. The CLI, the server and the
 * page all resolve through here and build their optimizer and fit options with
 * `optimizerFor` and `fitOptionsFor`, so the same choices train the same way everywhere. The
 * resolved plan is written into the run directory.
 */
import { BACKENDS, type BackendName } from './backends.js';
import { IDX_DATASET_NAMES, type Lang } from './data/classes.js';
import { check, UserError } from './errors.js';
import type { ImageShape } from './data/dataset.js';
import { type DataSource, idxSource } from './data/source.js';
import { getEntry, type ModelDefaults } from './models/index.js';
import { createOptimizer, type Optimizer, OPTIMIZERS } from './optim/optimizers.js';
import { SCHEDULES } from './optim/schedule.js';
import type { FitOptions } from './train/loop.js';

/**
 * Where every model starts: the seed's recipe (5 epochs of plain minibatch SGD, lr 0.1,
 * batch 256, no schedule, no regularization). A model's `defaults` override these.
 */
export const GLOBAL_DEFAULTS: Required<ModelDefaults> = {
  epochs: 5,
  batchSize: 256,
  lr: 0.1,
  optimizer: 'sgd',
  schedule: 'constant',
  warmup: 0,
  momentum: 0,
  nesterov: false,
  weightDecay: 0,
  labelSmoothing: 0,
  augment: false,
};

/** Most training threads a run may ask for (each holds a copy of the model and its activations). */
export const MAX_WORKERS = 64;

/** Image folders: decoding defaults. */
export const FOLDER_DEFAULTS = { imageSize: 28, channels: 3 as const, resizeMode: 'fill' as const };

/**
 * Transfer learning (`--backbone`): the heads that can be trained on a frozen backbone's
 * features. The head is the run's model (`--head`, or `--model`, which means the same there).
 */
export const HEADS = ['softmax', 'mlp', 'knn'] as const;
export type Head = (typeof HEADS)[number];

/** How a backbone's input is scaled from pixels in [0, 1]: kept, or mapped to [-1, 1]. */
export const BACKBONE_RANGES = ['0,1', '-1,1'] as const;
export type BackboneRange = (typeof BACKBONE_RANGES)[number];

/**
 * A head trains on features, not pixels: a few hundred Adam steps fit it, whatever the
 * backbone's feature scale (plain SGD at the seed's lr 0.1 diverges on unnormalized features).
 * These replace the head model's own defaults; the user's flags still win.
 */
export const HEAD_DEFAULTS: Record<Exclude<Head, 'knn'>, Partial<Required<ModelDefaults>>> = {
  softmax: { optimizer: 'adam', lr: 0.01, epochs: 20, labelSmoothing: 0 },
  mlp: { optimizer: 'adamw', lr: 0.001, epochs: 20, augment: false },
};

/** The fraction held out as the test split for data without one (a flat folder, a lone CSV). */
export const HELD_OUT_TEST_SPLIT = 0.1;

/** The training settings `model` gets when the user chooses none: the global ones, then the model's. */
export function modelDefaults(model: string): Required<ModelDefaults> {
  const own = getEntry(model).defaults;
  const merged = { ...GLOBAL_DEFAULTS };
  for (const [key, value] of Object.entries(own)) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  return merged;
}

export interface TrainConfig {
  /** Registered model name (`imgclf models` lists them); with a backbone, the head. */
  model: string;
  /**
   * Transfer learning: a TensorFlow.js layers or graph model (a path to a model.json or to an
   * imgclf run directory, or a URL) whose features, computed once with it frozen, a head
   * (`head`) is trained on. Images are loaded at the backbone's input size.
   */
  backbone?: string;
  /** With a backbone: the head trained on its features (softmax, mlp or knn); the same as `model`. */
  head?: Head;
  /** With a backbone: the feature layer (layers models) or node (graph models); default the penultimate. */
  backboneLayer?: string;
  /** With a backbone: its input size N (N x N), for models that do not fix it; default per family. */
  backboneSize?: number;
  /** With a backbone: the input range it expects, 0,1 or -1,1; default per family. */
  backboneRange?: BackboneRange;
  /** Built-in IDX dataset name (fashion-mnist, mnist, kmnist); 'folder' or 'csv' with --data. */
  dataset: string;
  /** Your own data: a folder of class folders, or a .csv file (label,pixel1..pixelN). */
  data?: string;
  /** A test CSV for a CSV --data; without it, valSplit of the rows is held out. */
  testData?: string;
  /** Image folders: images are resized to imageSize x imageSize pixels. Default 28. */
  imageSize?: number;
  /** Image folders: 1 (grayscale) or 3 (RGB). Default 3. */
  channels?: 1 | 3;
  /** Image folders: fill (stretch), contain (letterbox) or cover (crop the centre). Default fill. */
  resizeMode?: 'fill' | 'contain' | 'cover';
  /**
   * Fraction (above 0, at most 0.9) of the training data held out, stratified, for validation.
   * With a test split of its own (the built-in sets, a folder with train/ and test/, a CSV with
   * --test-data) the epoch with the best validation accuracy becomes the run's model. Without
   * one (a plain image folder or CSV) the held-out part is the test split, 0.1 by default.
   */
  valSplit?: number;
  /** Image folders: an unreadable file fails the run instead of being skipped. */
  strict?: boolean;
  /**
   * Early stopping: with a validation split, stop after this many epochs without a better
   * validation accuracy; the best epoch is the run's model. Unset = train every epoch.
   */
  patience?: number;
  /** Passes over the training set. Default: the model's (5 for softmax, as the seed). */
  epochs: number;
  /** Examples per minibatch. Default 256, as the seed. */
  batchSize: number;
  /** Learning rate. Default: the model's (0.1 for softmax, as the seed). */
  lr: number;
  /** Optimizer name. Default: the model's (sgd for softmax). */
  optimizer: string;
  /** Seeds weight init and data order: same seed + backend = same metrics. */
  seed: number;
  backend: BackendName;
  /**
   * Training threads (Node): each trains on 1/N of every batch. Unset = decided by the session
   * from the cores and the model's cost (backend/workers/choose.ts); a run records the number
   * it used, so a resume repeats it.
   */
  workers?: number;
  /** Folder holding the IDX files; unset = the search chain in node/data/datasets.ts. */
  dataDir?: string;
  /** Resize images to N x N (bilinear) before training, as the seed's optional `resize`. */
  resize?: number;
  /** Run directory; unset = runs/<timestamp>. */
  out?: string;
  /** Language of printed class names and messages. */
  lang: Lang;
  /** LR schedule: constant, step, cosine or onecycle. Default: the model's (constant). */
  schedule: string;
  /** Linear warmup, in epochs (fractions allowed). Default: the model's (0). */
  warmup: number;
  /** SGD momentum (0 = plain SGD). Default: the model's (0). */
  momentum: number;
  /** Nesterov momentum for sgd. */
  nesterov: boolean;
  /** Weight decay (L2 for sgd/adam, decoupled for adamw), on weight matrices and kernels. */
  weightDecay: number;
  /** Label smoothing eps: targets become (1 - eps) * onehot + eps / K. Default: the model's (0). */
  labelSmoothing: number;
  /** Batch augmentation: random crop with 2 px padding + horizontal flip. Default: the model's. */
  augment: boolean;
  /** Model options: hidden sizes, dropout, activation, pooling (see each model's file). */
  modelOptions: Record<string, unknown>;
  /**
   * The settings that came from defaults rather than the user, among those `sizeToData` may
   * change (batchSize, epochs). A resumed run re-resolves its recorded numbers, so this is
   * empty then.
   */
  defaulted: SizedSetting[];
}

/** Settings chosen from the dataset's size when the user gives none. */
export type SizedSetting = 'batchSize' | 'epochs';

const KEYS: (keyof TrainConfig)[] = [
  'model',
  'backbone',
  'head',
  'backboneLayer',
  'backboneSize',
  'backboneRange',
  'dataset',
  'data',
  'testData',
  'imageSize',
  'channels',
  'resizeMode',
  'valSplit',
  'patience',
  'strict',
  'epochs',
  'batchSize',
  'lr',
  'optimizer',
  'seed',
  'backend',
  'workers',
  'dataDir',
  'resize',
  'out',
  'lang',
  'schedule',
  'warmup',
  'momentum',
  'nesterov',
  'weightDecay',
  'labelSmoothing',
  'augment',
  'modelOptions',
  'defaulted',
];

/** Fills defaults (the model's own first) and validates every field. */
export function resolveConfig(input: Partial<TrainConfig> & Record<string, unknown>): TrainConfig {
  for (const key of Object.keys(input)) {
    if (!(KEYS as string[]).includes(key))
      throw new UserError(`unknown config key '${key}'; known keys: ${KEYS.join(', ')}`);
  }
  const backbone = input.backbone;
  if (backbone === undefined) {
    check(
      input.head === undefined,
      "--head chooses what trains on a backbone's features: give --backbone too",
    );
    for (const [key, flag] of [
      ['backboneLayer', '--backbone-layer'],
      ['backboneSize', '--backbone-size'],
      ['backboneRange', '--backbone-range'],
    ] as const)
      check(input[key] === undefined, `${flag} goes with --backbone`);
  } else {
    check(typeof backbone === 'string' && backbone.trim() !== '', '--backbone needs a path or URL');
    check(
      input.head === undefined || input.model === undefined || input.head === input.model,
      `--head ${input.head} and --model ${input.model} disagree; with --backbone, --model names the head, so give one`,
    );
    // Images come at the backbone's input size: the image flags would contradict it.
    check(
      input.imageSize === undefined,
      '--backbone decides the input size; use --backbone-size to change it',
    );
    check(input.channels === undefined, '--backbone decides the channels (its input shape)');
    check(input.resize === undefined, '--backbone decides the input size; use --backbone-size to change it');
    check(!input.augment, '--augment works on pixels; a head trains on cached features');
  }
  const head = backbone === undefined ? undefined : (input.head ?? input.model ?? 'softmax');
  if (head !== undefined) {
    check(
      (HEADS as readonly string[]).includes(head),
      `--head must be one of ${HEADS.join(', ')} (got '${head}'); other models train on pixels, without --backbone`,
    );
  }
  const model = head ?? input.model ?? 'softmax';
  const entry = getEntry(model);
  const dataKind = input.data === undefined ? undefined : /\.csv$/i.test(input.data) ? 'csv' : 'folder';
  // A resolved plan names both (dataset 'folder' or 'csv' with its data): --resume re-resolves it.
  if (input.data !== undefined && input.dataset !== undefined && input.dataset !== dataKind)
    throw new UserError('--data and --dataset exclude each other: train on your own data or a built-in set');
  const d = modelDefaults(model);
  if (head !== undefined && head !== 'knn') Object.assign(d, HEAD_DEFAULTS[head as Exclude<Head, 'knn'>]);
  const cfg: TrainConfig = {
    model,
    dataset: dataKind ?? input.dataset ?? 'fashion-mnist',
    epochs: input.epochs ?? d.epochs,
    batchSize: input.batchSize ?? d.batchSize,
    lr: input.lr ?? d.lr,
    optimizer: input.optimizer ?? d.optimizer,
    seed: input.seed ?? 0,
    backend: input.backend ?? 'auto',
    ...(input.workers !== undefined ? { workers: input.workers } : {}),
    dataDir: input.dataDir,
    resize: input.resize,
    out: input.out,
    lang: input.lang ?? 'en',
    schedule: input.schedule ?? d.schedule,
    warmup: input.warmup ?? d.warmup,
    momentum: input.momentum ?? d.momentum,
    nesterov: input.nesterov ?? d.nesterov,
    weightDecay: input.weightDecay ?? d.weightDecay,
    labelSmoothing: input.labelSmoothing ?? d.labelSmoothing,
    valSplit: input.valSplit,
    patience: input.patience,
    augment: input.augment ?? d.augment,
    modelOptions: input.modelOptions ?? {},
    // A resolved plan keeps its own list when resolved again (a recorded plan's is empty).
    defaulted: (['batchSize', 'epochs'] as const).filter((k) =>
      Array.isArray(input.defaulted) ? input.defaulted.includes(k) : input[k] === undefined,
    ),
  };
  if (dataKind) {
    cfg.data = input.data;
    if (input.testData !== undefined) {
      check(dataKind === 'csv', '--test-data goes with a CSV --data; an image folder holds test/ itself');
      cfg.testData = input.testData;
    }
    if (dataKind === 'folder') {
      // With a backbone the session loads images at its input shape (node/backbone).
      if (backbone === undefined) {
        cfg.imageSize = input.imageSize ?? FOLDER_DEFAULTS.imageSize;
        cfg.channels = input.channels ?? FOLDER_DEFAULTS.channels;
      }
      cfg.resizeMode = input.resizeMode ?? FOLDER_DEFAULTS.resizeMode;
      cfg.strict = input.strict ?? false;
    }
  } else {
    check(input.testData === undefined, '--test-data goes with --data file.csv');
  }
  if (dataKind !== 'folder') {
    check(!input.strict, '--strict applies to image folders (--data PATH)');
    check(input.channels === undefined, '--channels applies to image folders (--data PATH)');
    check(input.resizeMode === undefined, '--resize-mode applies to image folders (--data PATH)');
    // Elsewhere --image-size is the same as --resize.
    if (input.imageSize !== undefined) {
      check(
        input.resize === undefined || input.resize === input.imageSize,
        '--image-size and --resize disagree; give one of them',
      );
      cfg.resize = input.imageSize;
    }
  }
  check(
    (OPTIMIZERS as readonly string[]).includes(cfg.optimizer),
    `unknown optimizer '${cfg.optimizer}'; choose one of: ${OPTIMIZERS.join(', ')}`,
  );
  check(
    cfg.optimizer !== 'own' || entry.ownOptimizer !== undefined,
    `--optimizer own needs a model with its own updater (softmax-scratch), not ${model}`,
  );
  check(
    (SCHEDULES as readonly string[]).includes(cfg.schedule),
    `unknown schedule '${cfg.schedule}'; choose one of: ${SCHEDULES.join(', ')}`,
  );
  check(Number.isFinite(cfg.warmup) && cfg.warmup >= 0, `--warmup must be >= 0 epochs (got ${cfg.warmup})`);
  check(
    Number.isFinite(cfg.momentum) && cfg.momentum >= 0 && cfg.momentum < 1,
    `--momentum must be in [0, 1) (got ${cfg.momentum})`,
  );
  check(
    !cfg.nesterov || (cfg.optimizer === 'sgd' && cfg.momentum > 0),
    '--nesterov needs --optimizer sgd with --momentum > 0',
  );
  check(
    Number.isFinite(cfg.weightDecay) && cfg.weightDecay >= 0,
    `--weight-decay must be >= 0 (got ${cfg.weightDecay})`,
  );
  check(
    Number.isFinite(cfg.labelSmoothing) && cfg.labelSmoothing >= 0 && cfg.labelSmoothing < 1,
    `--label-smoothing must be in [0, 1) (got ${cfg.labelSmoothing})`,
  );
  check(
    Number.isInteger(cfg.epochs) && cfg.epochs >= 1,
    `--epochs must be a whole number >= 1 (got ${cfg.epochs})`,
  );
  check(
    Number.isInteger(cfg.batchSize) && cfg.batchSize >= 1,
    `--batch-size must be a whole number >= 1 (got ${cfg.batchSize})`,
  );
  check(Number.isFinite(cfg.lr) && cfg.lr > 0, `--lr must be a positive number (got ${cfg.lr})`);
  check(Number.isInteger(cfg.seed) && cfg.seed >= 0, `--seed must be a whole number >= 0 (got ${cfg.seed})`);
  check(
    (BACKENDS as readonly string[]).includes(cfg.backend),
    `unknown backend '${cfg.backend}'; choose one of ${BACKENDS.join(', ')}`,
  );
  if (cfg.workers !== undefined) {
    check(
      Number.isInteger(cfg.workers) && cfg.workers >= 1 && cfg.workers <= MAX_WORKERS,
      `--workers must be a whole number from 1 to ${MAX_WORKERS} (got ${cfg.workers})`,
    );
  }
  check(cfg.lang === 'en' || cfg.lang === 'zh', `--lang must be en or zh (got ${cfg.lang})`);
  if (!dataKind) {
    check(
      (IDX_DATASET_NAMES as readonly string[]).includes(cfg.dataset),
      `unknown dataset '${cfg.dataset}'; choose one of ${IDX_DATASET_NAMES.join(', ')}, or --data PATH for your own`,
    );
  }
  if (cfg.imageSize !== undefined) {
    check(
      Number.isInteger(cfg.imageSize) && cfg.imageSize >= 4 && cfg.imageSize <= 512,
      `--image-size must be a whole number from 4 to 512 (got ${cfg.imageSize})`,
    );
  }
  if (cfg.channels !== undefined)
    check(cfg.channels === 1 || cfg.channels === 3, `--channels must be 1 or 3 (got ${cfg.channels})`);
  if (cfg.resizeMode !== undefined) {
    check(
      ['fill', 'contain', 'cover'].includes(cfg.resizeMode),
      `--resize-mode must be fill, contain or cover (got ${cfg.resizeMode})`,
    );
  }
  if (cfg.valSplit !== undefined) {
    check(
      Number.isFinite(cfg.valSplit) && cfg.valSplit > 0 && cfg.valSplit <= 0.9,
      `--val-split must be a fraction above 0 and at most 0.9 (got ${cfg.valSplit})`,
    );
  }
  if (cfg.patience !== undefined) {
    check(
      Number.isInteger(cfg.patience) && cfg.patience >= 1,
      `--patience must be a whole number of epochs >= 1 (got ${cfg.patience})`,
    );
    check(cfg.valSplit !== undefined, '--patience watches validation accuracy: give --val-split F too');
  }
  if (cfg.resize !== undefined) {
    check(
      Number.isInteger(cfg.resize) && cfg.resize >= 4 && cfg.resize <= 512,
      `--resize must be a whole number from 4 to 512 (got ${cfg.resize})`,
    );
  }
  if (backbone !== undefined) {
    cfg.backbone = backbone;
    cfg.head = head as Head;
    if (input.backboneLayer !== undefined) {
      check(
        typeof input.backboneLayer === 'string' && input.backboneLayer !== '',
        '--backbone-layer needs a layer or node name',
      );
      cfg.backboneLayer = input.backboneLayer;
    }
    if (input.backboneSize !== undefined) {
      check(
        Number.isInteger(input.backboneSize) && input.backboneSize >= 8 && input.backboneSize <= 1024,
        `--backbone-size must be a whole number from 8 to 1024 (got ${input.backboneSize})`,
      );
      cfg.backboneSize = input.backboneSize;
    }
    if (input.backboneRange !== undefined) {
      check(
        (BACKBONE_RANGES as readonly string[]).includes(input.backboneRange),
        `--backbone-range must be ${BACKBONE_RANGES.join(' or ')} (got '${input.backboneRange}')`,
      );
      cfg.backboneRange = input.backboneRange;
    }
  }
  return cfg;
}

/**
 * The data source a plan names. Paths stay as given: the loader resolves them and returns the
 * absolute source, which is what a run directory records.
 */
export function dataSourceOf(plan: TrainConfig): DataSource {
  if (plan.dataset === 'folder') {
    return {
      kind: 'folder',
      path: plan.data!,
      imageSize: plan.imageSize ?? FOLDER_DEFAULTS.imageSize,
      channels: plan.channels ?? FOLDER_DEFAULTS.channels,
      resizeMode: plan.resizeMode ?? FOLDER_DEFAULTS.resizeMode,
      valSplit: plan.valSplit ?? HELD_OUT_TEST_SPLIT,
      seed: plan.seed,
    };
  }
  if (plan.dataset === 'csv') {
    return {
      kind: 'csv',
      path: plan.data!,
      testPath: plan.testData,
      valSplit: plan.valSplit ?? HELD_OUT_TEST_SPLIT,
      seed: plan.seed,
      resize: plan.resize,
    };
  }
  return idxSource(plan.dataset, plan.dataDir, plan.resize);
}

/** The optimizer a plan asks for, fresh (no state). */
export function optimizerFor(plan: TrainConfig): Optimizer {
  return createOptimizer({
    name: plan.optimizer,
    lr: plan.lr,
    momentum: plan.momentum,
    nesterov: plan.nesterov,
    weightDecay: plan.weightDecay,
    own: getEntry(plan.model).ownOptimizer,
  });
}

/** Batch augmentation when a plan turns it on: a random crop with 2 px of padding, and flips. */
export const AUGMENTATION = { pad: 2, flip: true } as const;

/** The recipe part of `fit`'s options: everything but the data and the callbacks. */
export type FitRecipe = Pick<
  FitOptions,
  | 'epochs'
  | 'batchSize'
  | 'seed'
  | 'shape'
  | 'labelSmoothing'
  | 'schedule'
  | 'warmup'
  | 'augment'
  | 'patience'
>;

/** How `fit` trains under a plan, for data of `shape`. */
export function fitOptionsFor(plan: TrainConfig, shape: ImageShape): FitRecipe {
  return {
    epochs: plan.epochs,
    batchSize: plan.batchSize,
    seed: plan.seed,
    shape,
    labelSmoothing: plan.labelSmoothing,
    schedule: plan.schedule,
    warmup: plan.warmup,
    augment: plan.augment ? { ...AUGMENTATION } : undefined,
    patience: plan.patience,
  };
}

/**
 * Every run should make enough optimizer steps to learn: the seed's 5 epochs of batch 256 are
 * 1175 steps on Fashion-MNIST, but one step per epoch on a folder of 180 photos. With fewer
 * training images than this many batches' worth, the batch shrinks to keep about this many
 * steps per epoch...
 */
const MIN_STEPS_PER_EPOCH = 8;
/** ...and epochs are added until the run makes at least this many steps, up to MAX_EPOCHS. */
const MIN_TOTAL_STEPS = 300;
const MAX_EPOCHS = 100;
const MIN_BATCH = 8;

/**
 * Sizes the defaulted batch size and epochs to a training set of `count` examples, as
 * described above; settings the user gave are kept. Returns the plan and a line saying what
 * was chosen (undefined when nothing changed). Fashion-MNIST keeps the seed's settings.
 */
export function sizeToData(plan: TrainConfig, count: number): { plan: TrainConfig; note?: string } {
  const out = { ...plan, defaulted: [] as SizedSetting[] };
  const changed: string[] = [];
  if (plan.defaulted.includes('batchSize')) {
    let batch = plan.batchSize;
    while (batch > MIN_BATCH && count / batch < MIN_STEPS_PER_EPOCH) batch /= 2;
    batch = Math.max(MIN_BATCH, Math.floor(batch));
    if (batch !== plan.batchSize) changed.push(`batch size ${batch}`);
    out.batchSize = batch;
  }
  if (plan.defaulted.includes('epochs')) {
    const perEpoch = Math.max(1, Math.ceil(count / out.batchSize));
    const epochs = Math.min(MAX_EPOCHS, Math.max(plan.epochs, Math.ceil(MIN_TOTAL_STEPS / perEpoch)));
    if (epochs !== plan.epochs) changed.push(`${epochs} epochs`);
    out.epochs = epochs;
  }
  if (changed.length === 0) return { plan: out };
  const steps = out.epochs * Math.ceil(count / out.batchSize);
  return {
    plan: out,
    note: `${changed.join(' and ')} for ${count} training images (${steps} steps; --batch-size and --epochs override)`,
  };
}

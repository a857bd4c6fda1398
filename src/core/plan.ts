/**
 * The plan: one resolved training config. The settings, their defaults and ranges are declared
 * in core/settings.ts; `resolveConfig` starts from the declared defaults (GLOBAL_DEFAULTS, the
 * seed's settings), takes the model's own defaults over them, then the user's choices over
 * both, checks each against its declaration and the rules between them; unknown keys are
 * errors. The CLI, the server and the
 * page all resolve through here and build their optimizer and fit options with
 * `optimizerFor` and `fitOptionsFor`, so the same choices train the same way everywhere. The
 * resolved plan is written into the run directory.
 */
import { IDX_DATASET_NAMES } from './data/classes.js';
import { checkValue, didYouMean } from './declare.js';
import { check, UserError } from './errors.js';
import type { ImageShape } from './data/dataset.js';
import { type DataSource, idxSource, type OwnData } from './data/source.js';
import { checkOptions, getEntry } from './models/index.js';
import { createOptimizer, type Optimizer, type OptimizerConfig } from './optim/optimizers.js';
import {
  type FitSetting,
  GLOBAL_DEFAULTS,
  type Head,
  HEADS,
  type ModelDefaults,
  SETTING_DECLS,
  SETTING_NAMES,
  SETTINGS,
  type Settings,
  settingFlag,
} from './settings.js';
import type { FitOptions } from './train/loop.js';

export {
  BACKBONE_RANGES,
  type BackboneRange,
  GLOBAL_DEFAULTS,
  type Head,
  HEADS,
  MAX_WORKERS,
} from './settings.js';

/** Image folders: decoding defaults (declared in core/settings.ts). */
export const FOLDER_DEFAULTS = {
  imageSize: SETTINGS.imageSize.default,
  channels: SETTINGS.channels.default,
  resizeMode: SETTINGS.resizeMode.default,
};

/**
 * A head trains on features, not pixels: a few hundred Adam steps fit it, whatever the
 * backbone's feature scale (plain SGD at the seed's lr 0.1 diverges on unnormalized features).
 * These replace the head model's own defaults; the user's flags still win.
 */
export const HEAD_DEFAULTS: Record<Exclude<Head, 'knn'>, ModelDefaults> = {
  softmax: { optimizer: 'adam', lr: 0.01, epochs: 20, labelSmoothing: 0 },
  mlp: { optimizer: 'adamw', lr: 0.001, epochs: 20, augment: false },
};

/** The fraction held out as the test split for data without one (a flat folder, a lone CSV). */
export const HELD_OUT_TEST_SPLIT = SETTINGS.holdOut.default;

/** The training settings `model` gets when the user chooses none: the global ones, then the model's. */
export function modelDefaults(model: string): Required<ModelDefaults> {
  return withDefaults(GLOBAL_DEFAULTS, getEntry(model).defaults);
}

/** `base` with the defined values of `over` on top. */
function withDefaults(base: Required<ModelDefaults>, over: ModelDefaults): Required<ModelDefaults> {
  const defined = Object.entries(over).filter(([, value]) => value !== undefined);
  return { ...base, ...Object.fromEntries(defined) };
}

/**
 * One resolved training plan: every setting of core/settings.ts (those with a default that
 * applies everywhere always present), the model options and what was defaulted.
 */
export interface TrainConfig extends Settings {
  /**
   * Model options: hidden sizes, dropout, activation, pooling, as each model declares them
   * (`imgclf models`, core/models/*.ts `options`).
   */
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

/** A plan's fields: the declared settings, then the two a plan adds. */
const KEYS: readonly string[] = [...SETTING_NAMES, 'modelOptions', 'defaulted'];

function isHead(name: string): name is Head {
  return (HEADS as readonly string[]).includes(name);
}

/** Whether `name` is a built-in IDX set's: the one thing a plan's `dataset` names. */
function isBuiltIn(name: string): boolean {
  return (IDX_DATASET_NAMES as readonly string[]).includes(name);
}

/**
 * The kind of `--data PATH` (`dataKind`): as given, else a CSV by its name and anything else
 * an image folder (the folder loader says when it is none). Core cannot look at the path, and
 * a kind nobody registered fails when the data is loaded, where the registry is known.
 */
function ownDataKind(input: Partial<TrainConfig>): string | undefined {
  const { data, dataset, dataKind } = input;
  if (data === undefined) {
    check(dataKind === undefined, '--data-kind names the kind of your own data: give --data PATH too');
    return undefined;
  }
  check(dataKind !== '', '--data-kind needs a kind: folder, csv or a registered one');
  // Plans recorded before dataKind existed name the kind as `dataset` beside `data` ('folder',
  // 'csv' or a registered kind): read so, they resume, evaluate and predict as before.
  const recorded = dataset === undefined || isBuiltIn(dataset) ? undefined : dataset;
  if ((dataset !== undefined && recorded === undefined) || (recorded && dataKind && recorded !== dataKind))
    throw new UserError('--data and --dataset exclude each other: train on your own data or a built-in set');
  return dataKind ?? recorded ?? kindOfPath(data);
}

/** The kind of data at `path` when no kind is given: a `.csv` file, else an image folder. */
function kindOfPath(path: string): string {
  return /\.csv$/i.test(path) ? 'csv' : 'folder';
}

/**
 * Fills defaults (the model's own first) and validates every field: each against its
 * declaration (core/settings.ts), then the rules between fields, then the model options
 * against the model's declared ones.
 */
export function resolveConfig(input: Partial<TrainConfig> & Record<string, unknown>): TrainConfig {
  for (const key of Object.keys(input)) {
    if (!KEYS.includes(key)) {
      const hint = didYouMean(key, KEYS);
      throw new UserError(`unknown config key '${key}'${hint || `; known keys: ${KEYS.join(', ')}`}`);
    }
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
      ['backboneEngine', '--backbone-engine'],
      ['offline', '--offline'],
    ] as const)
      check(input[key] === undefined, `${flag} goes with --backbone`);
    check(
      input.fineTune === undefined,
      '--fine-tune trains the last layers of a pretrained backbone: give --backbone MODEL (a TensorFlow.js layers model) too',
    );
    fineTuneSettings(input, SETTINGS.head.default);
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
  const head = backbone === undefined ? undefined : (input.head ?? input.model ?? SETTINGS.head.default);
  if (head !== undefined) {
    check(
      isHead(head),
      `--head must be one of ${HEADS.join(', ')} (got '${head}'); other models train on pixels, without --backbone`,
    );
  }
  const model = head ?? input.model ?? SETTINGS.model.default;
  const entry = getEntry(model);
  const dataKind = ownDataKind(input);
  const d = modelDefaults(model);
  const recipe = head !== undefined && head !== 'knn' ? withDefaults(d, HEAD_DEFAULTS[head]) : d;
  // Each setting as given, else the model's default, else the declared one. Settings that apply
  // only to some data or with a backbone (`when`) are placed below, where that is known.
  const own: Record<string, unknown> = recipe;
  const plan: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const decl = SETTING_DECLS[name];
    if (decl.when === undefined) plan[name] = input[name] ?? (decl.perModel ? own[name] : decl.default);
  }
  plan.model = model;
  // `dataset` is a built-in set's name only: a plan of your own data has `data` and `dataKind`.
  if (dataKind === undefined) plan.dataset = input.dataset ?? SETTINGS.dataset.default;
  else plan.dataKind = dataKind;
  plan.modelOptions = input.modelOptions ?? {};
  // A resolved plan keeps its own list when resolved again (a recorded plan's is empty).
  plan.defaulted = (['batchSize', 'epochs'] as const).filter((k) =>
    Array.isArray(input.defaulted) ? input.defaulted.includes(k) : input[k] === undefined,
  );
  if (dataKind !== undefined) {
    // --val-split once meant this fraction too, and plans recorded before holdOut existed
    // still mean it: without holdOut, the validation fraction is also the held-out one.
    plan.holdOut = input.holdOut ?? input.valSplit ?? SETTINGS.holdOut.default;
  } else {
    check(input.holdOut === undefined, '--hold-out applies to your own data (--data PATH)');
  }
  if (dataKind === 'folder') {
    // With a backbone the session loads images at its input shape (node/backbone).
    if (backbone === undefined) {
      plan.imageSize = input.imageSize ?? FOLDER_DEFAULTS.imageSize;
      plan.channels = input.channels ?? FOLDER_DEFAULTS.channels;
    }
    plan.resizeMode = input.resizeMode ?? FOLDER_DEFAULTS.resizeMode;
    plan.strict = input.strict ?? SETTINGS.strict.default;
  } else {
    check(!input.strict, '--strict applies to image folders (--data PATH)');
    check(input.channels === undefined, '--channels applies to image folders (--data PATH)');
    check(input.resizeMode === undefined, '--resize-mode applies to image folders (--data PATH)');
    // Elsewhere --image-size is the same as --resize.
    if (input.imageSize !== undefined) {
      check(
        input.resize === undefined || input.resize === input.imageSize,
        '--image-size and --resize disagree; give one of them',
      );
      plan.resize = input.imageSize;
    }
  }
  if (input.testData !== undefined) {
    check(dataKind !== undefined, '--test-data goes with --data file.csv');
    check(dataKind === 'csv', '--test-data goes with a CSV --data; an image folder holds test/ itself');
  }
  if (backbone !== undefined) {
    plan.backbone = backbone;
    plan.head = head;
    plan.backboneLayer = input.backboneLayer;
    plan.backboneSize = input.backboneSize;
    plan.backboneRange = input.backboneRange;
    plan.backboneEngine = input.backboneEngine;
    plan.offline = input.offline;
    check(input.backboneLayer !== '', '--backbone-layer needs a layer or node name');
    Object.assign(plan, fineTuneSettings(input, head!));
  }
  for (const key of Object.keys(plan)) if (plan[key] === undefined) delete plan[key];
  for (const name of SETTING_NAMES) {
    if (plan[name] !== undefined) checkValue(SETTING_DECLS[name], plan[name], settingFlag(name));
  }
  // Every setting was just checked against its declaration, so the values have their types.
  const cfg = plan as unknown as TrainConfig;
  check(
    cfg.optimizer !== 'own' || entry.ownOptimizer !== undefined,
    `--optimizer own needs a model with its own updater (softmax-scratch), not ${model}`,
  );
  check(
    !cfg.nesterov || (cfg.optimizer === 'sgd' && cfg.momentum > 0),
    '--nesterov needs --optimizer sgd with --momentum > 0',
  );
  if (cfg.dataset !== undefined) {
    check(
      isBuiltIn(cfg.dataset),
      `unknown dataset '${cfg.dataset}'; choose one of ${IDX_DATASET_NAMES.join(', ')}, or --data PATH for your own`,
    );
  }
  if (cfg.patience !== undefined)
    check(cfg.valSplit !== undefined, '--patience watches validation accuracy: give --val-split F too');
  checkOptions(model, cfg.modelOptions);
  return cfg;
}

/** What `--fine-tune` takes: a number of layers, or every layer with weights. */
const FINE_TUNE_VALUE = /^(all|[1-9][0-9]*)$/;

/**
 * The fine-tuning settings of a plan with a backbone (`--fine-tune` and the flags that go with
 * it), checked; none without `--fine-tune`.
 */
function fineTuneSettings(input: Partial<TrainConfig>, head: Head): Partial<TrainConfig> {
  const raw = input.fineTune as unknown;
  if (raw === undefined) {
    for (const [key, flag] of [
      ['fineTuneEpochs', '--fine-tune-epochs'],
      ['fineTuneLr', '--fine-tune-lr'],
      ['fineTuneBn', '--fine-tune-bn'],
    ] as const)
      check(input[key] === undefined, `${flag} goes with --fine-tune N`);
    return {};
  }
  // The library may pass a number of layers; the plan keeps the flag's text.
  const value = typeof raw === 'number' ? String(raw) : raw;
  check(
    typeof value === 'string' && FINE_TUNE_VALUE.test(value.trim()),
    `--fine-tune must be a number of layers (1 or more) or 'all' (got '${String(raw)}')`,
  );
  check(
    head !== 'knn',
    '--fine-tune trains the backbone by gradients through the head, and --head knn has none; use --head softmax or mlp',
  );
  return {
    fineTune: (value as string).trim(),
    fineTuneEpochs: input.fineTuneEpochs ?? SETTINGS.fineTuneEpochs.default,
    ...(input.fineTuneLr !== undefined ? { fineTuneLr: input.fineTuneLr } : {}),
    ...(input.fineTuneBn !== undefined ? { fineTuneBn: input.fineTuneBn } : {}),
  };
}

/** How many of a backbone's weighted layers `--fine-tune` unfreezes: a count, or all of them. */
export function fineTuneLayers(plan: TrainConfig): number | 'all' | undefined {
  if (plan.fineTune === undefined) return undefined;
  return plan.fineTune === 'all' ? 'all' : Number(plan.fineTune);
}

/**
 * The learning rates of fine-tuning's second phase, a simple form of fastai's discriminative
 * rates (`fine_tune` trains the unfrozen model at slice(base_lr / 200, base_lr / 2)): the head
 * at --fine-tune-lr (default --lr / 2), the last unfrozen backbone layer at a tenth of that and
 * the earliest at a hundredth, the layers between spread geometrically, so the layers closest
 * to the pixels, the most general ones, move least.
 */
export function fineTuneRates(plan: TrainConfig): { head: number; last: number; earliest: number } {
  const head = plan.fineTuneLr ?? plan.lr / 2;
  return { head, last: head / 10, earliest: head / 100 };
}

/**
 * The factor of the head's rate for unfrozen backbone layer `k` of `n` (0 = the earliest):
 * 1/100 for the earliest to 1/10 for the last (1/10 when only one is unfrozen).
 */
export function fineTuneFactor(k: number, n: number): number {
  return n <= 1 ? 0.1 : 0.01 * 10 ** (k / (n - 1));
}

/**
 * The data source a plan names. Paths stay as given: the loader resolves them and returns the
 * absolute source, which is what a run directory records.
 */
export function dataSourceOf(plan: TrainConfig): DataSource {
  if (plan.data === undefined)
    return idxSource(plan.dataset ?? SETTINGS.dataset.default, plan.dataDir, plan.resize);
  const kind = plan.dataKind ?? kindOfPath(plan.data);
  if (kind === 'folder') {
    return {
      kind: 'folder',
      path: plan.data,
      imageSize: plan.imageSize ?? FOLDER_DEFAULTS.imageSize,
      channels: plan.channels ?? FOLDER_DEFAULTS.channels,
      resizeMode: plan.resizeMode ?? FOLDER_DEFAULTS.resizeMode,
      valSplit: plan.holdOut ?? HELD_OUT_TEST_SPLIT,
      seed: plan.seed,
    };
  }
  if (kind === 'csv') {
    return {
      kind: 'csv',
      path: plan.data,
      testPath: plan.testData,
      valSplit: plan.holdOut ?? HELD_OUT_TEST_SPLIT,
      seed: plan.seed,
      resize: plan.resize,
    };
  }
  // A registered kind: its module's source type extends OwnData (core/data/source.ts).
  const own: OwnData & { kind: string } = {
    kind,
    path: plan.data,
    valSplit: plan.holdOut ?? HELD_OUT_TEST_SPLIT,
    seed: plan.seed,
    resize: plan.resize,
  };
  return own as DataSource;
}

/** The optimizer a plan asks for, fresh (no state). */
export function optimizerFor(plan: TrainConfig): Optimizer {
  return createOptimizer(optimizerConfigFor(plan));
}

/** The optimizer's settings under a plan: what `optimizerFor` builds, and a fused step follows. */
export function optimizerConfigFor(plan: TrainConfig): OptimizerConfig {
  return {
    name: plan.optimizer,
    lr: plan.lr,
    momentum: plan.momentum,
    nesterov: plan.nesterov,
    weightDecay: plan.weightDecay,
    own: getEntry(plan.model).ownOptimizer,
  };
}

/** Batch augmentation when a plan turns it on: a random crop with 2 px of padding, and flips. */
export const AUGMENTATION = { pad: 2, flip: true } as const;

/**
 * The recipe part of `fit`'s options: the settings core/settings.ts declares for the training
 * loop, and the data's shape. Everything but the data and the callbacks.
 */
export type FitRecipe = Pick<FitOptions, FitSetting | 'shape'>;

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

/**
 * Every training setting, declared once: its type, default, range or choices, help (with
 * units) and where it applies. The rest is derived from this table:
 *
 * - the plan's fields and their validation (core/plan.ts `TrainConfig`, `resolveConfig`),
 * - a model's overridable defaults (`ModelDefaults`) and the global ones (`GLOBAL_DEFAULTS`),
 * - the `imgclf train` / `lr-find` flags, their parsing and help (cli/commands/train.ts),
 * - what a resume may change (`RESUMABLE`), what the library's `fit` and `loadDataset` take,
 * - the page's number fields (web/src/train-panel.ts).
 *
 * A setting's flag is its name in kebab case (`batchSize` is `--batch-size`), so commander
 * hands it back under its own name.
 */
import { BACKENDS } from './backends.js';
import { IDX_DATASET_NAMES } from './data/classes.js';
import { type Declared, flagOf, orList, type ValueOf } from './declare.js';
import { OPTIMIZERS } from './optim/optimizers.js';
import { SCHEDULES } from './optim/schedule.js';

/**
 * What a setting is for: `fit` the training loop's recipe (`fitOptionsFor`), `optimizer` the
 * optimizer (`optimizerFor`), `data` the data source (`dataSourceOf`), `backbone` transfer
 * learning, `run` where and how the run goes, `model` the model.
 */
export type Use = 'model' | 'fit' | 'optimizer' | 'data' | 'backbone' | 'run';

export interface SettingDecl extends Declared {
  use: readonly Use[];
  /** The CLI's placeholder for the value (`<n>`); none for an on/off flag. */
  arg?: string;
  /**
   * Which commands take the flag: `plan` train and lr-find, `train` train only, `global` the
   * program (`imgclf --lang zh train`).
   */
  cli: 'plan' | 'train' | 'global';
  /** A model's `defaults` may set it; the declared default is the seed's (softmax's). */
  perModel?: true;
  /** `--resume` may change it; every other setting keeps the value the run was started with. */
  resumable?: true;
  /**
   * Applies only in this case ("image folders", "with --backbone"): the plan holds it only
   * then (core/plan.ts places it), and help starts with it.
   */
  when?: string;
  /** On/off settings with a model default: the help of the `--no-` flag that turns it off. */
  negation?: string;
}

/** Most training threads a run may ask for (each holds a copy of the model and its activations). */
export const MAX_WORKERS = 64;

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
 * What computes a TensorFlow.js layers backbone's features: ONNX Runtime on its conversion
 * where imgclf's exporter converts it (auto; onnx fails when it does not), or tfjs.
 */
export const BACKBONE_ENGINES = ['auto', 'onnx', 'tfjs'] as const;
export type BackboneEngine = (typeof BACKBONE_ENGINES)[number];

export const SETTINGS = {
  model: {
    type: 'string',
    default: 'softmax',
    use: ['model'],
    cli: 'plan',
    arg: 'name',
    help: 'model name (see `imgclf models`); with --backbone, the head',
  },
  epochs: {
    type: 'int',
    min: 1,
    default: 5,
    perModel: true,
    resumable: true,
    use: ['fit'],
    cli: 'plan',
    arg: 'n',
    help: 'passes over the training set',
  },
  batchSize: {
    type: 'int',
    min: 1,
    default: 256,
    perModel: true,
    use: ['fit'],
    cli: 'plan',
    arg: 'n',
    help: 'examples per minibatch (left unset, it shrinks for a small data set)',
  },
  lr: {
    type: 'number',
    min: 0,
    minExclusive: true,
    default: 0.1,
    perModel: true,
    use: ['optimizer'],
    cli: 'plan',
    arg: 'x',
    help: 'learning rate (the peak rate under a schedule)',
  },
  optimizer: {
    type: 'enum',
    choices: OPTIMIZERS,
    noun: 'optimizer',
    default: 'sgd',
    perModel: true,
    use: ['optimizer'],
    cli: 'plan',
    arg: 'name',
    help: "optimizer (own: the model's own updater, softmax-scratch's)",
  },
  momentum: {
    type: 'number',
    min: 0,
    max: 1,
    maxExclusive: true,
    default: 0,
    perModel: true,
    use: ['optimizer'],
    cli: 'plan',
    arg: 'x',
    help: 'sgd momentum (0 = plain SGD)',
  },
  nesterov: {
    type: 'boolean',
    default: false,
    perModel: true,
    use: ['optimizer'],
    cli: 'plan',
    help: 'Nesterov momentum (sgd with --momentum > 0)',
  },
  weightDecay: {
    type: 'number',
    min: 0,
    default: 0,
    perModel: true,
    use: ['optimizer'],
    cli: 'plan',
    arg: 'x',
    help: 'weight decay on weight matrices and kernels (L2 for sgd and adam, decoupled for adamw)',
  },
  schedule: {
    type: 'enum',
    choices: SCHEDULES,
    noun: 'schedule',
    default: 'constant',
    perModel: true,
    use: ['fit'],
    cli: 'plan',
    arg: 'name',
    help: 'LR schedule',
  },
  warmup: {
    type: 'number',
    min: 0,
    unit: 'epochs',
    default: 0,
    perModel: true,
    use: ['fit'],
    cli: 'plan',
    arg: 'epochs',
    help: 'linear LR warmup, in epochs (fractions allowed)',
  },
  labelSmoothing: {
    type: 'number',
    min: 0,
    max: 1,
    maxExclusive: true,
    default: 0,
    perModel: true,
    use: ['fit'],
    cli: 'plan',
    arg: 'eps',
    help: 'label smoothing eps: targets become (1 - eps) * onehot + eps / classes',
  },
  valSplit: {
    type: 'number',
    min: 0,
    minExclusive: true,
    max: 0.9,
    use: ['data'],
    cli: 'plan',
    arg: 'f',
    help: 'hold out this fraction of the training data (stratified) for validation, keeping the best epoch; for data without a test split it sets --hold-out instead (as it always has)',
  },
  holdOut: {
    type: 'number',
    min: 0,
    minExclusive: true,
    max: 0.9,
    default: 0.1,
    when: 'your own data',
    use: ['data'],
    cli: 'plan',
    arg: 'f',
    help: 'the fraction held out (stratified) as the test split when the data has none (a flat image folder, a CSV without --test-data); unset, --val-split is used when given',
  },
  patience: {
    type: 'int',
    min: 1,
    unit: 'epochs',
    use: ['fit'],
    cli: 'plan',
    arg: 'epochs',
    help: 'early stopping: stop after this many epochs without a better validation accuracy (needs --val-split)',
  },
  augment: {
    type: 'boolean',
    default: false,
    perModel: true,
    use: ['fit'],
    cli: 'plan',
    negation: 'turn batch augmentation off',
    help: 'random crop (2 px padding) + horizontal flip on each batch',
  },
  seed: {
    type: 'int',
    min: 0,
    default: 0,
    use: ['fit', 'data'],
    cli: 'plan',
    arg: 'n',
    help: 'seed for weight init, data order, augmentation and held-out splits',
  },
  backend: {
    type: 'enum',
    choices: BACKENDS,
    noun: 'backend',
    default: 'auto',
    resumable: true,
    use: ['run'],
    cli: 'plan',
    arg: 'name',
    help: 'tfjs backend (tensorflow needs @tensorflow/tfjs-node)',
  },
  workers: {
    type: 'int',
    min: 1,
    max: MAX_WORKERS,
    use: ['run'],
    cli: 'plan',
    arg: 'n',
    help: 'training threads, each on 1/N of every batch (default: the cores, for models big enough to gain)',
  },
  // Not resumable: a resumed run keeps the step it was trained with, so it continues bit for bit.
  fused: {
    type: 'boolean',
    use: ['run'],
    cli: 'plan',
    negation:
      'train with the unfused tfjs step (a dozen kernels a step) instead of the fused one, e.g. to compare them',
    help: 'fused training step where the backend has one (softmax on wasm: forward, loss, backward and update in one wasm call); on by default',
  },
  dataset: {
    type: 'string',
    default: 'fashion-mnist',
    when: 'without --data',
    use: ['data'],
    cli: 'plan',
    arg: 'name',
    help: `the built-in IDX set, ${orList(IDX_DATASET_NAMES)}`,
  },
  dataDir: {
    type: 'string',
    resumable: true,
    use: ['data'],
    cli: 'plan',
    arg: 'dir',
    help: 'folder with the IDX files of --dataset',
  },
  data: {
    type: 'string',
    use: ['data'],
    cli: 'plan',
    arg: 'path',
    help: 'your own data: a folder with one subfolder per class, or a .csv file',
  },
  dataKind: {
    type: 'string',
    when: 'your own data',
    use: ['data'],
    cli: 'plan',
    arg: 'kind',
    help: 'what kind of data --data is (folder, csv, or a kind a module registered, node/data/sources.ts); unset, a .csv file is csv and anything else an image folder',
  },
  testData: {
    type: 'string',
    use: ['data'],
    cli: 'plan',
    arg: 'file',
    help: 'test CSV for a CSV --data (default: hold out --hold-out of the rows)',
  },
  imageSize: {
    type: 'int',
    min: 4,
    max: 512,
    default: 28,
    when: 'image folders',
    use: ['data'],
    cli: 'plan',
    arg: 'n',
    help: 'resize to N x N pixels (other data: the same as --resize)',
  },
  channels: {
    type: 'enum',
    choices: [1, 3],
    default: 3,
    when: 'image folders',
    use: ['data'],
    cli: 'plan',
    arg: 'n',
    help: '1 (gray) or 3 (RGB)',
  },
  resizeMode: {
    type: 'enum',
    choices: ['fill', 'contain', 'cover'],
    default: 'fill',
    when: 'image folders',
    use: ['data'],
    cli: 'plan',
    arg: 'mode',
    help: 'fill (stretch), contain (letterbox) or cover (crop the centre)',
  },
  strict: {
    type: 'boolean',
    default: false,
    when: 'image folders',
    use: ['data'],
    cli: 'plan',
    help: 'fail on an unreadable file instead of skipping it',
  },
  resize: {
    type: 'int',
    min: 4,
    max: 512,
    use: ['data'],
    cli: 'plan',
    arg: 'n',
    help: 'resize images to N x N pixels (bilinear) before training',
  },
  backbone: {
    type: 'string',
    use: ['backbone'],
    cli: 'train',
    arg: 'model',
    help: 'transfer learning: a TensorFlow.js model (a model.json, a folder holding one such as an imgclf run directory or a Teachable Machine export), an ONNX model (an .onnx file, a Hugging Face folder with onnx/model.onnx, or hf:OWNER/NAME[@REVISION]) or a URL to one; a head trains on its cached features (docs/own-images.md)',
  },
  head: {
    type: 'enum',
    choices: HEADS,
    default: 'softmax',
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    arg: 'name',
    help: 'the head trained on its features (--model means the same)',
  },
  backboneLayer: {
    type: 'string',
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    arg: 'name',
    help: 'feature layer (layers models; default the input of the last Dense layer), node (graph models; default the output) or output (ONNX; default pooler_output or a 2-D output)',
  },
  backboneSize: {
    type: 'int',
    min: 8,
    max: 1024,
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    arg: 'n',
    help: "its input size N x N pixels (default: the model's, or its family's: 224 for graph models)",
  },
  backboneRange: {
    type: 'enum',
    choices: BACKBONE_RANGES,
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    arg: 'range',
    help: "the input range it expects (default: its family's: -1,1 for Teachable Machine, else 0,1)",
  },
  backboneEngine: {
    type: 'enum',
    choices: BACKBONE_ENGINES,
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    arg: 'engine',
    help: 'what computes a TensorFlow.js layers backbone: auto (ONNX Runtime on its conversion to ONNX where it converts, else tfjs), onnx or tfjs (default: auto, or IMGCLF_BACKBONE_ENGINE, which evaluate, predict and serve read too)',
  },
  fineTune: {
    type: 'string',
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    arg: 'n|all',
    help: "fine-tune a TensorFlow.js layers backbone (fastai's fine_tune): after the head trains on its cached features, the last N layers that hold weights (all: every one) train with the head, end to end on the images, at lower rates (docs/own-images.md)",
  },
  fineTuneEpochs: {
    type: 'int',
    min: 1,
    unit: 'epochs',
    default: 5,
    resumable: true,
    when: 'with --fine-tune',
    use: ['backbone'],
    cli: 'train',
    arg: 'n',
    help: 'epochs of the second phase, backbone layers and head together (--epochs counts the first, the head alone)',
  },
  fineTuneLr: {
    type: 'number',
    min: 0,
    minExclusive: true,
    when: 'with --fine-tune',
    use: ['backbone'],
    cli: 'train',
    arg: 'x',
    help: "the head's learning rate in the second phase (default: --lr / 2); the unfrozen backbone layers train at 1/10 of it (the last) down to 1/100 (the earliest), spread geometrically",
  },
  fineTuneBn: {
    type: 'boolean',
    when: 'with --fine-tune',
    use: ['backbone'],
    cli: 'train',
    help: 'let the unfrozen batch-norm layers update their moving statistics (training mode); without it every batch-norm layer runs in inference mode and its statistics stay as trained',
  },
  offline: {
    type: 'boolean',
    when: 'with --backbone',
    use: ['backbone'],
    cli: 'train',
    help: 'use only cached downloads of the backbone (as HF_HUB_OFFLINE=1 does); say what is missing otherwise',
  },
  out: {
    type: 'string',
    use: ['run'],
    cli: 'train',
    arg: 'dir',
    help: 'run directory (default runs/<timestamp>)',
  },
  lang: {
    type: 'enum',
    choices: ['en', 'zh'],
    default: 'en',
    use: ['run'],
    cli: 'global',
    arg: 'lang',
    help: 'language of class names and messages',
  },
} as const satisfies Record<string, SettingDecl>;

type Table = typeof SETTINGS;
export type SettingName = keyof Table;

/** The table for reading at run time, every entry seen as a `SettingDecl`. */
export const SETTING_DECLS: Readonly<Record<SettingName, SettingDecl>> = SETTINGS;

/** The setting names, in the table's order. */
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** Settings a resolved plan always holds: those with a default that applies everywhere. */
type AlwaysSet = {
  [K in SettingName]: Table[K] extends { default: unknown }
    ? Table[K] extends { when: string }
      ? never
      : K
    : never;
}[SettingName];

/** The plan's settings, typed from the table (core/plan.ts `TrainConfig` adds the rest). */
export type Settings = { [K in AlwaysSet]: ValueOf<Table[K]> } & {
  [K in Exclude<SettingName, AlwaysSet>]?: ValueOf<Table[K]>;
};

type Flagged<F extends string> = {
  [K in SettingName]: Table[K] extends Record<F, true> ? K : never;
}[SettingName];
type Using<U extends Use> = {
  [K in SettingName]: U extends Table[K]['use'][number] ? K : never;
}[SettingName];

/** Settings a model's `defaults` may set. */
export type PerModelSetting = Flagged<'perModel'>;
/** Settings a resume may change. */
export type ResumableSetting = Flagged<'resumable'>;
/** Settings of the training loop's recipe (`fitOptionsFor`). */
export type FitSetting = Using<'fit'>;
/** Settings the library's `fit` takes: the loop's and the optimizer's. */
export type TrainChoiceSetting = Using<'fit'> | Using<'optimizer'>;
/** Settings the library's `loadDataset` takes. */
export type DataSetting = Using<'data'>;

/** A model's training defaults: only what differs from the global ones goes there. */
export type ModelDefaults = Partial<Pick<Settings, PerModelSetting>>;

function namesWhere<K extends SettingName>(keep: (decl: SettingDecl) => boolean): K[] {
  return SETTING_NAMES.filter((name): name is K => keep(SETTING_DECLS[name]));
}

/** What `--resume` may change, in the table's order. */
export const RESUMABLE: readonly ResumableSetting[] = namesWhere<ResumableSetting>(
  (d) => d.resumable === true,
);
/** What the library's `fit` takes. */
export const TRAIN_CHOICE_NAMES: readonly TrainChoiceSetting[] = namesWhere<TrainChoiceSetting>(
  (d) => d.use.includes('fit') || d.use.includes('optimizer'),
);
/** What the library's `loadDataset` takes. */
export const DATA_SETTING_NAMES: readonly DataSetting[] = namesWhere<DataSetting>((d) =>
  d.use.includes('data'),
);
/** What a model's `defaults` may set. */
export const PER_MODEL_NAMES: readonly PerModelSetting[] = namesWhere<PerModelSetting>(
  (d) => d.perModel === true,
);

/**
 * Where every model starts: the declared defaults of the settings a model may override, the
 * seed's recipe (5 epochs of plain minibatch SGD, lr 0.1, batch 256, no schedule, no
 * regularization).
 */
// Built from the table, so a new overridable setting gets its default here by itself; the
// entries are the declared defaults, which the type of each declaration guarantees.
export const GLOBAL_DEFAULTS = Object.fromEntries(
  PER_MODEL_NAMES.map((name) => [name, SETTING_DECLS[name].default]),
) as Required<ModelDefaults>;

function shownValue(value: unknown): string {
  if (value === true) return 'on';
  if (value === false) return 'off';
  return String(value);
}

/**
 * The help line of a setting: where it applies, its meaning, its choices and its default
 * (for a setting a model may override, the model's, with softmax's as the example).
 */
export function settingHelp(name: SettingName): string {
  const d = SETTING_DECLS[name];
  const notes: string[] = [];
  if (d.type === 'enum') notes.push(`choices: ${(d.choices ?? []).join(', ')}`);
  if (d.perModel) notes.push(`default: the model's; ${shownValue(d.default)} for softmax`);
  else if (d.default !== undefined) notes.push(`default: ${shownValue(d.default)}`);
  const when = d.when ? `${d.when}: ` : '';
  return `${when}${d.help}${notes.length ? ` (${notes.join('; ')})` : ''}`;
}

/** The command-line flag of a setting, e.g. `--batch-size`. */
export function settingFlag(name: SettingName): string {
  return flagOf(name);
}

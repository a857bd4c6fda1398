/**
 * The training config: one typed object with documented defaults. CLI flags map onto it,
 * unknown keys are errors, and the resolved config is written into the run directory.
 */
import { BACKENDS, type BackendName } from './backend/index.js';
import type { Lang } from './data/classes.js';
import { check, UserError } from './errors.js';
import { getEntry } from './models/index.js';
import { OPTIMIZERS } from './train/optimizers.js';
import { SCHEDULES } from './train/schedule.js';

export interface TrainConfig {
  /** Registered model name (`imgclf models` lists them). */
  model: string;
  /** Built-in dataset name. */
  dataset: string;
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
  /** Folder holding the IDX files; unset = the search chain in data/sources.ts. */
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
  /** Fraction of the training set held out (stratified) for validation; 0 = none. */
  valSplit: number;
  /** Batch augmentation: random crop with 2 px padding + horizontal flip. Default: the model's. */
  augment: boolean;
  /** Model options: hidden sizes, dropout, activation, pooling (see each model's file). */
  modelOptions: Record<string, unknown>;
}

const KEYS: (keyof TrainConfig)[] = [
  'model',
  'dataset',
  'epochs',
  'batchSize',
  'lr',
  'optimizer',
  'seed',
  'backend',
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
  'valSplit',
  'augment',
  'modelOptions',
];

/** Fills defaults (the model's own first) and validates every field. */
export function resolveConfig(input: Partial<TrainConfig> & Record<string, unknown>): TrainConfig {
  for (const key of Object.keys(input)) {
    if (!(KEYS as string[]).includes(key))
      throw new UserError(`unknown config key '${key}'; known keys: ${KEYS.join(', ')}`);
  }
  const model = input.model ?? 'softmax';
  const entry = getEntry(model);
  const cfg: TrainConfig = {
    model,
    dataset: input.dataset ?? 'fashion-mnist',
    epochs: input.epochs ?? entry.defaults.epochs,
    batchSize: input.batchSize ?? entry.defaults.batchSize ?? 256,
    lr: input.lr ?? entry.defaults.lr,
    optimizer: input.optimizer ?? entry.defaults.optimizer ?? 'sgd',
    seed: input.seed ?? 0,
    backend: input.backend ?? 'auto',
    dataDir: input.dataDir,
    resize: input.resize,
    out: input.out,
    lang: input.lang ?? 'en',
    schedule: input.schedule ?? entry.defaults.schedule ?? 'constant',
    warmup: input.warmup ?? entry.defaults.warmup ?? 0,
    momentum: input.momentum ?? entry.defaults.momentum ?? 0,
    nesterov: input.nesterov ?? entry.defaults.nesterov ?? false,
    weightDecay: input.weightDecay ?? entry.defaults.weightDecay ?? 0,
    labelSmoothing: input.labelSmoothing ?? entry.defaults.labelSmoothing ?? 0,
    valSplit: input.valSplit ?? 0,
    augment: input.augment ?? entry.defaults.augment ?? false,
    modelOptions: input.modelOptions ?? {},
  };
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
    Number.isFinite(cfg.valSplit) && cfg.valSplit >= 0 && cfg.valSplit < 1,
    `--val-split must be in [0, 1) (got ${cfg.valSplit})`,
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
  check(cfg.lang === 'en' || cfg.lang === 'zh', `--lang must be en or zh (got ${cfg.lang})`);
  check(cfg.dataset === 'fashion-mnist', `unknown dataset '${cfg.dataset}'; choose fashion-mnist`);
  if (cfg.resize !== undefined) {
    check(
      Number.isInteger(cfg.resize) && cfg.resize >= 4 && cfg.resize <= 512,
      `--resize must be a whole number from 4 to 512 (got ${cfg.resize})`,
    );
  }
  return cfg;
}

/**
 * The training config: one typed object with documented defaults. CLI flags map onto it,
 * unknown keys are errors, and the resolved config is written into the run directory.
 */
import { BACKENDS, type BackendName } from './backend/index.js';
import type { Lang } from './data/classes.js';
import { check, UserError } from './errors.js';
import { getEntry } from './models/index.js';

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
  };
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

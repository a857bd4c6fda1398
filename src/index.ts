/**
 * `imgclf`: train, evaluate and use image classifiers from Node.
 *
 *   import { loadFashionMnist, createModel, fit, evaluate, predict } from 'imgclf';
 *
 * The core API (models, the plan, fit, evaluate, predict) with a fast backend chosen first,
 * plus data from files, run directories and the CLI's train in code. docs/api.md walks
 * through it beside the d2l tutorial the project started from. `imgclf/core` is the
 * browser-safe part alone.
 */
export {
  createModel,
  listModels,
  resolvePlan,
  splitFromIdx,
  validationSplit,
  type CreateModelOptions,
  type EpochInfo,
  type Evaluation,
  type FitOptions,
  type FitSummary,
  type Model,
  type ModelInfo,
  type PlanChoices,
  type PredictOptions,
  type Prediction,
  type TrainChoices,
} from './core/api.js';
export { BACKENDS, type BackendName } from './core/backends.js';
export {
  FASHION_MNIST_CLASSES,
  IDX_DATASET_NAMES,
  KMNIST_CLASSES,
  MNIST_CLASSES,
} from './core/data/classes.js';
export type { Dataset, ImageShape, Split } from './core/data/dataset.js';
export type { DataSource, Preprocessing, ResizeMode } from './core/data/source.js';
export { UserError } from './core/errors.js';
export type { Net } from './core/models/index.js';
export { modelDefaults, type TrainConfig } from './core/plan.js';
export { DivergedError, type EpochMetrics } from './core/train/loop.js';
export { VERSION } from './core/version.js';
export {
  evaluate,
  fit,
  loadDataset,
  loadFashionMnist,
  loadRun,
  loadRunData,
  predict,
  predictImage,
  ready,
  saveRun,
  train,
  useBackend,
  type DatasetOptions,
  type ImagePrediction,
  type LoadedData,
  type Run,
  type SaveRunOptions,
  type TrainOptions,
  type TrainResult,
} from './node/api.js';
export type { RunMetadata } from './node/run/rundir.js';
export type { DataSummary, Progress } from './node/session.js';

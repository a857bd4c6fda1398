/**
 * `imgclf/core`: the browser-safe part of imgclf. It imports TensorFlow.js and src/core only
 * (no Node API, no sharp, no fastify), so a bundler keeps it small. Choose a tfjs backend
 * yourself before the first tensor work, e.g. `import '@tensorflow/tfjs-backend-webgl'` and
 * `await tf.setBackend('webgl')`. In Node, import `imgclf` instead: it also loads data and
 * runs, and picks the fast wasm backend for you. docs/api.md shows both.
 */
export {
  createModel,
  evaluate,
  fit,
  listModels,
  predict,
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
} from './api.js';
export { FASHION_MNIST_CLASSES, IDX_DATASET_NAMES, KMNIST_CLASSES, MNIST_CLASSES } from './data/classes.js';
export type { Dataset, ImageShape, Split } from './data/dataset.js';
export type { DataSource, Preprocessing, ResizeMode } from './data/source.js';
export { UserError } from './errors.js';
export type { Net } from './models/index.js';
export { modelDefaults, type TrainConfig } from './plan.js';
export { DivergedError, type EpochMetrics } from './train/loop.js';
export { VERSION } from './version.js';

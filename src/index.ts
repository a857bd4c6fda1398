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
// The browser-safe API, then the Node versions of fit, evaluate and predict (which pick a fast
// backend first) and what needs files. A named export here takes precedence over the same
// name from `export *`.
export * from './core/index.js';
export { BACKENDS, type BackendName } from './core/backends.js';
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

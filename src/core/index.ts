/**
 * `imgclf/core`: the browser-safe part of imgclf. It imports TensorFlow.js and src/core only
 * (no Node API, no sharp, no fastify), so a bundler keeps it small. Choose a tfjs backend
 * yourself before the first tensor work, e.g. `import '@tensorflow/tfjs-backend-webgl'` and
 * `await tf.setBackend('webgl')` (`imgclf/backend` adds imgclf's fast kernels). In Node, import
 * `imgclf` instead: it also loads data and runs, and picks the fast wasm backend for you.
 * docs/api.md shows both. The page `imgclf serve` opens (web/src) uses nothing but this entry
 * and `imgclf/backend`.
 */

// Models, training and prediction: the high-level API.
export {
  createModel,
  evaluate,
  fit,
  listModels,
  predict,
  resolvePlan,
  trainChoicesOf,
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
export { UserError } from './errors.js';
export { DivergedError, type EpochMetrics } from './train/loop.js';
export { VERSION } from './version.js';

// The plan: every default, and what the data's size decides; each setting's declaration
// (type, default, range, help), as a form for the settings shows them.
export { modelDefaults, sizeToData, type TrainConfig } from './plan.js';
export { SETTING_DECLS, settingHelp, type SettingDecl, type SettingName } from './settings.js';

// Data: splits from bytes, held-out and validation splits, pixels as bytes or floats.
export { splitFromIdx, validationSplit } from './api.js';
export { heldOutSplit } from './data/split.js';
export {
  imageSize,
  pixelsAsBytes,
  pixelsAsFloat,
  type Dataset,
  type ImageShape,
  type Pixels,
  type Split,
} from './data/dataset.js';
export type { DataSource, ResizeMode } from './data/source.js';

// Class names of the built-in datasets, and their display names (English or Chinese).
export {
  displayName,
  FASHION_MNIST_CLASSES,
  IDX_DATASET_NAMES,
  KMNIST_CLASSES,
  MNIST_CLASSES,
  type Lang,
} from './data/classes.js';

// Preparing a picture for a model as `imgclf predict` does, for code that decodes it itself
// (the page draws it on a canvas): the steps' numbers, the light-background probe, the scaling.
export { folderPreprocessing, type Preprocessing } from './data/source.js';
export {
  BORDER_PROBE_SIDE,
  borderMean,
  gray,
  inputFromBytes,
  lightBackground,
  type PixelGrid,
  WORKING_SIDE,
  workingSide,
} from './data/prepare.js';

// Finding a layers backbone's feature layer and cutting the model there, the same in Node and
// in the page.
export { allLayers, defaultFeatureLayer, isModel, type LayerPath, upTo } from './models/layer-paths.js';

// What a run records about its backbone.
export type { BackboneFamily, BackboneRecord } from './backbone-record.js';

// How an ONNX backbone is read (its image input, preprocessing and feature output), the same in
// Node and in the page.
export {
  affineOf,
  DEFAULT_BACKBONE_SIDE,
  featureOutput,
  featuresOf,
  graphInput,
  type GraphValue,
  imageInput,
  type ImageInput,
  type OnnxPreprocessing,
  POOLED_NAMES,
  type PreprocessingFlags,
  resolveOnnxPreprocessing,
  shapeText,
} from './onnx-rules.js';

// Lower-level inference: probabilities for prepared inputs, any `Net` (a loaded run's included).
export { predictProbabilities, topK } from './predict.js';

// Run directories in memory: the file names and formats `imgclf train` writes and reads, and
// building a run's network from its model.json and weights.bin.
export {
  isManifest,
  type Manifest,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  manifestText,
  type ManifestEntry,
  METADATA_FILE,
  metadataText,
  METRICS_FILE,
  metricsText,
  MODEL_FILE,
  modelJsonOf,
  RUN_FORMAT,
  runMetadata,
  WEIGHTS_FILE,
  type RunMetadataBase,
  type RunOutcome,
  type RunRecord,
} from './run-format.js';
export { loadNet, type Net, type NetArtifacts } from './models/index.js';

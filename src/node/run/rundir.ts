/**
 * The run directory: everything `evaluate`, `predict`, `report` and `serve` need, and nothing
 * else to remember (as nanoGPT checkpoints are):
 *
 *   model.json + weights.bin   the network, in TensorFlow.js layers format (softmax-scratch,
 *                              knn: the same files, with their own small topology); with a
 *                              backbone (transfer learning), the head alone: metadata.json
 *                              records the backbone (where it came from, its SHA-256), and
 *                              loadRun returns backbone and head as one net
 *   metadata.json              class names, input shape, preprocessing, resolved config, versions
 *   metrics.jsonl              one line of metrics per epoch
 *   final/                     with --val-split: the last epoch's model (the top level holds the
 *                              epoch with the best validation accuracy)
 *   checkpoint/                model, optimizer state and loop state to --resume the run
 *   manifest.json              every file above with its size and SHA-256 (node/run/save.ts)
 *
 * A save is all-or-nothing (node/run/save.ts): an interrupted run keeps its last complete
 * save, and loading refuses a directory whose files do not match its manifest.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { ImageShape } from '../../core/data/dataset.js';
import type { Preprocessing } from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import { loadNet, type Net } from '../../core/models/index.js';
import type { EpochMetrics, FitState } from '../../core/train/loop.js';
import type { OptimizerState } from '../../core/optim/optimizers.js';
import {
  METADATA_FILE,
  metadataText,
  METRICS_FILE,
  metricsText,
  MODEL_FILE,
  modelJsonOf,
  RUN_FORMAT,
  type RunMetadataBase,
  WEIGHTS_FILE,
} from '../../core/run-format.js';
import {
  type Backbone,
  backboneNet,
  type BackboneRecord,
  loadRecordedBackbone,
} from '../backbone/backbone.js';
import { writerOf } from './lock.js';
import { LIMITS, readRunFile, runPath } from './paths.js';
import {
  checkListed,
  checkListedSize,
  commitSave,
  type Manifest,
  manifestOf,
  MANIFEST_FILE,
  MixedSaveError,
  recoverRun,
  type SaveFiles,
  verifyRun,
} from './save.js';
import { checkTopology, MAX_ACTIVATION_VALUES } from './topology.js';

export type { Preprocessing };

// The format is the core's (core/run-format.ts), which the page writes and reads too.
export { METADATA_FILE, metadataText, METRICS_FILE, metricsText, MODEL_FILE, RUN_FORMAT, WEIGHTS_FILE };

/**
 * metadata.json, with the backbone record typed (core/run-format.ts has the rest). With a
 * backbone (transfer learning) `inputShape` is the backbone's; the head takes its features.
 */
export type RunMetadata = RunMetadataBase<BackboneRecord>;

export const FINAL_DIR = 'final';
export const CHECKPOINT_DIR = 'checkpoint';
const OPTIMIZER_FILE = 'optimizer.bin';
const STATE_FILE = 'state.json';
/** What `train --force` removes besides the manifest's files: the report. */
export const REPORT_FILES = [
  'report.html',
  'curves.png',
  'curves.svg',
  'confusion.png',
  'confusion.svg',
  'predictions.png',
  'mistakes.png',
  // An export describes the weights it was made from: a replaced run drops it.
  'model.onnx',
];

// ---------------------------------------------------------------------------------------------
// Encoding: what each part of a run directory holds, as files for one save.

/** model.json + weights.bin (TensorFlow.js layers format) of `model`. */
export async function modelFiles(model: Net): Promise<SaveFiles> {
  const artifacts = await model.artifacts();
  return new Map<string, string | Uint8Array>([
    [WEIGHTS_FILE, new Uint8Array(artifacts.weightData)],
    [MODEL_FILE, JSON.stringify(modelJsonOf(artifacts))],
  ]);
}

/** What a checkpoint was made for: a resume must train the same network on the same data. */
export interface CheckpointIdentity {
  model: string;
  classNames: string[];
  inputShape: ImageShape;
}

interface CheckpointFile extends Partial<CheckpointIdentity> {
  fit: FitState;
  optimizer: { name: string; step: number; slotShapes: number[][] };
}

/** checkpoint/: the model, the optimizer's slots (optimizer.bin, float32) and the loop state. */
export async function checkpointFiles(
  net: Net,
  optimizer: { name: string; getState(): OptimizerState },
  fit: FitState,
  identity?: CheckpointIdentity,
  /** The net's model files when the caller has them already (one serialization per save). */
  netFiles?: SaveFiles,
): Promise<SaveFiles> {
  const files = under(CHECKPOINT_DIR, netFiles ?? (await modelFiles(net)));
  const state = optimizer.getState();
  const parts = state.slots.map((t) => t.dataSync() as Float32Array);
  const flat = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    flat.set(p, o);
    o += p.length;
  }
  const file: CheckpointFile = {
    ...identity,
    fit,
    optimizer: { name: optimizer.name, step: state.step, slotShapes: state.slots.map((t) => t.shape) },
  };
  state.slots.forEach((t) => t.dispose());
  files.set(`${CHECKPOINT_DIR}/${OPTIMIZER_FILE}`, new Uint8Array(flat.buffer));
  files.set(`${CHECKPOINT_DIR}/${STATE_FILE}`, JSON.stringify(file));
  return files;
}

/** `files` moved into subfolder `folder` of the save. */
export function under(folder: string, files: SaveFiles): SaveFiles {
  return new Map([...files].map(([rel, data]) => [`${folder}/${rel}`, data]));
}

/**
 * `files` as a subfolder that is a complete run directory of its own (final/): with its own
 * manifest, so `imgclf evaluate --run RUN/final` checks it too.
 */
export function asRunFolder(folder: string, files: SaveFiles, epoch: number): SaveFiles {
  const out = under(folder, files);
  out.set(`${folder}/${MANIFEST_FILE}`, manifestOf(files, epoch));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Saving: each call below is one all-or-nothing save.

/**
 * Commits one save of a run; `replace` makes it replace the run `dir` holds as a whole (train
 * --force, saveRun with force): the previous run's files and its report, which describes
 * another model, are removed once the save is committed.
 */
export async function saveRunFiles(
  dir: string,
  files: SaveFiles,
  opts: { epoch: number; replace: boolean },
): Promise<void> {
  await commitSave(dir, files, opts);
  if (opts.replace) for (const name of REPORT_FILES) await rm(path.join(dir, name), { force: true });
}

/** Saves the model (model.json + weights.bin) into `dir`. */
export async function saveModel(model: Net, dir: string): Promise<void> {
  await commitSave(dir, await modelFiles(model));
}

export async function saveMetadata(dir: string, meta: RunMetadata): Promise<void> {
  await commitSave(dir, new Map([[METADATA_FILE, metadataText(meta)]]));
}

export async function saveMetrics(dir: string, history: EpochMetrics[]): Promise<void> {
  await commitSave(dir, new Map([[METRICS_FILE, metricsText(history)]]));
}

/** Writes `dir/checkpoint/` on its own (the session saves it with the rest of an epoch). */
export async function saveCheckpoint(
  dir: string,
  net: Net,
  optimizer: { name: string; getState(): OptimizerState },
  fit: FitState,
  identity?: CheckpointIdentity,
): Promise<void> {
  await commitSave(dir, await checkpointFiles(net, optimizer, fit, identity), { epoch: fit.epoch });
}

// ---------------------------------------------------------------------------------------------
// Loading: every part is checked, and a run that fails a check stops with one clear line.

export interface LoadedRun {
  dir: string;
  /** The model; with a backbone, backbone then head as one net. */
  model: Net;
  metadata: RunMetadata;
  metrics: EpochMetrics[];
  /** The loaded backbone, when the run was trained on one (`model` owns it). */
  backbone?: Backbone;
}

/**
 * Reads and parses the JSON file `rel` of run directory `dir`: a regular file of at most
 * `limit` bytes (node/run/paths.ts), so a huge or looped file is refused as such, unread.
 */
async function readJson<T>(
  dir: string,
  rel: string,
  what: string,
  limit: number,
  listed?: Manifest,
): Promise<T> {
  const file = path.join(dir, rel);
  const bytes = await readRunFile(dir, rel, limit, `a ${what} file`);
  if (!bytes) throw new UserError(`${file} is missing; is this a run directory written by 'imgclf train'?`);
  checkListed(dir, rel, bytes, listed);
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new UserError(
      `${file}: ${what} is not valid JSON (corrupt or truncated); retrain or restore the run`,
    );
  }
}

/**
 * The metadata.json of run directory `dir`, parsed (size-capped and regular files only, as
 * every run file is read); `missing` is the line for a run without one.
 */
export async function readMetadata(dir: string, missing?: string, listed?: Manifest): Promise<RunMetadata> {
  if (missing && !existsSync(path.join(dir, METADATA_FILE))) throw new UserError(missing);
  return readJson<RunMetadata>(dir, METADATA_FILE, 'metadata', LIMITS.metadata, listed);
}

/**
 * Finishes an interrupted save, then checks the files against the manifest. While another
 * process trains into the run (it holds the lock, node/run/lock.ts), its staging folder is its
 * own: the reader checks the last committed save and leaves the rest to the writer.
 */
async function openRun(
  dir: string,
  under = '',
  log?: (message: string) => void,
): Promise<Manifest | undefined> {
  if (!existsSync(dir))
    throw new UserError(`run directory ${dir} does not exist; train one with 'imgclf train --out ${dir}'`);
  if (!(await writerOf(dir))) {
    const recovered = await recoverRun(dir);
    if (recovered) log?.(recovered);
  }
  return verifyRun(dir, under);
}

async function readMetrics(dir: string, listed?: Manifest): Promise<EpochMetrics[]> {
  const file = path.join(dir, METRICS_FILE);
  const bytes = await readRunFile(dir, METRICS_FILE, LIMITS.metrics, 'the metrics');
  if (!bytes) return [];
  checkListed(dir, METRICS_FILE, bytes, listed);
  const lines = bytes.toString('utf8').split('\n');
  const out: EpochMetrics[] = [];
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as EpochMetrics);
    } catch {
      throw new UserError(`${file}: line ${i + 1} is not valid JSON (corrupt or truncated); restore the run`);
    }
  }
  return out;
}

/**
 * Checks that the model fits its metadata: it takes the recorded input shape and has one
 * output per class name. A run whose metadata.json was edited or mixed up fails here instead
 * of printing "undefined" as a label.
 */
function checkModelFits(model: Net, meta: RunMetadata, dir: string): void {
  const shape = meta.inputShape;
  let outputs: number | undefined;
  try {
    outputs = tf.tidy(() => model.apply(tf.zeros([1, ...shape]), { training: false }).shape[1]);
  } catch (err) {
    throw new UserError(
      `${path.join(dir, MODEL_FILE)} does not take the ${shape.join('x')} images ${METADATA_FILE} records (${(err as Error).message.split('\n')[0]})`,
    );
  }
  if (outputs !== meta.classNames.length) {
    throw new UserError(
      `${path.join(dir, METADATA_FILE)} names ${meta.classNames.length} classes but the model has ${outputs} outputs; the run directory is inconsistent`,
    );
  }
}

/** How often a reader tries again when a training commits a save while it loads. */
const LOAD_ATTEMPTS = 20;

/**
 * Loads a run directory written by `imgclf train`, validating each part. A reader takes no
 * lock: while a training writes into the run, a save may be committed between two reads, and
 * then the load, which only uses bytes the manifest lists, starts again (a commit takes
 * milliseconds).
 */
export async function loadRun(dir: string, log?: (message: string) => void): Promise<LoadedRun> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await loadRunOnce(dir, log);
    } catch (err) {
      // Once in any case (the writer may have finished its last save just now), then while a
      // writer is at work.
      if (!(err instanceof MixedSaveError) || attempt >= LOAD_ATTEMPTS) throw err;
      if (attempt > 1 && !(await writerOf(dir))) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50 * Math.min(attempt, 4)));
    }
  }
}

async function loadRunOnce(dir: string, log?: (message: string) => void): Promise<LoadedRun> {
  const listed = await openRun(dir, '', log);
  const metadata = await readMetadata(dir, undefined, listed);
  if (
    metadata.format !== RUN_FORMAT ||
    !Array.isArray(metadata.classNames) ||
    !Array.isArray(metadata.inputShape)
  ) {
    throw new UserError(`${path.join(dir, METADATA_FILE)}: not an imgclf run (format '${metadata.format}')`);
  }
  const shape = metadata.inputShape as unknown[];
  if (
    shape.length !== 3 ||
    !shape.every((d) => Number.isSafeInteger(d) && (d as number) > 0) ||
    (shape as number[]).reduce((a, b) => a * b, 1) > MAX_ACTIVATION_VALUES
  )
    throw new UserError(
      `${path.join(dir, METADATA_FILE)}: the input shape ${JSON.stringify(shape)} is not an image shape imgclf trains on; restore the run directory or retrain`,
    );
  let model = await loadModelFiles(dir, metadata.model, '', listed);
  let backbone: Backbone | undefined;
  if (metadata.backbone) {
    try {
      backbone = await loadRecordedBackbone(metadata.backbone, log);
      model = backboneNet(backbone, model);
    } catch (err) {
      model.dispose();
      throw err;
    }
  }
  try {
    checkModelFits(model, metadata, dir);
  } catch (err) {
    model.dispose();
    throw err;
  }
  let metrics: EpochMetrics[];
  try {
    metrics = await readMetrics(dir, listed);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { dir, model, metadata, metrics, ...(backbone ? { backbone } : {}) };
}

/** The bytes a weight spec takes in weights.bin: imgclf writes 4-byte values only. */
const BYTES_PER_VALUE: Record<string, number> = { float32: 4, int32: 4 };

/**
 * The weight specs of a model.json, checked: weight files named inside the run (the run keeps
 * them all in weights.bin), whole-number shapes, known types. Returns the specs, their values
 * and bytes.
 */
function weightSpecsOf(
  dir: string,
  modelJson: { weightsManifest?: unknown },
  modelFile: string,
): { specs: tf.io.WeightsManifestEntry[]; values: number; bytes: number } {
  const bad = (why: string) =>
    new UserError(`${modelFile}: ${why}; the run directory was damaged or changed: restore it or retrain`);
  const groups = modelJson.weightsManifest ?? [];
  if (!Array.isArray(groups)) throw bad('weightsManifest is not a list');
  const specs: tf.io.WeightsManifestEntry[] = [];
  for (const g of groups as { paths?: unknown; weights?: unknown }[]) {
    if (!Array.isArray(g?.paths) || !Array.isArray(g.weights))
      throw bad('a weightsManifest group has no paths or weights');
    for (const p of g.paths) {
      // tfjs names weight files './weights.bin'; the path itself is checked as any run path.
      const rel = typeof p === 'string' && p.startsWith('./') ? p.slice(2) : p;
      runPath(dir, rel, modelFile);
      if (rel !== WEIGHTS_FILE)
        throw bad(`it names the weight file '${String(p)}', but a run keeps its weights in ${WEIGHTS_FILE}`);
    }
    specs.push(...(g.weights as tf.io.WeightsManifestEntry[]));
  }
  let values = 0;
  let bytes = 0;
  for (const w of specs) {
    const dtype = w?.dtype ?? 'float32';
    if (
      typeof w?.name !== 'string' ||
      !Array.isArray(w.shape) ||
      !w.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      !(dtype in BYTES_PER_VALUE)
    )
      throw bad(
        `the weight ${JSON.stringify(w?.name)} has the shape ${JSON.stringify(w?.shape)} and type ${String(dtype)}`,
      );
    const n = w.shape.reduce((a, b) => a * b, 1);
    values += n;
    bytes += n * BYTES_PER_VALUE[dtype];
  }
  return { specs, values, bytes };
}

/**
 * Reads model.json + weights.bin from `dir` (or its subfolder `folder`) and rebuilds model
 * `name`. Everything is checked before anything is built: the weight specs against the size of
 * weights.bin (read no further than that), the layers against the specs (node/run/topology.ts),
 * and the weights for NaN or infinite values (a diverged training).
 */
export async function loadModelFiles(
  dir: string,
  name: string,
  folder = '',
  /** The manifest the files must match as they are read (loadRun). */
  listed?: Manifest,
): Promise<Net> {
  const rel = (file: string) => (folder ? `${folder}/${file}` : file);
  const modelFile = path.join(dir, rel(MODEL_FILE));
  const modelJson = await readJson<{ format?: string; modelTopology: object; weightsManifest?: unknown }>(
    dir,
    rel(MODEL_FILE),
    'model',
    LIMITS.model,
    listed,
  );
  const { specs, values, bytes: expectedBytes } = weightSpecsOf(dir, modelJson, modelFile);
  const weightsPath = path.join(dir, rel(WEIGHTS_FILE));
  const weights = await readRunFile(dir, rel(WEIGHTS_FILE), LIMITS.weights, 'the weights', (size) => {
    checkListedSize(dir, rel(WEIGHTS_FILE), size, listed);
    if (size !== expectedBytes)
      throw new UserError(
        `${weightsPath}: ${size} bytes but model.json needs ${expectedBytes}; the weights are corrupt or truncated`,
      );
  });
  if (!weights) throw new UserError(`${weightsPath} is missing; the run directory is incomplete`);
  checkListed(dir, rel(WEIGHTS_FILE), weights, listed);
  // Models outside tfjs-layers (softmax-scratch, knn) build from the specs alone, which now
  // match the file; a layers model builds its topology first, so that is checked against them.
  if (!('imgclf' in (modelJson.modelTopology ?? {})))
    checkTopology(modelJson.modelTopology, values, modelFile);
  const weightData = weights.buffer.slice(
    weights.byteOffset,
    weights.byteOffset + weights.length,
  ) as ArrayBuffer;
  if (specs.every((w) => w.dtype === undefined || w.dtype === 'float32')) {
    const floats = new Float32Array(weightData);
    for (let i = 0; i < floats.length; i++) {
      if (!Number.isFinite(floats[i])) {
        throw new UserError(
          `${weightsPath} holds NaN or infinite weights (the training diverged); retrain with a lower --lr`,
        );
      }
    }
  }
  try {
    return await loadNet(name, { modelTopology: modelJson.modelTopology, weightSpecs: specs, weightData });
  } catch (err) {
    throw new UserError(`${modelFile}: cannot build the model (${(err as Error).message})`);
  }
}

export interface LoadedCheckpoint {
  net: Net;
  fit: FitState;
  optimizerName: string;
  optimizerState: OptimizerState;
  /** What the checkpoint was made for (absent in checkpoints written before it was recorded). */
  identity: Partial<CheckpointIdentity>;
}

/** Reads `dir/checkpoint/` written by checkpointFiles for model `name`. */
export async function loadCheckpoint(dir: string, name: string): Promise<LoadedCheckpoint> {
  const cdir = path.join(dir, CHECKPOINT_DIR);
  await openRun(dir, CHECKPOINT_DIR);
  if (!existsSync(path.join(cdir, STATE_FILE)))
    throw new UserError(`${dir} has no checkpoint to resume (${path.join(cdir, STATE_FILE)} is missing)`);
  const file = await readJson<CheckpointFile>(
    dir,
    `${CHECKPOINT_DIR}/${STATE_FILE}`,
    'checkpoint state',
    LIMITS.state,
  );
  if (file.model !== undefined && file.model !== name) {
    throw new UserError(
      `${path.join(cdir, STATE_FILE)} is a checkpoint of model '${file.model}', not '${name}'; it cannot be resumed as this run`,
    );
  }
  const shapes = file.optimizer?.slotShapes ?? [];
  if (
    !Array.isArray(shapes) ||
    !shapes.every((sh) => Array.isArray(sh) && sh.every((d) => Number.isSafeInteger(d) && d >= 0))
  )
    throw new UserError(
      `${path.join(cdir, STATE_FILE)}: the optimizer's slot shapes are corrupt; restore the run`,
    );
  const need = shapes.reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
  const optimizerPath = path.join(cdir, OPTIMIZER_FILE);
  const bytes = await readRunFile(
    dir,
    `${CHECKPOINT_DIR}/${OPTIMIZER_FILE}`,
    LIMITS.weights,
    'the optimizer state',
    (size) => {
      if (size !== need * 4)
        throw new UserError(`${optimizerPath}: ${size} bytes but state.json needs ${need * 4}`);
    },
  );
  if (!bytes) throw new UserError(`${optimizerPath} is missing; the checkpoint is incomplete`);
  const net = await loadModelFiles(dir, name, CHECKPOINT_DIR);
  const flat = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  let o = 0;
  const slots = shapes.map((sh) => {
    const n = sh.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.subarray(o, o + n), sh, 'float32');
    o += n;
    return t;
  });
  return {
    net,
    fit: file.fit,
    optimizerName: file.optimizer.name,
    optimizerState: { step: file.optimizer.step, slots },
    identity: { model: file.model, classNames: file.classNames, inputShape: file.inputShape },
  };
}

/**
 * The run directory: everything `evaluate`, `predict`, `report` and `serve` need, and nothing
 * else to remember (as nanoGPT checkpoints are):
 *
 *   model.json + weights.bin   the network, in TensorFlow.js layers format (softmax-scratch:
 *                              the same files, with its own small topology)
 *   metadata.json              class names, input shape, preprocessing, resolved config, versions
 *   metrics.jsonl              one line of metrics per epoch
 *   final/                     with --val-split: the last epoch's model (the top level holds the
 *                              epoch with the best validation accuracy)
 *   checkpoint/                model, optimizer state and loop state to --resume the run
 *
 * Every file is written atomically, so an interrupted run keeps its last complete state.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import type { ImageShape } from '../../core/data/dataset.js';
import type { DataSource, Preprocessing } from '../../core/data/source.js';
import { writeFileAtomic } from '../fs.js';
import { loadNet, type Net } from '../../core/models/index.js';
import type { EpochMetrics, FitState } from '../../core/train/loop.js';
import type { OptimizerState } from '../../core/optim/optimizers.js';
import { VERSION } from '../../core/version.js';

export type { Preprocessing };

export const RUN_FORMAT = 'imgclf-run/1';

export interface RunMetadata {
  format: string;
  /** Registered model name, e.g. "softmax". */
  model: string;
  dataset: string;
  classNames: string[];
  inputShape: ImageShape;
  preprocessing: Preprocessing;
  /** Where the training data came from, so evaluate/predict/report reload the same splits. */
  data?: DataSource;
  /** The resolved training config. */
  config: Record<string, unknown>;
  backend: string;
  imgclfVersion: string;
  tfjsVersion: string;
  created: string;
  /** Test accuracy of the saved model (with a validation split: of the best epoch). */
  testAccuracy?: number;
  /** With a validation split: the epoch kept at the top level, and the last epoch's test accuracy. */
  bestEpoch?: number;
  finalTestAccuracy?: number;
}

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const METADATA_FILE = 'metadata.json';
export const METRICS_FILE = 'metrics.jsonl';

export const FINAL_DIR = 'final';
export const CHECKPOINT_DIR = 'checkpoint';
const OPTIMIZER_FILE = 'optimizer.bin';
const STATE_FILE = 'state.json';

/** Saves the model (model.json + weights.bin) into `dir`, each file atomically. */
export async function saveModel(model: Net, dir: string): Promise<void> {
  const artifacts = await model.artifacts();
  const modelJson = {
    // Models outside tfjs-layers (softmax-scratch) name themselves in their topology.
    format: 'imgclf' in artifacts.modelTopology ? 'imgclf-net' : 'layers-model',
    generatedBy: `imgclf ${VERSION}`,
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [`./${WEIGHTS_FILE}`], weights: artifacts.weightSpecs }],
  };
  await mkdir(dir, { recursive: true });
  // Weights first: a crash between the two writes leaves the old model.json pointing at
  // weights of the same shapes, never a model.json whose weights are missing.
  await writeFileAtomic(path.join(dir, WEIGHTS_FILE), new Uint8Array(artifacts.weightData));
  await writeFileAtomic(path.join(dir, MODEL_FILE), JSON.stringify(modelJson));
}

export async function saveMetadata(dir: string, meta: RunMetadata): Promise<void> {
  await writeFileAtomic(path.join(dir, METADATA_FILE), JSON.stringify(meta, null, 2) + '\n');
}

export async function saveMetrics(dir: string, history: EpochMetrics[]): Promise<void> {
  await writeFileAtomic(
    path.join(dir, METRICS_FILE),
    history.map((m) => JSON.stringify(m)).join('\n') + '\n',
  );
}

export interface LoadedRun {
  dir: string;
  model: Net;
  metadata: RunMetadata;
  metrics: EpochMetrics[];
}

async function readJson<T>(file: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UserError(`${file} is missing; is this a run directory written by 'imgclf train'?`);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new UserError(
      `${file}: ${what} is not valid JSON (corrupt or truncated); retrain or restore the run`,
    );
  }
}

/** Loads a run directory written by `imgclf train`, validating each part. */
export async function loadRun(dir: string): Promise<LoadedRun> {
  if (!existsSync(dir))
    throw new UserError(`run directory ${dir} does not exist; train one with 'imgclf train --out ${dir}'`);
  const metadata = await readJson<RunMetadata>(path.join(dir, METADATA_FILE), 'metadata');
  if (
    metadata.format !== RUN_FORMAT ||
    !Array.isArray(metadata.classNames) ||
    !Array.isArray(metadata.inputShape)
  ) {
    throw new UserError(`${path.join(dir, METADATA_FILE)}: not an imgclf run (format '${metadata.format}')`);
  }
  const model = await loadModelFiles(dir, metadata.model);
  const metrics = existsSync(path.join(dir, METRICS_FILE))
    ? (await readFile(path.join(dir, METRICS_FILE), 'utf8'))
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as EpochMetrics)
    : [];
  return { dir, model, metadata, metrics };
}

/** Reads model.json + weights.bin from `dir` and rebuilds model `name`, validating sizes. */
export async function loadModelFiles(dir: string, name: string): Promise<Net> {
  const modelJson = await readJson<{
    modelTopology: object;
    weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
  }>(path.join(dir, MODEL_FILE), 'model');
  const weightsPath = path.join(dir, WEIGHTS_FILE);
  let weights: Buffer;
  try {
    weights = await readFile(weightsPath);
  } catch {
    throw new UserError(`${weightsPath} is missing; the run directory is incomplete`);
  }
  const specs = modelJson.weightsManifest?.flatMap((g) => g.weights) ?? [];
  const expectedBytes = specs.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (weights.length !== expectedBytes) {
    throw new UserError(
      `${weightsPath}: ${weights.length} bytes but model.json needs ${expectedBytes}; the weights are corrupt or truncated`,
    );
  }
  try {
    return await loadNet(name, {
      modelTopology: modelJson.modelTopology,
      weightSpecs: specs,
      weightData: weights.buffer.slice(
        weights.byteOffset,
        weights.byteOffset + weights.length,
      ) as ArrayBuffer,
    });
  } catch (err) {
    throw new UserError(`${path.join(dir, MODEL_FILE)}: cannot build the model (${(err as Error).message})`);
  }
}

interface CheckpointFile {
  fit: FitState;
  optimizer: { name: string; step: number; slotShapes: number[][] };
}

/**
 * Writes `dir/checkpoint/`: the model, the optimizer's slots (optimizer.bin, float32) and the
 * loop state (state.json). state.json is written last, so it never points at missing parts.
 */
export async function saveCheckpoint(
  dir: string,
  net: Net,
  optimizer: { name: string; getState(): OptimizerState },
  fit: FitState,
): Promise<void> {
  const cdir = path.join(dir, CHECKPOINT_DIR);
  await saveModel(net, cdir);
  const state = optimizer.getState();
  const parts = state.slots.map((t) => t.dataSync() as Float32Array);
  const total = parts.reduce((s, p) => s + p.length, 0);
  const flat = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    flat.set(p, o);
    o += p.length;
  }
  const file: CheckpointFile = {
    fit,
    optimizer: { name: optimizer.name, step: state.step, slotShapes: state.slots.map((t) => t.shape) },
  };
  state.slots.forEach((t) => t.dispose());
  await writeFileAtomic(path.join(cdir, OPTIMIZER_FILE), new Uint8Array(flat.buffer));
  await writeFileAtomic(path.join(cdir, STATE_FILE), JSON.stringify(file));
}

export interface LoadedCheckpoint {
  net: Net;
  fit: FitState;
  optimizerName: string;
  optimizerState: OptimizerState;
}

/** Reads `dir/checkpoint/` written by saveCheckpoint for model `name`. */
export async function loadCheckpoint(dir: string, name: string): Promise<LoadedCheckpoint> {
  const cdir = path.join(dir, CHECKPOINT_DIR);
  if (!existsSync(path.join(cdir, STATE_FILE)))
    throw new UserError(`${dir} has no checkpoint to resume (${path.join(cdir, STATE_FILE)} is missing)`);
  const file = await readJson<CheckpointFile>(path.join(cdir, STATE_FILE), 'checkpoint state');
  const bytes = await readFile(path.join(cdir, OPTIMIZER_FILE)).catch(() => {
    throw new UserError(`${path.join(cdir, OPTIMIZER_FILE)} is missing; the checkpoint is incomplete`);
  });
  const shapes = file.optimizer?.slotShapes ?? [];
  const need = shapes.reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
  if (bytes.length !== need * 4)
    throw new UserError(
      `${path.join(cdir, OPTIMIZER_FILE)}: ${bytes.length} bytes but state.json needs ${need * 4}`,
    );
  const flat = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  let o = 0;
  const slots = shapes.map((sh) => {
    const n = sh.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.subarray(o, o + n), sh, 'float32');
    o += n;
    return t;
  });
  const net = await loadModelFiles(cdir, name);
  return {
    net,
    fit: file.fit,
    optimizerName: file.optimizer.name,
    optimizerState: { step: file.optimizer.step, slots },
  };
}

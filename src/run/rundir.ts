/**
 * The run directory: everything `evaluate`, `predict`, `report` and `serve` need, and nothing
 * else to remember (as nanoGPT checkpoints are):
 *
 *   model.json + weights.bin   the network, in TensorFlow.js layers format
 *   metadata.json              class names, input shape, preprocessing, resolved config, versions
 *   metrics.jsonl              one line of metrics per epoch
 *
 * Every file is written atomically, so an interrupted run keeps its last complete state.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { ImageShape } from '../data/dataset.js';
import type { DataSource } from '../data/load.js';
import { writeFileAtomic } from '../util/fs.js';
import type { EpochMetrics } from '../train/loop.js';
import { VERSION } from '../version.js';

export const RUN_FORMAT = 'imgclf-run/1';

export interface Preprocessing {
  /** Pixels are divided by this (255) so inputs are in [0, 1]. */
  scale: number;
  /** Photos with a light background are inverted, to look like the dataset's dark one. */
  invertLightBackground: boolean;
  /** How an image of another size becomes inputShape: letterbox, stretch, or crop the centre. */
  resize: 'contain' | 'fill' | 'cover';
}

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
  /** Final test accuracy, when training finished. */
  testAccuracy?: number;
}

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const METADATA_FILE = 'metadata.json';
export const METRICS_FILE = 'metrics.jsonl';

/** Saves the model (model.json + weights.bin) into `dir`, each file atomically. */
export async function saveModel(model: tfl.LayersModel, dir: string): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = tf.io.concatenateArrayBuffers(
        artifacts.weightData === undefined ? [] : ([] as ArrayBuffer[]).concat(artifacts.weightData),
      );
      const modelJson = {
        format: 'layers-model',
        generatedBy: `imgclf ${VERSION}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [`./${WEIGHTS_FILE}`], weights: artifacts.weightSpecs }],
      };
      // Weights first: a crash between the two writes leaves the old model.json pointing at
      // weights of the same shapes, never a model.json whose weights are missing.
      await writeFileAtomic(path.join(dir, WEIGHTS_FILE), new Uint8Array(weightData));
      await writeFileAtomic(path.join(dir, MODEL_FILE), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
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
  model: tfl.LayersModel;
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
  let model: tfl.LayersModel;
  try {
    model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: specs,
        weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
      }),
    );
  } catch (err) {
    throw new UserError(`${path.join(dir, MODEL_FILE)}: cannot build the model (${(err as Error).message})`);
  }
  const metrics = existsSync(path.join(dir, METRICS_FILE))
    ? (await readFile(path.join(dir, METRICS_FILE), 'utf8'))
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as EpochMetrics)
    : [];
  return { dir, model, metadata, metrics };
}

/**
 * The run directory's format, shared by the CLI (node/run/rundir.ts, node/run/save.ts) and the
 * page (web/src/run-files.ts), which writes and reads run directories in the browser: the file
 * names, model.json, metadata.json, metrics.jsonl and manifest.json. Browser-safe: no file
 * access here, only what the files hold.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ImageShape } from './data/dataset.js';
import type { DataSource, Preprocessing } from './data/source.js';
import type { NetArtifacts } from './models/net.js';
import type { EpochMetrics, KeptEpoch } from './train/loop.js';
import { VERSION } from './version.js';

/** metadata.json `format` of every run directory imgclf writes and reads. */
export const RUN_FORMAT = 'imgclf-run/1';

/** The network, in TensorFlow.js layers format: topology and weight specs... */
export const MODEL_FILE = 'model.json';
/** ...and the weights model.json lists, as one file. */
export const WEIGHTS_FILE = 'weights.bin';
/** What the run is (RunMetadataBase). */
export const METADATA_FILE = 'metadata.json';
/** One line of EpochMetrics per epoch. */
export const METRICS_FILE = 'metrics.jsonl';
/** Every file of the last complete save with its size and SHA-256 (Manifest). */
export const MANIFEST_FILE = 'manifest.json';
/** manifest.json `format`. */
export const MANIFEST_FORMAT = 'imgclf-manifest/1';

/** One file of a save, as manifest.json lists it. */
export interface ManifestEntry {
  size: number;
  /** Lowercase hex. */
  sha256: string;
}

/** manifest.json: a save is the files it lists, and a load checks each of them against it. */
export interface Manifest {
  format: string;
  /** Epochs finished when the save was made (0 before the first). */
  epoch: number;
  saved: string;
  /** Every file of the run, by path relative to the run directory ('/'-separated). */
  files: Record<string, ManifestEntry>;
}

const wellFormed = (e: unknown): e is ManifestEntry =>
  typeof e === 'object' &&
  e !== null &&
  Number.isSafeInteger((e as ManifestEntry).size) &&
  (e as ManifestEntry).size >= 0 &&
  /^[0-9a-f]{64}$/.test(String((e as ManifestEntry).sha256));

/**
 * Whether parsed manifest.json content is an imgclf manifest with a size and a SHA-256 for
 * every file. The paths it lists are not checked here: whoever reads files by them must.
 */
export function isManifest(m: unknown): m is Manifest {
  const files = (m as Partial<Manifest> | undefined)?.files;
  return (
    typeof m === 'object' &&
    m !== null &&
    (m as Partial<Manifest>).format === MANIFEST_FORMAT &&
    typeof files === 'object' &&
    files !== null &&
    !Array.isArray(files) &&
    Object.values(files).every(wellFormed)
  );
}

/** manifest.json's text. */
export function manifestText(m: Manifest): string {
  return JSON.stringify(m, null, 1) + '\n';
}

/** model.json of a network, pointing at WEIGHTS_FILE, as `imgclf train` and the page write it. */
export function modelJsonOf(artifacts: NetArtifacts): {
  format: string;
  generatedBy: string;
  convertedBy: null;
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
} {
  return {
    // Models outside tfjs-layers (softmax-scratch) name themselves in their topology.
    format: 'imgclf' in artifacts.modelTopology ? 'imgclf-net' : 'layers-model',
    generatedBy: `imgclf ${VERSION}`,
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [`./${WEIGHTS_FILE}`], weights: artifacts.weightSpecs }],
  };
}

/** metadata.json's text. */
export function metadataText(meta: RunMetadataBase): string {
  return JSON.stringify(meta, null, 2) + '\n';
}

/** metrics.jsonl's text: one JSON line per epoch. */
export function metricsText(history: EpochMetrics[]): string {
  return history.map((m) => JSON.stringify(m)).join('\n') + '\n';
}

/**
 * A run directory's metadata.json: what evaluate, predict, report and serve need besides the
 * weights. Browser-safe, so the page writes the same format the CLI reads.
 */
export interface RunMetadataBase<Backbone extends object = object> {
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
  /** What the defaults chose from the data's size (batch size, epochs), when they did. */
  sizedToData?: string;
  backend: string;
  /** Training threads the run used (1 = the main thread alone; the page always trains on one). */
  workers?: number;
  imgclfVersion: string;
  tfjsVersion: string;
  created: string;
  /** Test accuracy of the saved model (with a validation split: of the best epoch). */
  testAccuracy?: number;
  /** With a validation split: the epoch kept at the top level, and the last epoch's test accuracy. */
  bestEpoch?: number;
  finalTestAccuracy?: number;
  /** Early stopping ended the run after `epoch`, `patience` epochs after its best one. */
  stoppedEarly?: { epoch: number; patience: number };
  /**
   * Transfer learning: the frozen backbone the head (model.json) runs on (its record is
   * node/backbone's `BackboneRecord`). `inputShape` is the backbone's; the head takes its features.
   */
  backbone?: Backbone;
  /**
   * Fine-tuning (--fine-tune), once its second phase has saved: model.json is backbone and head
   * as one network (the backbone's weights changed), and this says where it came from. Such a
   * run has no `backbone` field: nothing is loaded besides model.json.
   */
  fineTuned?: FineTuneRecord<Backbone>;
}

/** Where a fine-tuned model came from, and how it was trained (metadata.json `fineTuned`). */
export interface FineTuneRecord<Backbone extends object = object> {
  /** The pretrained backbone as the run found it (source, SHA-256, feature layer, ...). */
  backbone: Backbone;
  /** --fine-tune: how many weighted layers were unfrozen, or all. */
  layers: number | 'all';
  /** The unfrozen backbone layers, in order. */
  unfrozen: string[];
  /** Epochs of the head alone on cached features (phase 1), then of both together (phase 2). */
  headEpochs: number;
  epochs: number;
  /** Phase 2's rates: the head's, and the unfrozen backbone layers' (last and earliest). */
  lr: { head: number; last: number; earliest: number };
  /** Whether unfrozen batch-norm layers trained their statistics (--fine-tune-bn). */
  bn: boolean;
}

/** The fields `runMetadata` fills in itself. */
type Stamped =
  | 'format'
  | 'imgclfVersion'
  | 'tfjsVersion'
  | 'created'
  | 'testAccuracy'
  | 'bestEpoch'
  | 'finalTestAccuracy'
  | 'stoppedEarly';

/**
 * What a run is, as its metadata records it; `runMetadata` adds the format and versions, and
 * the date unless given (a session keeps its start date across its saves).
 */
export type RunRecord<Backbone extends object = object> = Omit<RunMetadataBase<Backbone>, Stamped> & {
  created?: string;
};

/** How the training went, for the accuracy a run reports. */
export interface RunOutcome {
  /** The epoch the run keeps (core/train/loop.ts keptEpoch). */
  kept: KeptEpoch;
  /** The last epoch's test accuracy (recorded beside the kept one when they differ). */
  finalTestAccuracy?: number;
  /** Early stopping ended the run after `epoch`, `patience` epochs after its best one. */
  stoppedEarly?: { epoch: number; patience: number };
}

/**
 * metadata.json of a run: the one builder the session, the library's `saveRun` and the page
 * use, so the three write the same fields and report the kept epoch's test accuracy.
 */
export function runMetadata<Backbone extends object = object>(
  record: RunRecord<Backbone>,
  outcome?: RunOutcome,
): RunMetadataBase<Backbone> {
  const kept = outcome?.kept;
  return {
    ...record,
    format: RUN_FORMAT,
    imgclfVersion: VERSION,
    tfjsVersion: tf.version_core,
    created: record.created ?? new Date().toISOString(),
    ...(kept ? { testAccuracy: kept.testAccuracy } : {}),
    ...(kept?.byValidation
      ? {
          bestEpoch: kept.epoch,
          finalTestAccuracy: outcome?.finalTestAccuracy,
          ...(outcome?.stoppedEarly ? { stoppedEarly: outcome.stoppedEarly } : {}),
        }
      : {}),
  };
}

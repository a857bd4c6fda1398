/** The run directory's format, shared by the CLI (node/run/rundir.ts) and the page. */
import * as tf from '@tensorflow/tfjs-core';
import type { ImageShape } from './data/dataset.js';
import type { DataSource, Preprocessing } from './data/source.js';
import type { KeptEpoch } from './train/loop.js';
import { VERSION } from './version.js';

export const RUN_FORMAT = 'imgclf-run/1';

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

/** The run directory's format, shared by the CLI (node/run/rundir.ts) and the page. */
import type { ImageShape } from './data/dataset.js';
import type { DataSource, Preprocessing } from './data/source.js';

export const RUN_FORMAT = 'imgclf-run/1';

/**
 * A run directory's metadata.json: what evaluate, predict, report and serve need besides the
 * weights. Browser-safe, so the page writes the same format the CLI reads.
 */
export interface RunMetadataBase {
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
  backbone?: object;
}

/**
 * What the route modules share: the server's options, the run they serve and the lazy loader
 * of the run's data. It sits below app.ts and routes/, so neither imports the other back.
 */
import type { ImageShape } from '../core/data/dataset.js';
import type { LoadedRun, RunMetadata } from '../node/run/rundir.js';
import type { RawDataset } from './data.js';

export interface ServerOptions {
  run: LoadedRun;
  /** Largest accepted image (and request body), in bytes. */
  maxUploadBytes: number;
  /** Most images in one POST /api/predict/batch. */
  maxBatch?: number;
  /** Folder with the built page (web/dist); null or missing = API only. */
  webRoot?: string | null;
  /** Dataset folder of a built-in set, for the data and gallery routes (default: the usual search chain). */
  dataDir?: string;
  /** tfjs backend in use, reported by /api/health. */
  backend?: string;
  logger?: boolean;
}

/** Handed to every route module's register function. */
export interface ServerContext {
  opts: ServerOptions;
  run: LoadedRun;
  meta: RunMetadata;
  /** The model's input shape. */
  shape: ImageShape;
  /** Class names, index = label. */
  names: string[];
  maxBatch: number;
  /** maxUploadBytes in MB, as messages and descriptions state it. */
  limitMb: number;
  /**
   * The run's own data, loaded on first use and kept. `purpose` ends the 404 message when the
   * data is not available, e.g. "the gallery needs the run's test images".
   */
  dataset(purpose: string): Promise<RawDataset>;
}

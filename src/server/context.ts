/**
 * What the route modules share: the server's options, the run they serve, the lazy loader of
 * the run's data and the inference limiter. It sits below app.ts and routes/, so neither
 * imports the other back.
 */
import type { ImageShape } from '../core/data/dataset.js';
import type { Engine } from '../node/export/engine.js';
import type { LoadedRun, RunMetadata } from '../node/run/rundir.js';
import type { RawDataset } from './data.js';
import type { DecodeBudget, InferenceLimiter, ServerTimeouts } from './limits.js';

export interface ServerOptions {
  run: LoadedRun;
  /** Largest accepted image (and raw request body), in bytes. */
  maxUploadBytes: number;
  /**
   * Largest accepted request as a whole (all the files of a multipart form together), in bytes;
   * default twice maxUploadBytes. Must be at least maxUploadBytes.
   */
  maxRequestBytes?: number;
  /** Most images in one POST /api/predict/batch. */
  maxBatch?: number;
  /**
   * Requests decoding or classifying at once (the rest wait in the queue); default twice the
   * number of CPU cores.
   */
  maxConcurrent?: number;
  /** Requests that may wait for a slot; one more answers 503 with Retry-After. Default 64. */
  maxQueue?: number;
  /**
   * What one request may make the server decode: formats (SVG only with allowSvg), pixels per
   * image and per request, seconds per image and per request (limits.ts has the defaults).
   */
  decode?: Partial<DecodeBudget>;
  /**
   * A shared secret: when set, every /api route but /api/health answers 401 unless the request
   * carries `Authorization: Bearer <token>` (the page takes it from `#token=` in its address).
   */
  token?: string;
  /** Downloads of the run's data (/api/data/:split/images|labels) served at once; beyond, 503. Default 4. */
  maxDownloads?: number;
  /** How long a failed load of the run's data is remembered before a request tries again, in ms. Default 30000. */
  dataRetryMs?: number;
  /** Socket timeouts, in ms (limits.ts has the defaults and why). Tests pass short ones. */
  timeouts?: Partial<ServerTimeouts>;
  /**
   * The address the server will listen on (default 127.0.0.1). A loopback address (127.x.x.x,
   * ::1, localhost) makes the server answer only requests whose Host is a loopback name,
   * against DNS rebinding; any other address accepts any Host.
   */
  host?: string;
  /** Folder with the built page (web/dist); null or missing = API only. */
  webRoot?: string | null;
  /** Dataset folder of a built-in set, for the data and gallery routes (default: the usual search chain). */
  dataDir?: string;
  /** tfjs backend in use, reported by /api/health. */
  backend?: string;
  /** What answers the predict routes (node/export/engine.ts); default the run's tfjs model. */
  engine?: Engine;
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
  /** The cap on a whole request, in bytes and in MB. */
  maxRequestBytes: number;
  requestLimitMb: number;
  /** What one request may decode (formats, pixels, seconds). */
  decode: DecodeBudget;
  /** Decoding and classifying go through it: a few at once, a bounded queue, 503 beyond. */
  limiter: InferenceLimiter;
  /** Runs the model for the predict routes: tfjs or ONNX Runtime. */
  engine: Engine;
  /**
   * The run's own data, loaded on first use and kept. `purpose` ends the 404 message when the
   * data is not available, e.g. "the gallery needs the run's test images".
   */
  dataset(purpose: string): Promise<RawDataset>;
  /** Downloads of the run's data in progress, and the most at once. */
  downloads: { running: number; max: number };
}

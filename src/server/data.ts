/**
 * The run's data as the server hands it out: reloaded from the source the run's metadata records
 * (node/run/data.ts: the image folder, CSV or built-in set the model was trained on, resized as
 * it was), once per server on first use, and kept as bytes (0..255) so a page can download
 * 60000 images as 47 MB of IDX instead of 188 MB of floats. A request never starts a download:
 * a built-in set that is not on this machine is a 404 that says how to fetch it.
 */
import { IDX_DATASET_NAMES } from '../core/data/classes.js';
import { imageSize, type ImageShape, type Pixels, type Split } from '../core/data/dataset.js';
import { UserError } from '../core/errors.js';
import { loadRunData } from '../node/run/data.js';
import type { RunMetadata } from '../node/run/rundir.js';
import { HttpError } from './errors.js';
import { stripPaths } from './paths.js';

export interface RawSplit {
  /** N * H * W * C bytes. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface RawDataset {
  name: string;
  classNames: string[];
  shape: ImageShape;
  train: RawSplit;
  test: RawSplit;
}

export type SplitName = 'train' | 'test';

function toBytes(images: Pixels): Uint8Array {
  // Decoded data is held as bytes already; resized data (--resize) is interpolated floats,
  // rounded to the nearest byte.
  if (images instanceof Uint8Array) return images;
  const out = new Uint8Array(images.length);
  for (let i = 0; i < images.length; i++) out[i] = Math.round(images[i] * 255);
  return out;
}

const rawSplit = (s: Split): RawSplit => ({ images: toBytes(s.images), labels: s.labels, count: s.count });

/** Why the metadata names no data source that can be loaded; undefined when it names one. */
function unusableSource(meta: RunMetadata): string | undefined {
  const data = meta.data as { kind?: unknown; path?: unknown; dataset?: unknown } | undefined;
  if (data === undefined) {
    // Runs from before sources were recorded were trained on a built-in set, named by `dataset`.
    if ((IDX_DATASET_NAMES as readonly string[]).includes(meta.dataset)) return undefined;
    return `its metadata.json records no data source, and '${meta.dataset}' is no built-in dataset`;
  }
  if (data.kind === 'idx' && typeof data.dataset === 'string') return undefined;
  if ((data.kind === 'folder' || data.kind === 'csv') && typeof data.path === 'string') return undefined;
  return `its metadata.json has an unusable data source (${JSON.stringify(data)})`;
}

/**
 * Loads the data the run was trained on (`dataDir` overrides a built-in set's folder) as bytes,
 * without downloading a missing built-in set.
 */
export async function loadRawDataset(
  meta: RunMetadata,
  dataDir?: string,
  runDir?: string,
): Promise<RawDataset> {
  const unusable = unusableSource(meta);
  if (unusable) throw new UserError(unusable);
  const dataset = await loadRunData(meta, dataDir, { download: false, runDir });
  return {
    name: dataset.name,
    classNames: dataset.classNames,
    shape: dataset.shape,
    train: rawSplit(dataset.train),
    test: rawSplit(dataset.test),
  };
}

/** Failures that mean the data is not there (gone, moved, changed, never downloaded), not a bug. */
function isUnavailable(err: unknown): err is Error {
  return (
    err instanceof UserError ||
    (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string')
  );
}

/**
 * The server's lazy loader of the run's data: the first call loads, later calls share the
 * result. A failure is not kept: the next request tries again, so data put back on disk is
 * served without a restart and every answer states the current reason. Missing data answers
 * 404 `this run's training data is not available (<reason>); <purpose>`, with the reason's
 * absolute paths cut to base names; anything else is a bug and stays a 500.
 */
export function runDataLoader(
  meta: RunMetadata,
  dataDir?: string,
  runDir?: string,
): (purpose: string) => Promise<RawDataset> {
  let loading: Promise<RawDataset> | undefined;
  return async (purpose) => {
    if (!loading) {
      const attempt = loadRawDataset(meta, dataDir, runDir);
      loading = attempt;
      attempt.catch(() => {
        if (loading === attempt) loading = undefined;
      });
    }
    try {
      return await loading;
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      const reason = stripPaths(err.message.replace(/\s*\n\s*/g, ' '));
      throw new HttpError(404, `this run's training data is not available (${reason}); ${purpose}`);
    }
  };
}

/** An uncompressed IDX file of unsigned bytes (the format core/data/idx.ts parses). */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const out = new Uint8Array(header.length + data.length);
  out.set(header);
  out.set(data, header.length);
  return out;
}

/** The first `limit` images of a split as an idx3 (one channel) or idx4 (H x W x C) file. */
export function imagesIdx(ds: RawDataset, split: SplitName, limit: number): Uint8Array {
  const s = ds[split];
  const n = Math.min(limit, s.count);
  const [h, w, c] = ds.shape;
  const dims = c === 1 ? [n, h, w] : [n, h, w, c];
  return encodeIdx(dims, s.images.subarray(0, n * imageSize(ds.shape)));
}

/** The first `limit` labels of a split as an idx1 file. */
export function labelsIdx(ds: RawDataset, split: SplitName, limit: number): Uint8Array {
  const s = ds[split];
  const n = Math.min(limit, s.count);
  return encodeIdx([n], s.labels.subarray(0, n));
}

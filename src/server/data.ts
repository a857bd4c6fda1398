/**
 * The run's data as the server hands it out: reloaded from the source the run's metadata records
 * (node/run/data.ts: the image folder, CSV or built-in set the model was trained on, resized as
 * it was), once per server on first use, and kept as bytes (0..255) so a page can download
 * 60000 images as 47 MB of IDX instead of 188 MB of floats. The bytes are kept inside the IDX
 * files themselves, built once: every download is a view of the same memory, never a copy. A
 * request never starts a download: a built-in set that is not on this machine is a 404 that
 * says how to fetch it.
 */
import { IDX_DATASET_NAMES } from '../core/data/classes.js';
import { imageSize, type ImageShape, type Pixels, type Split } from '../core/data/dataset.js';
import { UserError } from '../core/errors.js';
import { sourceEntry, sourceKinds } from '../node/data/load.js';
import { loadRunData } from '../node/run/data.js';
import type { RunMetadata } from '../node/run/rundir.js';
import { HttpError } from './errors.js';
import { baseName, stripPaths } from './paths.js';

export interface RawSplit {
  /** N * H * W * C bytes: a view into imagesFile. */
  images: Uint8Array;
  /** N labels: a view into labelsFile. */
  labels: Uint8Array;
  count: number;
  /** The whole split as an idx3 (one channel) or idx4 (H x W x C) file of unsigned bytes. */
  imagesFile: Uint8Array;
  /** Its labels as an idx1 file. */
  labelsFile: Uint8Array;
}

export interface RawDataset {
  name: string;
  classNames: string[];
  shape: ImageShape;
  train: RawSplit;
  test: RawSplit;
}

export type SplitName = 'train' | 'test';

/** The header of an uncompressed IDX file of unsigned bytes (the format core/data/idx.ts parses). */
export function idxHeader(dims: number[]): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  return header;
}

const imageDims = (n: number, [h, w, c]: ImageShape) => (c === 1 ? [n, h, w] : [n, h, w, c]);

/** An IDX file of `dims` with room for its data; the data's view is returned beside it. */
function idxFile(dims: number[], length: number): { file: Uint8Array; data: Uint8Array } {
  const header = idxHeader(dims);
  const file = new Uint8Array(header.length + length);
  file.set(header);
  return { file, data: file.subarray(header.length) };
}

function rawSplit(s: Split, shape: ImageShape): RawSplit {
  const images = idxFile(imageDims(s.count, shape), s.count * imageSize(shape));
  // Decoded data is held as bytes already; resized data (--resize) is interpolated floats,
  // rounded to the nearest byte.
  const src: Pixels = s.images;
  if (src instanceof Uint8Array) images.data.set(src.subarray(0, images.data.length));
  else for (let i = 0; i < images.data.length; i++) images.data[i] = Math.round(src[i] * 255);
  const labels = idxFile([s.count], s.count);
  labels.data.set(s.labels.subarray(0, s.count));
  return {
    images: images.data,
    labels: labels.data,
    count: s.count,
    imagesFile: images.file,
    labelsFile: labels.file,
  };
}

/** Why the metadata names no data source that can be loaded; undefined when it names one. */
function unusableSource(meta: RunMetadata): string | undefined {
  const data = meta.data as Record<string, unknown> | undefined;
  if (data === undefined) {
    // Runs from before sources were recorded were trained on a built-in set, named by `dataset`.
    if ((IDX_DATASET_NAMES as readonly string[]).includes(meta.dataset)) return undefined;
    return `its metadata.json records no data source, and '${meta.dataset}' is no built-in dataset`;
  }
  const kind = data.kind;
  if (typeof kind === 'string' && sourceKinds().includes(kind) && sourceEntry(kind).isRecorded(data))
    return undefined;
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
    train: rawSplit(dataset.train, dataset.shape),
    test: rawSplit(dataset.test, dataset.shape),
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
 * Reasons that say where the data is or is not, which an answer may quote. Any other reason
 * (the data was found but does not load: a CSV field, a label, the classes found) may quote the
 * content of whatever file metadata.json names, so answers do not repeat it.
 */
const LOCATING =
  /does not exist|is not on this machine|is a folder, not|is neither a folder|cannot read the file|permission denied|no such file|records no data source|unusable data source/i;

/** What a 404 may say of why the data is not available: paths cut to base names, file content left out. */
function publicReason(err: Error, meta: RunMetadata): string {
  const reason = stripPaths(err.message.replace(/\s*\n\s*/g, ' '));
  if (LOCATING.test(reason) || typeof (err as NodeJS.ErrnoException).syscall === 'string') return reason;
  const data = meta.data as { path?: unknown; dataset?: unknown } | undefined;
  const where = typeof data?.path === 'string' ? baseName(data.path) : String(data?.dataset ?? meta.dataset);
  return `the data at ${where} no longer loads as the run recorded it; the server's log, or 'imgclf evaluate' on this run, says why`;
}

export interface DataLoaderOptions {
  /** How long a failure is remembered, in ms (0: every request tries again). */
  retryMs?: number;
  /** Where the full reason of a failure goes (the server's log). */
  log?: (message: string) => void;
}

/**
 * The server's lazy loader of the run's data: the first call loads, later calls share the
 * result. A failure is remembered for `retryMs` (30 s by default), so that a data set that does
 * not load costs one attempt per interval, not one per request; after that the next request
 * tries again, so data put back on disk is served without a restart. Missing data answers
 * 404 `this run's training data is not available (<reason>); <purpose>`, with the reason's
 * absolute paths cut to base names and nothing quoted from the files; anything else is a bug
 * and stays a 500.
 */
export function runDataLoader(
  meta: RunMetadata,
  dataDir?: string,
  runDir?: string,
  opts: DataLoaderOptions = {},
): (purpose: string) => Promise<RawDataset> {
  const retryMs = opts.retryMs ?? 30_000;
  let loading: Promise<RawDataset> | undefined;
  let failedAt: number | undefined;
  return async (purpose) => {
    if (!loading || (failedAt !== undefined && Date.now() - failedAt >= retryMs)) {
      const attempt = loadRawDataset(meta, dataDir, runDir);
      loading = attempt;
      failedAt = undefined;
      attempt.catch((err: Error) => {
        if (loading !== attempt) return;
        failedAt = Date.now();
        opts.log?.(`the run's data does not load: ${err.message}`);
      });
    }
    try {
      return await loading;
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      throw new HttpError(
        404,
        `this run's training data is not available (${publicReason(err, meta)}); ${purpose}`,
      );
    }
  };
}

/**
 * The first `limit` images or labels of a split as an IDX file, in parts that are views of the
 * split's shared file: the whole file as it is, or a header for `limit` items and the first
 * `limit` items' bytes.
 */
export function idxParts(
  ds: RawDataset,
  split: SplitName,
  what: 'images' | 'labels',
  limit: number,
): Uint8Array[] {
  const s = ds[split];
  const file = what === 'images' ? s.imagesFile : s.labelsFile;
  if (limit >= s.count) return [file];
  const dims = what === 'images' ? imageDims(limit, ds.shape) : [limit];
  const row = what === 'images' ? imageSize(ds.shape) : 1;
  const data = what === 'images' ? s.images : s.labels;
  return [idxHeader(dims), data.subarray(0, limit * row)];
}

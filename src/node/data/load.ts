/**
 * Loading a dataset for the commands (Node only) from one description of its source, which the
 * run directory records, so `evaluate`, `predict`, `report` and `serve` reload exactly the data
 * a model was trained on:
 *   - idx:    a built-in IDX dataset (fashion-mnist, mnist, kmnist) via the source chain
 *   - folder: an image folder, one subfolder per class
 *   - csv:    a Kaggle-style `label,pixel1..pixelN` file
 */
import { type FileHandle, open } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { type CsvImages, csvClassNames, csvLabelIndices, ImageCsvParser } from '../../core/data/csv.js';
import { type Dataset, type ImageShape, type Split, splitFromBytes } from '../../core/data/dataset.js';
import { type DataSource, idxSource } from '../../core/data/source.js';
import { loadImageFolder, type SkippedFile } from './folder.js';
import type { FileReport } from '../checksum.js';
import { idxSpec, loadIdxDataset, type LocatedDataset } from './datasets.js';
import { heldOutSplit } from '../../core/data/split.js';
import { resizedShape, resizeSplit } from '../../core/data/transforms.js';

export { type DataSource, idxSource };

export interface LoadOptions {
  /** What to load; when absent, the IDX dataset named by `dataset`. */
  source?: DataSource;
  dataset?: string;
  dataDir?: string;
  resize?: number;
  /** Image folders: fail on an unreadable file instead of skipping it. */
  strict?: boolean;
  log?: (message: string) => void;
  /** Reuse decoded data from the user cache (default true). */
  decodedCache?: boolean;
  /** Built-in sets: download when missing (default true; the server passes false). */
  download?: boolean;
  /** Image folders: decoding progress (images done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface LoadedDataset {
  dataset: Dataset;
  /** The source with paths made absolute: what a run directory records. */
  source: DataSource;
  located: LocatedDataset;
  /** IDX files and their verification (empty for other sources). */
  files: FileReport[];
  /** Image-folder files that could not be decoded. */
  skipped: SkippedFile[];
  /** Image folders: whether the decoded tensors came from the cache. */
  cache?: 'hit' | 'miss';
  /** Held out from the training data as the test split, when the source has no test split. */
  heldOut: boolean;
  /** Seconds spent reading, verifying and parsing. */
  seconds: number;
}

export async function loadDataset(opts: LoadOptions): Promise<LoadedDataset> {
  const start = performance.now();
  const source = opts.source ?? idxSource(opts.dataset ?? 'fashion-mnist', opts.dataDir, opts.resize);
  const loaded =
    source.kind === 'idx'
      ? await loadIdx(source, opts)
      : source.kind === 'folder'
        ? await loadFolder(source, opts)
        : await loadCsv(source);
  return { ...loaded, seconds: (performance.now() - start) / 1000 };
}

type LoadedParts = Omit<LoadedDataset, 'seconds'>;

async function loadIdx(
  source: Extract<DataSource, { kind: 'idx' }>,
  opts: LoadOptions,
): Promise<LoadedParts> {
  const loaded = await loadIdxDataset(idxSpec(source.dataset), {
    dataDir: source.dataDir,
    log: opts.log,
    decodedCache: opts.decodedCache ?? true,
    download: opts.download,
  });
  for (const f of loaded.files) {
    if (f.verified) continue;
    opts.log?.(
      f.method === 'none'
        ? `warning: ${f.path} cannot be verified (only the published .gz has a known checksum)`
        : `warning: ${f.path} differs from the official release (sha256 ${f.sha256.slice(0, 12)}…)`,
    );
  }
  let dataset = loaded.dataset;
  if (source.resize) dataset = resizeDataset(dataset, source.resize);
  const dataDir = source.dataDir ? path.resolve(source.dataDir) : undefined;
  return { ...loaded, dataset, source: { ...source, dataDir }, skipped: [], heldOut: false };
}

function resizeDataset(dataset: Dataset, size: number): Dataset {
  const shape = dataset.shape;
  return {
    ...dataset,
    shape: resizedShape(shape, size),
    train: resizeSplit(dataset.train, shape, size),
    test: resizeSplit(dataset.test, shape, size),
  };
}

/** Holds out a stratified fraction of `all` as the test split. */
function holdOut(
  all: Split,
  shape: ImageShape,
  numClasses: number,
  fraction: number,
  seed: number,
  what: string,
): { train: Split; test: Split } {
  const { train, test } = heldOutSplit(all, shape, numClasses, fraction, seed);
  if (test.count === 0) {
    throw new UserError(
      `${what} has too few images to hold out a test split (--val-split ${fraction}); add images or a test set`,
    );
  }
  return { train, test };
}

async function loadFolder(
  source: Extract<DataSource, { kind: 'folder' }>,
  opts: LoadOptions,
): Promise<LoadedParts> {
  const folder = await loadImageFolder(source.path, {
    imageSize: source.imageSize,
    channels: source.channels,
    resizeMode: source.resizeMode,
    strict: opts.strict,
    log: opts.log,
    onProgress: opts.onProgress,
  });
  const { scan, shape } = folder;
  const n = scan.classNames.length;
  // Each example keeps its file's absolute path, so reports can name and link their mistakes.
  const withFiles = (part: typeof folder.train): Split => {
    const s = splitFromBytes(part.pixels, part.labels, n, scan.root);
    if (part.files) s.files = part.files.map((rel) => path.join(scan.root, ...rel.split('/')));
    return s;
  };
  const train = withFiles(folder.train);
  let split: { train: Split; test: Split };
  if (scan.layout === 'split') {
    split = { train, test: withFiles(folder.test) };
  } else {
    split = holdOut(train, shape, n, source.valSplit, source.seed, scan.root);
  }
  return {
    dataset: { name: path.basename(scan.root), classNames: scan.classNames, shape, ...split },
    source: { ...source, path: scan.root },
    located: {
      dir: scan.root,
      origin: `image folder, ${scan.layout === 'split' ? 'train/ and test/' : 'class folders'}`,
    },
    files: [],
    skipped: folder.skipped,
    cache: folder.cache,
    heldOut: scan.layout === 'flat',
  };
}

/** A read error as one line a user can act on. */
function readError(file: string, err: unknown): UserError {
  if (err instanceof UserError) return err;
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return new UserError(`${file} does not exist`);
    case 'EISDIR':
      return new UserError(`${file} is a folder, not a CSV file`);
    case 'EACCES':
    case 'EPERM':
      return new UserError(`${file}: cannot read the file (permission denied)`);
    default:
      return new UserError(`${file}: cannot read the file (${e.message})`);
  }
}

export interface ReadCsvOptions {
  /** Bytes read at a time (default 1 MiB); tests make it tiny to split lines and characters. */
  chunkSize?: number;
}

/**
 * Reads an image CSV by streaming it through the incremental parser: no string ever holds more
 * than a chunk or a line, so a file larger than V8's string limit (~512 MB) loads, and the
 * result is exactly `parseImageCsv` of the file's text.
 */
export async function readImageCsv(file: string, opts: ReadCsvOptions = {}): Promise<CsvImages> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw readError(file, err);
  }
  try {
    // open() succeeds on a folder (on Linux); say so before the first read fails with EISDIR.
    if ((await handle.stat()).isDirectory()) throw new UserError(`${file} is a folder, not a CSV file`);
  } catch (err) {
    await handle.close();
    throw readError(file, err);
  }
  // The stream owns the handle from here, and closes it when it ends or is destroyed.
  const stream = handle.createReadStream({ encoding: 'utf8', highWaterMark: opts.chunkSize ?? 1 << 20 });
  const parser = new ImageCsvParser(file);
  try {
    for await (const chunk of stream) parser.push(chunk as string);
  } catch (err) {
    stream.destroy();
    throw readError(file, err);
  }
  return parser.finish();
}

async function loadCsv(source: Extract<DataSource, { kind: 'csv' }>): Promise<LoadedParts> {
  const file = path.resolve(source.path);
  const trainCsv = await readImageCsv(file);
  const classNames = csvClassNames(trainCsv.labels);
  if (classNames.length < 2)
    throw new UserError(
      `${file}: every row has label '${classNames[0]}'; a classifier needs at least two classes`,
    );
  if (classNames.length > 256)
    throw new UserError(`${file}: ${classNames.length} distinct labels; at most 256 are supported`);
  const n = classNames.length;
  const shape = trainCsv.shape;
  const all = splitFromBytes(trainCsv.pixels, csvLabelIndices(trainCsv.labels, classNames, file), n, file);
  let split: { train: Split; test: Split };
  const testPath = source.testPath ? path.resolve(source.testPath) : undefined;
  if (testPath) {
    const testCsv = await readImageCsv(testPath);
    if (testCsv.shape.join('x') !== shape.join('x')) {
      throw new UserError(
        `${testPath} holds ${testCsv.shape.join('x')} images but ${file} holds ${shape.join('x')}`,
      );
    }
    const labels = csvLabelIndices(testCsv.labels, classNames, testPath);
    split = { train: all, test: splitFromBytes(testCsv.pixels, labels, n, testPath) };
  } else {
    split = holdOut(all, shape, n, source.valSplit, source.seed, file);
  }
  let dataset: Dataset = { name: path.basename(file, '.csv'), classNames, shape, ...split };
  if (source.resize) dataset = resizeDataset(dataset, source.resize);
  return {
    dataset,
    source: { ...source, path: file, testPath },
    located: { dir: path.dirname(file), origin: 'CSV file' },
    files: [],
    skipped: [],
    heldOut: !testPath,
  };
}

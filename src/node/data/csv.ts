/**
 * Kaggle-style CSV files as a data source (kind 'csv'): a header, then one `label,pixel1..pixelN`
 * row per image (core/data/csv.ts parses the text), with a separate test file or a held-out
 * fraction of the rows as the test split.
 */
import { type FileHandle, open } from 'node:fs/promises';
import path from 'node:path';
import { type CsvImages, csvClassNames, csvLabelIndices, ImageCsvParser } from '../../core/data/csv.js';
import { type Dataset, type Split, splitFromBytes } from '../../core/data/dataset.js';
import { type CsvSource, preprocessingByBorder } from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import { checkGrayInput, holdOut, registerSource, resizeDataset } from './sources.js';

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

registerSource<CsvSource>('csv', {
  async load(source) {
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
  },

  where: (source) => source.path,

  // A CSV may hold dark strokes on white or light on black: its images' border tells.
  preprocessing: (_source, train, shape) => preprocessingByBorder(train, shape),

  // A run downloaded from the page names its files relative to itself.
  fromRun(source, { runDir }) {
    if (!runDir || path.isAbsolute(source.path)) return source;
    const inRun = (p: string) => (path.isAbsolute(p) ? p : path.join(runDir, p));
    return { ...source, path: inRun(source.path), testPath: source.testPath && inRun(source.testPath) };
  },

  atInput: (source, input) => ({ ...source, resize: checkGrayInput(input, source.path) }),

  cacheIdentity: (source) => ({ kind: 'csv', path: source.path, test: source.testPath ?? null }),

  planChoices: (source) => ({
    dataKind: 'csv',
    data: source.path,
    testData: source.testPath,
    valSplit: source.valSplit,
    seed: source.seed,
    resize: source.resize,
  }),

  isRecorded: (data) => typeof data.path === 'string',
});

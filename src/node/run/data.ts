/**
 * A run and the data it was trained on, reloaded from the source its metadata records (an
 * image folder, a CSV, or a built-in set; runs from before sources were recorded name a
 * built-in set), checked against the run's class names and input shape.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { type Dataset, type Split, splitFromBytes } from '../../core/data/dataset.js';
import { type DataSource, idxSource } from '../../core/data/source.js';
import { resizeSplit } from '../../core/data/transforms.js';
import { loadImageFolder, scanImageFolder } from '../data/folder.js';
import { loadDataset, readImageCsv, sourceEntry } from '../data/load.js';
import { type LoadedRun, loadRun, type RunMetadata } from './rundir.js';

/**
 * The data source a run was trained on; `dataDir` overrides a built-in set's folder. A
 * relative path in the metadata (a run downloaded from the page keeps its images in `data/`
 * inside it) is taken relative to the run directory `runDir`, so the run can move.
 */
export function runDataSource(metadata: RunMetadata, dataDir?: string, runDir?: string): DataSource {
  const cfg = metadata.config as { dataDir?: string; resize?: number };
  const source = metadata.data ?? idxSource(metadata.dataset, cfg.dataDir, cfg.resize);
  return sourceEntry(source.kind).fromRun(source, { runDir, dataDir });
}

/**
 * Loads the run's data and checks that it still has the run's classes and input shape.
 * `download: false` fails with a clear message instead of downloading a missing built-in set.
 */
export async function loadRunData(
  metadata: RunMetadata,
  dataDir?: string,
  opts: { download?: boolean; runDir?: string } = {},
): Promise<Dataset> {
  const source = runDataSource(metadata, dataDir, opts.runDir);
  const { dataset } = await loadDataset({ source, download: opts.download });
  const names = metadata.classNames;
  if (dataset.classNames.join('\n') !== names.join('\n')) {
    throw new UserError(
      `the data at ${sourceEntry(source.kind).where(source)} now has classes ` +
        `${dataset.classNames.join(', ')} but the run was trained on ${names.join(', ')}`,
    );
  }
  if (dataset.shape.join('x') !== metadata.inputShape.join('x')) {
    throw new UserError(
      `the data is ${dataset.shape.join('x')} but the run expects ${metadata.inputShape.join('x')}`,
    );
  }
  return dataset;
}

/** A run directory and its data, for evaluate, predict and report. */
export async function loadRunWithData(
  dir: string,
  dataDir?: string,
  log?: (message: string) => void,
): Promise<{ run: LoadedRun; dataset: Dataset }> {
  const run = await loadRun(dir, log);
  return { run, dataset: await loadRunData(run.metadata, dataDir, { runDir: dir }) };
}

/** Labelled data other than a run's own, as one split in the run's classes and input shape. */
export interface LabelledData {
  split: Split;
  /** The data in a few words, for messages and the report. */
  where: string;
}

/**
 * Refuses data with a class the run does not know, in one line naming the differences; data
 * lacking some of the run's classes is scored as it is. Returns each data class's run index.
 */
function runIndices(dataClasses: string[], runClasses: string[], where: string): number[] {
  const unknown = dataClasses.filter((c) => !runClasses.includes(c));
  if (unknown.length)
    throw new UserError(
      `${where} has classes the run was not trained on: ${unknown.join(', ')} (the run's classes: ${runClasses.join(', ')})`,
    );
  return dataClasses.map((c) => runClasses.indexOf(c));
}

/**
 * Any labelled image folder or CSV file (`evaluate --data`), read for `metadata`'s run: every
 * image of a folder of class folders (or its test/ when it has train/ and test/), or every row
 * of a CSV, prepared as the run prepares a picture, with labels as the run's class indices.
 * Unreadable images are skipped with a warning, as in training.
 */
export async function loadLabelledData(
  metadata: RunMetadata,
  data: string,
  log?: (message: string) => void,
): Promise<LabelledData> {
  if (!existsSync(data))
    throw new UserError(`${data} does not exist; --data takes a folder of class folders or a .csv file`);
  const names = metadata.classNames;
  const shape = metadata.inputShape;
  if (statSync(data).isDirectory()) {
    // The classes are checked on the listing, before any image is decoded.
    const scan = await scanImageFolder(data, { log });
    const where = scan.layout === 'split' ? path.join(scan.root, 'test') : scan.root;
    const toRun = runIndices(scan.classNames, names, data);
    const folder = await loadImageFolder(data, {
      imageSize: shape[0],
      channels: shape[2] as 1 | 3,
      resizeMode: metadata.preprocessing.resize,
      preprocessing: metadata.preprocessing,
      log,
    });
    const part = scan.layout === 'split' ? folder.test : folder.train;
    const labels = part.labels.map((l) => toRun[l]);
    const split = splitFromBytes(part.pixels, labels, names.length, where);
    if (part.files) split.files = part.files.map((rel) => path.join(scan.root, ...rel.split('/')));
    return { split, where };
  }
  if (path.extname(data).toLowerCase() !== '.csv')
    throw new UserError(`${data} is neither a folder of class folders nor a .csv file`);
  const csv = await readImageCsv(data);
  const dataClasses = [...new Set(csv.labels)].sort();
  // Kaggle's CSVs of the built-in sets label by number: 0..n-1 are the run's classes in order.
  const byIndex =
    !dataClasses.some((c) => names.includes(c)) &&
    dataClasses.every((c) => /^\d+$/.test(c) && Number(c) < names.length);
  let labels: Uint8Array;
  if (byIndex) labels = Uint8Array.from(csv.labels, Number);
  else {
    const toRun = runIndices(dataClasses, names, data);
    const index = new Map(dataClasses.map((c, i) => [c, toRun[i]]));
    labels = Uint8Array.from(csv.labels, (l) => index.get(l)!);
  }
  if (byIndex) log?.(`${data}: numeric labels taken as the run's classes 0..${names.length - 1}`);
  let split = splitFromBytes(csv.pixels, labels, names.length, data);
  if (csv.shape.join('x') !== shape.join('x')) {
    // A gray CSV at another size is resized as training resizes one (--resize); nothing else fits.
    if (csv.shape[2] !== 1 || shape[2] !== 1 || shape[0] !== shape[1])
      throw new UserError(`${data} holds ${csv.shape.join('x')} images but the run takes ${shape.join('x')}`);
    split = resizeSplit(split, csv.shape, shape[0]);
  }
  return { split, where: data };
}

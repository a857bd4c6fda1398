/**
 * A run and the data it was trained on, reloaded from the source its metadata records (an
 * image folder, a CSV, or a built-in set; runs from before sources were recorded name a
 * built-in set), checked against the run's class names and input shape.
 */
import { UserError } from '../../core/errors.js';
import type { Dataset } from '../../core/data/dataset.js';
import { type DataSource, idxSource } from '../../core/data/source.js';
import { loadDataset, sourceEntry } from '../data/load.js';
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

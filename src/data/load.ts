/** Loading a dataset by name for the commands (Node only). */
import { UserError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { FASHION_MNIST, type FileReport, loadIdxDataset, type LocatedDataset } from './sources.js';
import { resizedShape, resizeSplit } from './transforms.js';

export interface LoadOptions {
  dataset: string;
  dataDir?: string;
  resize?: number;
  log?: (message: string) => void;
  /** Reuse decoded data from the user cache (default true). */
  decodedCache?: boolean;
}

export interface LoadedDataset {
  dataset: Dataset;
  located: LocatedDataset;
  files: FileReport[];
  /** Seconds spent reading, verifying and parsing. */
  seconds: number;
}

export async function loadDataset(opts: LoadOptions): Promise<LoadedDataset> {
  const start = performance.now();
  if (opts.dataset !== 'fashion-mnist')
    throw new UserError(`unknown dataset '${opts.dataset}'; choose fashion-mnist`);
  const loaded = await loadIdxDataset(FASHION_MNIST, {
    dataDir: opts.dataDir,
    log: opts.log,
    decodedCache: opts.decodedCache ?? true,
  });
  for (const f of loaded.files) {
    if (!f.verified)
      opts.log?.(`warning: ${f.path} differs from the official release (sha256 ${f.sha256.slice(0, 12)}…)`);
  }
  let dataset = loaded.dataset;
  if (opts.resize) {
    const shape = dataset.shape;
    dataset = {
      ...dataset,
      shape: resizedShape(shape, opts.resize),
      train: resizeSplit(dataset.train, shape, opts.resize),
      test: resizeSplit(dataset.test, shape, opts.resize),
    };
  }
  return { ...loaded, dataset, seconds: (performance.now() - start) / 1000 };
}

/**
 * Loading a dataset for the commands (Node only) from one description of its source, which the
 * run directory records, so `evaluate`, `predict`, `report` and `serve` reload exactly the data
 * a model was trained on. Each kind of source is a module registered by its kind
 * (node/data/sources.ts); importing this module registers the built-in ones:
 *   - idx:    a built-in IDX dataset (fashion-mnist, mnist, kmnist) via the source chain
 *   - folder: an image folder, one subfolder per class
 *   - csv:    a Kaggle-style `label,pixel1..pixelN` file
 */
import { type DataSource, idxSource } from '../../core/data/source.js';
import { type LoadedDataset, type LoadOptions, sourceEntry } from './sources.js';
import './idx.js';
import './folder.js';
import './csv.js';

export { type DataSource, idxSource };
export { readImageCsv, type ReadCsvOptions } from './csv.js';
export {
  type LoadedDataset,
  type LoadOptions,
  registerSource,
  type SourceEntry,
  sourceEntry,
  sourceKinds,
} from './sources.js';

export async function loadDataset(opts: LoadOptions): Promise<LoadedDataset> {
  const start = performance.now();
  const source = opts.source ?? idxSource(opts.dataset ?? 'fashion-mnist', opts.dataDir, opts.resize);
  const loaded = await sourceEntry(source.kind).load(source, opts);
  return { ...loaded, seconds: (performance.now() - start) / 1000 };
}

/**
 * The built-in IDX sets as a data source (kind 'idx'): fashion-mnist, mnist and kmnist, found
 * or downloaded and verified by node/data/datasets.ts, optionally resized (--resize).
 */
import path from 'node:path';
import { darkGroundPreprocessing, type IdxSource } from '../../core/data/source.js';
import { idxSpec, loadIdxDataset } from './datasets.js';
import { checkGrayInput, registerSource, resizeDataset } from './sources.js';

registerSource<IdxSource>('idx', {
  async load(source, opts) {
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
  },

  where: (source) => source.dataset,

  // Light strokes on a dark ground: a photo on white paper is inverted to look like them.
  preprocessing: () => darkGroundPreprocessing(),

  // The files are looked for where they are on this machine, never inside the run.
  fromRun: (source, { dataDir }) => (dataDir ? { ...source, dataDir } : source),

  atInput(source, input) {
    const size = checkGrayInput(input, source.dataset);
    // The sets are 28x28: at that size they are used as they are.
    return size === 28 ? source : { ...source, resize: size };
  },

  cacheIdentity: (source) => ({ kind: 'idx', dataset: source.dataset, resize: source.resize ?? null }),

  planChoices: (source) => ({ dataset: source.dataset, dataDir: source.dataDir, resize: source.resize }),

  isRecorded: (data) => typeof data.dataset === 'string',
});

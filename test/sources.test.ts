/**
 * Data sources are a registry (src/node/data/sources.ts): a kind is one module with one
 * `registerSource` call. This file adds a kind the library has never heard of, 'synthetic'
 * (bars drawn from a seeded generator), and trains on it through the library's `train()`,
 * resumes it, loads the run back and evaluates it, and saves it again from code: nothing
 * outside this file knows the kind. A kind nobody registered fails with one line.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitFromBytes } from '../src/core/data/dataset.js';
import { Rng } from '../src/core/data/rng.js';
import { darkGroundPreprocessing, type OwnData } from '../src/core/data/source.js';
import { evaluate, loadRun, loadRunData, saveRun, train, useBackend } from '../src/node/api.js';
import { loadDataset, registerSource, type SourceEntry } from '../src/node/data/load.js';
import { checkGrayInput, holdOut } from '../src/node/data/sources.js';
import { tempDir } from './helpers.js';

/** The plan names the kind as `dataset` and gives `path` as `data`: here, the generator's name. */
interface SyntheticSource extends OwnData {
  kind: 'synthetic';
}

// The type side of registering a kind: DataSource is the union of DataSources' members.
declare module '../src/core/data/source.js' {
  interface DataSources {
    synthetic: SyntheticSource;
  }
}

const SIZE = 8;
const COUNT = 160;

/** A bright vertical bar in the left (class 0) or the right half (class 1), on a noisy dark ground. */
function bars(seed: number): { pixels: Uint8Array; labels: Uint8Array } {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(COUNT * SIZE * SIZE);
  const labels = new Uint8Array(COUNT);
  for (let i = 0; i < COUNT; i++) {
    const label = i % 2;
    const at = label * (SIZE / 2) + rng.int(SIZE / 2);
    labels[i] = label;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const on = x === at;
        pixels[i * SIZE * SIZE + y * SIZE + x] = on ? 200 + rng.int(56) : rng.int(40);
      }
    }
  }
  return { pixels, labels };
}

const synthetic: SourceEntry<SyntheticSource> = {
  async load(source) {
    const classNames = ['left', 'right'];
    const { pixels, labels } = bars(source.path === 'bars' ? 7 : 8);
    const all = splitFromBytes(pixels, labels, classNames.length, source.path);
    const shape = [SIZE, SIZE, 1] as [number, number, number];
    const split = holdOut(all, shape, 2, source.valSplit, source.seed, source.path);
    return {
      dataset: { name: source.path, classNames, shape, ...split },
      source,
      located: { dir: '', origin: 'generated' },
      files: [],
      skipped: [],
      heldOut: true,
    };
  },
  where: (source) => `synthetic ${source.path}`,
  preprocessing: () => darkGroundPreprocessing(),
  fromRun: (source) => source,
  atInput: (source, input) => ({ ...source, resize: checkGrayInput(input, source.path) }),
  cacheIdentity: (source) => ({ kind: 'synthetic', path: source.path }),
  planChoices: (source) => ({ dataKind: 'synthetic', data: source.path, holdOut: source.valSplit }),
  isRecorded: (data) => typeof data.path === 'string',
};

registerSource('synthetic', synthetic);

describe('a data source registered outside the library', () => {
  let work: string;
  beforeAll(async () => {
    work = tempDir('imgclf-sources-');
    await useBackend('cpu');
  });
  afterAll(async () => {
    await useBackend('wasm');
  });

  it('trains through train(), resumes, and loads back with its data for evaluate', async () => {
    const out = path.join(work, 'run');
    const quiet = () => {};
    const result = await train({ dataKind: 'synthetic', data: 'bars', epochs: 2, out, log: quiet });
    expect(result.data).toMatchObject({ source: 'synthetic', name: 'bars', train: 144, test: 16 });
    expect(result.history.at(-1)!.test_accuracy).toBeGreaterThan(0.8);

    // The recorded plan names the kind, so --resume resolves it again.
    const resumed = await train({ resume: out, epochs: 3, log: quiet });
    expect(resumed.history.map((m) => m.epoch)).toEqual([1, 2, 3]);

    const run = await loadRun(out);
    expect(run.metadata.data).toEqual({ kind: 'synthetic', path: 'bars', valSplit: 0.1, seed: 0 });
    expect(run.metadata.preprocessing).toEqual(darkGroundPreprocessing());
    const data = await loadRunData(run);
    expect(data.source.kind).toBe('synthetic');
    const { accuracy } = await evaluate(run.model, data.test);
    expect(accuracy).toBe(resumed.testAccuracy);

    // saveRun records a plan that names the data again (the entry's planChoices).
    const copy = await saveRun(path.join(work, 'copy'), { model: run.model, data, history: run.history });
    expect(copy.metadata.config).toMatchObject({ dataKind: 'synthetic', data: 'bars', holdOut: 0.1 });
    const again = await loadRunData(await loadRun(copy.dir));
    expect((await evaluate(run.model, again.test)).accuracy).toBe(accuracy);
    run.model.dispose();
  });

  it('a run recorded with its kind as dataset (before dataKind) resumes and evaluates', async () => {
    const out = path.join(work, 'recorded');
    const quiet = () => {};
    await train({ dataKind: 'synthetic', data: 'bars', epochs: 1, out, log: quiet });
    // metadata.json as runs saved before dataKind recorded it, manifest updated to match.
    const metaFile = path.join(out, 'metadata.json');
    const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
    const { dataKind, ...config } = meta.config;
    expect(dataKind).toBe('synthetic');
    meta.config = { ...config, dataset: 'synthetic' };
    const text = JSON.stringify(meta, null, 1);
    writeFileSync(metaFile, text);
    const manifestFile = path.join(out, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
    manifest.files['metadata.json'] = {
      size: Buffer.byteLength(text),
      sha256: createHash('sha256').update(text).digest('hex'),
    };
    writeFileSync(manifestFile, JSON.stringify(manifest));

    const resumed = await train({ resume: out, epochs: 2, log: quiet });
    expect(resumed.history.map((m) => m.epoch)).toEqual([1, 2]);
    const run = await loadRun(out);
    expect(run.metadata.config).toMatchObject({ dataKind: 'synthetic', data: 'bars' });
    expect(run.metadata.config.dataset).toBeUndefined();
    const data = await loadRunData(run);
    expect((await evaluate(run.model, data.test)).accuracy).toBe(resumed.testAccuracy);
    run.model.dispose();
  });

  it('a kind is registered once', () => {
    expect(() => registerSource('synthetic', synthetic)).toThrow(
      "data source kind 'synthetic' is already registered",
    );
  });

  it('an unknown kind fails with one line naming the known ones', async () => {
    const oneLine = /^unknown data source kind 'parquet'; known kinds: idx, folder, csv, synthetic$/;
    const source = { kind: 'parquet', path: 'x.parquet' } as unknown as SyntheticSource;
    await expect(loadDataset({ source })).rejects.toThrow(oneLine);
    const out = path.join(work, 'parquet');
    await expect(train({ dataKind: 'parquet', data: 'x.parquet', out, log: () => {} })).rejects.toThrow(
      oneLine,
    );
  });
});

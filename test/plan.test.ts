/** The plan (core/plan.ts): the one place defaults live, and their precedence. */
import { describe, expect, it } from 'vitest';
import { getEntry, list } from '../src/core/models/index.js';
import {
  dataSourceOf,
  fitOptionsFor,
  GLOBAL_DEFAULTS,
  modelDefaults,
  resolveConfig,
} from '../src/core/plan.js';

describe('plan', () => {
  it('a flag beats the model default, which beats the global default', () => {
    // softmax takes the seed's settings, the global defaults, unchanged.
    const seed = resolveConfig({ model: 'softmax' });
    expect(seed).toMatchObject({
      epochs: 5,
      lr: 0.1,
      batchSize: 256,
      optimizer: 'sgd',
      schedule: 'constant',
    });
    // cnn overrides some of them ...
    const cnn = resolveConfig({ model: 'cnn' });
    const own = getEntry('cnn').defaults;
    expect(own.lr).toBeDefined();
    expect(own.lr).not.toBe(GLOBAL_DEFAULTS.lr);
    expect(cnn.lr).toBe(own.lr);
    expect(cnn.optimizer).toBe(own.optimizer);
    // ... and keeps the global ones it does not name.
    expect(own.batchSize).toBeUndefined();
    expect(cnn.batchSize).toBe(GLOBAL_DEFAULTS.batchSize);
    // A flag beats both.
    const flagged = resolveConfig({ model: 'cnn', lr: 0.05, batchSize: 64, augment: false });
    expect(flagged).toMatchObject({ lr: 0.05, batchSize: 64, augment: false, optimizer: own.optimizer });
  });

  it('every model resolves to a complete plan, and resolving it again changes nothing', () => {
    for (const entry of list()) {
      const plan = resolveConfig({ model: entry.name });
      expect(plan).toMatchObject(modelDefaults(entry.name));
      for (const [key, value] of Object.entries(entry.defaults)) expect(plan).toHaveProperty(key, value);
      // --resume re-resolves a recorded plan.
      expect(resolveConfig({ ...plan })).toEqual(plan);
    }
  });

  it('fit options carry the whole recipe', () => {
    const cnn = resolveConfig({ model: 'cnn', seed: 3 });
    const fit = fitOptionsFor(cnn, [28, 28, 1]);
    expect(fit).toMatchObject({
      epochs: cnn.epochs,
      batchSize: cnn.batchSize,
      seed: 3,
      labelSmoothing: cnn.labelSmoothing,
      schedule: cnn.schedule,
      warmup: cnn.warmup,
    });
    expect(fit.augment).toEqual({ pad: 2, flip: true });
    expect(fitOptionsFor(resolveConfig({ model: 'softmax' }), [28, 28, 1]).augment).toBeUndefined();
  });

  it('folder defaults live in the plan and reach the data source', () => {
    const plan = resolveConfig({ data: 'pets/' });
    expect(plan).toMatchObject({ dataKind: 'folder', imageSize: 28, channels: 3, resizeMode: 'fill' });
    expect(plan.dataset).toBeUndefined();
    expect(dataSourceOf(plan)).toMatchObject({ kind: 'folder', path: 'pets/', imageSize: 28, valSplit: 0.1 });
    expect(dataSourceOf(resolveConfig({}))).toEqual({ kind: 'idx', dataset: 'fashion-mnist' });
  });

  it('holdOut is the test fraction of data without a test split; --val-split still sets it there', () => {
    // --val-split on a folder: as before, the held-out test fraction is the given one.
    const viaValSplit = resolveConfig({ data: 'pets/', valSplit: 0.2 });
    expect(viaValSplit).toMatchObject({ valSplit: 0.2, holdOut: 0.2 });
    expect(dataSourceOf(viaValSplit)).toMatchObject({ kind: 'folder', valSplit: 0.2 });
    const own = resolveConfig({ data: 'rows.csv', holdOut: 0.3 });
    expect(own.valSplit).toBeUndefined();
    expect(dataSourceOf(own)).toMatchObject({ kind: 'csv', valSplit: 0.3 });
    // A plan recorded before holdOut existed resolves to the same data source.
    const recorded: Record<string, unknown> = { dataset: 'folder', data: 'pets/', valSplit: 0.25, seed: 1 };
    expect(dataSourceOf(resolveConfig(recorded))).toEqual(
      dataSourceOf(resolveConfig({ data: 'pets/', holdOut: 0.25, seed: 1 })),
    );
    expect(dataSourceOf(resolveConfig({ data: 'pets/' }))).toMatchObject({ valSplit: 0.1 });
    // A resolved plan resolves to itself.
    expect(resolveConfig({ ...viaValSplit })).toEqual(viaValSplit);
    expect(() => resolveConfig({ holdOut: 0.2 })).toThrow(
      '--hold-out applies to your own data (--data PATH)',
    );
    expect(() => resolveConfig({ data: 'pets/', holdOut: 1 })).toThrow(
      '--hold-out must be a fraction above 0 and at most 0.9 (got 1)',
    );
  });

  it('dataset names a built-in set only; dataKind names the kind of --data', () => {
    expect(resolveConfig({})).toMatchObject({ dataset: 'fashion-mnist' });
    expect(resolveConfig({}).dataKind).toBeUndefined();
    const csv = resolveConfig({ data: 'rows.csv' });
    expect(csv).toMatchObject({ dataKind: 'csv', data: 'rows.csv' });
    expect(csv.dataset).toBeUndefined();
    // Given, the kind wins over the path's name; a registered kind builds its own source.
    expect(dataSourceOf(resolveConfig({ data: 'shots.csv', dataKind: 'folder' }))).toMatchObject({
      kind: 'folder',
      path: 'shots.csv',
    });
    expect(dataSourceOf(resolveConfig({ data: 'x.parquet', dataKind: 'parquet', seed: 2 }))).toEqual({
      kind: 'parquet',
      path: 'x.parquet',
      valSplit: 0.1,
      seed: 2,
    });
    expect(() => resolveConfig({ dataKind: 'csv' })).toThrow(
      '--data-kind names the kind of your own data: give --data PATH too',
    );
    for (const both of [
      { data: 'pets/', dataset: 'mnist' },
      { data: 'pets/', dataset: 'mnist', dataKind: 'folder' },
      { data: 'x.parquet', dataset: 'parquet', dataKind: 'csv' },
    ])
      expect(() => resolveConfig(both)).toThrow(
        '--data and --dataset exclude each other: train on your own data or a built-in set',
      );
  });

  it('a plan recorded with the kind of its data as dataset resolves to the same plan', () => {
    // metadata.json `config` of runs saved before dataKind: dataset 'folder', 'csv' or a
    // registered kind beside data. --resume, evaluate and predict resolve it again.
    const old: Record<string, unknown>[] = [
      { model: 'mlp', dataset: 'folder', data: '/runs/pets', imageSize: 32, channels: 3, holdOut: 0.2 },
      { model: 'softmax', dataset: 'csv', data: 'rows.csv', testData: 'test.csv', holdOut: 0.1 },
      { model: 'softmax', dataset: 'synthetic', data: 'bars', holdOut: 0.1, seed: 4 },
    ];
    const kinds = ['folder', 'csv', 'synthetic'];
    old.forEach((config, i) => {
      const plan = resolveConfig(config);
      const { dataset, ...now } = config;
      expect(dataset).toBe(kinds[i]);
      expect(plan).toEqual(resolveConfig({ ...now, dataKind: kinds[i] }));
      expect(plan.dataset).toBeUndefined();
      expect(plan.dataKind).toBe(kinds[i]);
      expect(dataSourceOf(plan).kind).toBe(kinds[i]);
      // Resolved again (a resume of a resume), it stays the same plan.
      expect(resolveConfig({ ...plan })).toEqual(plan);
    });
  });

  it('unknown keys and names fail with one clear line', () => {
    expect(() => resolveConfig({ learningRate: 0.1 })).toThrow(/unknown config key 'learningRate'/);
    expect(() => resolveConfig({ model: 'resnet' })).toThrow(/unknown model 'resnet'; choose one of/);
    // The type allows only known optimizers; a plan read from JSON may hold any name.
    const fromJson: Record<string, unknown> = { optimizer: 'rmsprop' };
    expect(() => resolveConfig(fromJson)).toThrow(/unknown optimizer 'rmsprop'/);
  });
});

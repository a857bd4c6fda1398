/**
 * The page trains on the plan: `pagePlan` (web/src/train.ts) resolves the page's choices to the
 * same plan as `imgclf train` with the same flags, so a model trained in the browser gets its
 * own recipe (optimizer, weight decay, schedule, label smoothing, augmentation) as on the CLI.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { planFromFlags } from '../src/cli/commands/train.js';
import { UserError } from '../src/core/errors.js';
import { list } from '../src/core/models/index.js';
import {
  AUGMENTATION,
  fitOptionsFor,
  modelDefaults,
  optimizerFor,
  type TrainConfig,
} from '../src/core/plan.js';
import { ownImages, ownPlan, ownShape } from '../web/src/own-train.js';
import { pagePlan, trainInPage } from '../web/src/train.js';
import { LOOP_FIELDS } from './fixtures/plan-fields.js';

/** Every field of a plan that changes how a model trains. */
const TRAINING_FIELDS = [
  'model',
  ...LOOP_FIELDS,
  'modelOptions',
] as const satisfies readonly (keyof TrainConfig)[];

function training(plan: TrainConfig): Pick<TrainConfig, (typeof TRAINING_FIELDS)[number]> {
  return Object.fromEntries(TRAINING_FIELDS.map((k) => [k, plan[k]])) as Pick<
    TrainConfig,
    (typeof TRAINING_FIELDS)[number]
  >;
}

const SHAPE = [28, 28, 1] as [number, number, number];
const models = list().map((e) => e.name);

beforeAll(async () => {
  // optimizerFor builds tfjs optimizers: give tfjs a backend.
  await selectBackend('cpu');
});

describe('pagePlan: the page trains as `imgclf train` does', () => {
  it('covers the models the page offers', () => {
    expect(models).toEqual(expect.arrayContaining(['softmax', 'mlp', 'cnn']));
  });

  it.each(models)('%s with no choices = the CLI with no flags = the model defaults', (model) => {
    const page = pagePlan({ model });
    const cli = planFromFlags({ model }, 'en');
    expect(training(page)).toEqual(training(cli));
    const d = modelDefaults(model);
    expect(page).toMatchObject({
      epochs: d.epochs,
      batchSize: d.batchSize,
      lr: d.lr,
      optimizer: d.optimizer,
      schedule: d.schedule,
      warmup: d.warmup,
      momentum: d.momentum,
      nesterov: d.nesterov,
      weightDecay: d.weightDecay,
      labelSmoothing: d.labelSmoothing,
      augment: d.augment,
      backend: 'auto',
    });
    expect(fitOptionsFor(page, SHAPE)).toEqual(fitOptionsFor(cli, SHAPE));
    const [a, b] = [optimizerFor(page), optimizerFor(cli)];
    expect([a.name, a.lr]).toEqual([b.name, b.lr]);
    a.dispose();
    b.dispose();
  });

  it.each(models)('%s: the form left as shown (the defaults, as text) = no choices', (model) => {
    const d = modelDefaults(model);
    // The form shows String(default) and reads it back with Number().
    const shown = pagePlan({
      model,
      epochs: Number(String(d.epochs)),
      lr: Number(String(d.lr)),
      batchSize: Number(String(d.batchSize)),
    });
    expect(training(shown)).toEqual(training(pagePlan({ model })));
  });

  it.each(models)('%s with explicit choices = the CLI with the same flags', (model) => {
    const choice = { epochs: 2, lr: 0.01, batchSize: 64, seed: 3 };
    const page = pagePlan({ model, ...choice });
    const cli = planFromFlags({ model, ...choice }, 'en');
    expect(training(page)).toEqual(training(cli));
    expect(page).toMatchObject(choice);
    // The rest of the recipe stays the model's.
    const d = modelDefaults(model);
    expect(page).toMatchObject({ optimizer: d.optimizer, schedule: d.schedule, augment: d.augment });
    expect(fitOptionsFor(page, SHAPE)).toEqual(fitOptionsFor(cli, SHAPE));
  });

  it('cnn in the page gets augmentation, label smoothing, one-cycle and AdamW with weight decay', () => {
    const d = modelDefaults('cnn');
    const plan = pagePlan({ model: 'cnn' });
    const fit = fitOptionsFor(plan, SHAPE);
    expect(fit.augment).toEqual(AUGMENTATION);
    expect(d.augment).toBe(true);
    expect(fit.labelSmoothing).toBe(d.labelSmoothing);
    expect(fit.labelSmoothing).toBeGreaterThan(0);
    expect(fit.schedule).toBe(d.schedule);
    expect(fit.schedule).toBe('onecycle');
    expect(fit).toMatchObject({ epochs: d.epochs, batchSize: d.batchSize, warmup: d.warmup, shape: SHAPE });
    expect(plan.weightDecay).toBe(d.weightDecay);
    expect(plan.weightDecay).toBeGreaterThan(0);
    const optimizer = optimizerFor(plan);
    expect(optimizer.name).toBe(d.optimizer);
    expect(optimizer.name).toBe('adamw');
    expect(optimizer.lr).toBe(d.lr);
    optimizer.dispose();
  });

  it('model options go through the registry: a misspelt one is one line, as in the CLI and the library', async () => {
    const misspelt =
      "unknown option 'dropuot' for model cnn; it takes widths, convs, batchNorm, dropout; did you mean 'dropout'?";
    expect(() => pagePlan({ model: 'cnn', options: { dropuot: 0.5 } })).toThrow(misspelt);
    expect(pagePlan({ model: 'cnn', options: { dropout: 0.2 } }).modelOptions).toEqual({ dropout: 0.2 });
    // trainInPage builds the model with core's create, which checks the options itself.
    const plan = { ...pagePlan({ model: 'cnn' }), modelOptions: { dropuot: 0.5 } };
    const empty = { images: new Float32Array(0), labels: new Uint8Array(0), count: 0 };
    await expect(
      trainInPage({
        plan,
        shape: SHAPE,
        numClasses: 10,
        train: empty,
        test: empty,
        probeEvery: 10,
        onProgress: () => {},
        onProbe: () => {},
        onEpoch: () => {},
        shouldStop: () => true,
      }),
    ).rejects.toThrow(misspelt);
  });

  it('rejects what the CLI rejects', () => {
    expect(() => pagePlan({ model: 'no-such-model' })).toThrow(UserError);
    expect(() => pagePlan({ model: 'cnn', epochs: 0 })).toThrow(/--epochs/);
    expect(() => pagePlan({ model: 'cnn', batchSize: 1.5 })).toThrow(/--batch-size/);
    expect(() => pagePlan({ model: 'cnn', lr: -1 })).toThrow(/--lr/);
  });
});

describe('trainInPage: the page trains through the library', () => {
  it.each(['softmax', 'mlp', 'cnn'])(
    '%s: the public fit trains by exactly the plan the page shows',
    async (model) => {
      const images = ownImages(32);
      const shape = ownShape(images);
      const row = shape[0] * shape[1] * shape[2];
      const count = 24;
      const pixels = Uint8Array.from({ length: count * row }, (_, i) => (i * 37) % 256);
      const labels = Uint8Array.from({ length: count }, (_, i) => i % 3);
      const train = { images: pixels, labels, count };
      // epochs chosen, batch size left to the data's size (8 for 24 images), as the page does.
      const { plan } = ownPlan({ model, epochs: 2 }, images, count);
      expect(plan.batchSize).toBe(8);
      let probes = 0;
      const { model: net, history } = await trainInPage({
        plan,
        shape,
        numClasses: 3,
        train,
        test: train,
        probeEvery: 2,
        shouldStop: () => false,
        onProgress: () => {},
        onProbe: () => probes++,
        onEpoch: () => {},
      });
      expect(history).toHaveLength(plan.epochs);
      expect(probes).toBeGreaterThan(0);
      expect(training(net.lastFit!.plan)).toEqual(training(plan));
      // The kept epoch by the one rule (keptEpoch): no validation split, so the last, as
      // `imgclf train --data DIR --hold-out 0.2` keeps it.
      expect(net.lastFit!.keptEpoch).toBe(2);
      net.dispose();
    },
  );
});

/**
 * One rule for the epoch a run keeps and the accuracy it reports, whichever door trains it:
 * the CLI (`imgclf train`), the library's `train()`, and the library's `fit` + `saveRun`
 * (core/train/loop.ts keptEpoch). With a validation split that is the best epoch by
 * validation accuracy, also when it is not the last; `train --json`, `evaluate --json` and
 * metadata.json agree on it. Every registered model, knn included, goes through `fit`.
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as core from '../src/core/index.js';
import {
  createModel,
  evaluate,
  fit,
  type LoadedData,
  listModels,
  loadFashionMnist,
  loadRun,
  saveRun,
  train,
  validationSplit,
} from '../src/index.js';
import { cli, tempDir } from './helpers.js';

const work = tempDir('imgclf-one-run-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A recipe whose best validation epoch (2) is not its last (6): lr 0.5 makes softmax jumpy. */
const RECIPE = { model: 'softmax', epochs: 6, valSplit: 0.2, lr: 0.5, seed: 5 } as const;
const FLAGS = ['--epochs', '6', '--val-split', '0.2', '--lr', '0.5', '--seed', '5'];

function head(split: core.Split, n: number, row: number): core.Split {
  return { images: split.images.subarray(0, n * row), labels: split.labels.subarray(0, n), count: n };
}

const metadataOf = (dir: string) =>
  JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8')) as {
    testAccuracy: number;
    bestEpoch?: number;
  };
const weightsOf = (dir: string) => readFileSync(path.join(dir, 'weights.bin'));

describe('one run behind every door', () => {
  let data: LoadedData;
  const cliDir = path.join(work, 'cli');
  let printed: { test_accuracy: number; best_epoch?: number; epochs: { test_accuracy: number }[] };

  beforeAll(async () => {
    data = await loadFashionMnist();
    const r = cli(['train', ...FLAGS, '--out', cliDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    printed = r.json as typeof printed;
  });

  it('train --json, evaluate --json and metadata.json report the kept epoch, not the last', () => {
    expect(printed.best_epoch).toBeDefined();
    // The recipe is chosen so that the best epoch is not the last one.
    expect(printed.best_epoch).not.toBe(RECIPE.epochs);
    const kept = printed.epochs[printed.best_epoch! - 1].test_accuracy;
    expect(printed.test_accuracy).toBe(kept);
    expect(printed.test_accuracy).not.toBe(printed.epochs.at(-1)!.test_accuracy);
    const meta = metadataOf(cliDir);
    expect(meta.testAccuracy).toBe(kept);
    expect(meta.bestEpoch).toBe(printed.best_epoch);
    const ev = cli(['evaluate', '--run', cliDir, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect((ev.json as { test_accuracy: number }).test_accuracy).toBeCloseTo(kept, 6);
  });

  it("the library's train() writes the CLI's run: the same weights, best epoch and accuracy", async () => {
    const dir = path.join(work, 'train');
    const result = await train({ ...RECIPE, out: dir });
    expect(result.bestEpoch).toBe(printed.best_epoch);
    expect(result.testAccuracy).toBe(printed.test_accuracy);
    expect(weightsOf(dir).equals(weightsOf(cliDir))).toBe(true);
  });

  it('fit + saveRun keeps the same epoch, with the same weights, as the CLI', async () => {
    const { train: t, val } = validationSplit(data, RECIPE.valSplit, RECIPE.seed);
    const model = createModel('softmax', {
      inputShape: data.shape,
      numClasses: data.classNames.length,
      seed: RECIPE.seed,
    });
    const history = await fit(model, t, data.test, {
      epochs: RECIPE.epochs,
      lr: RECIPE.lr,
      seed: RECIPE.seed,
      val,
    });
    expect(model.lastFit?.keptEpoch).toBe(printed.best_epoch);
    // The model holds the kept epoch's weights: evaluating it gives that epoch's accuracy.
    const now = await evaluate(model, data.test);
    expect(now.accuracy).toBeCloseTo(history[printed.best_epoch! - 1].test_accuracy, 6);
    const dir = path.join(work, 'saved');
    const run = await saveRun(dir, { model, data, history });
    expect(run.metadata.testAccuracy).toBe(printed.test_accuracy);
    expect(run.metadata.bestEpoch).toBe(printed.best_epoch);
    expect(weightsOf(dir).equals(weightsOf(cliDir))).toBe(true);
    model.dispose();
  });

  it('every registered model trains and evaluates through fit, knn included', async () => {
    const row = data.shape[0] * data.shape[1] * data.shape[2];
    const t = head(data.train, 512, row);
    const test = head(data.test, 256, row);
    for (const { name } of listModels()) {
      const model = createModel(name, { inputShape: data.shape, numClasses: 10, seed: 0 });
      const history = await fit(model, t, test, { epochs: 1 });
      expect(history, name).toHaveLength(1);
      const ev = await evaluate(model, test);
      expect(ev.accuracy, name).toBeGreaterThan(0.3);
      const dir = path.join(work, `model-${name}`);
      await saveRun(dir, { model, data, history });
      const back = await loadRun(dir);
      expect(back.metadata.model).toBe(name);
      back.model.dispose();
      model.dispose();
    }
  });
});

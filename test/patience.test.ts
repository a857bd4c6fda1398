/** Early stopping (--patience): it stops, keeps and restores the best epoch, and says so. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { subset } from '../src/core/data/split.js';
import { create } from '../src/core/models/index.js';
import { optimizerFor, resolveConfig } from '../src/core/plan.js';
import { evaluate, fit, type FitState } from '../src/core/train/loop.js';
import { loadDataset } from '../src/node/data/load.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

describe('--patience', () => {
  it('stops after the given epochs without a better validation accuracy and keeps the best', () => {
    // lr 1 makes plain SGD overshoot: validation accuracy peaks at epoch 3 (test/session.test.ts).
    const out = path.join(tempDir(), 'run');
    const r = cli([
      'train',
      '--lr',
      '1',
      '--epochs',
      '8',
      '--val-split',
      '0.1',
      '--patience',
      '1',
      '--out',
      out,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const epochs = r.json!.epochs as { test_accuracy: number }[];
    expect(epochs).toHaveLength(4);
    expect(r.json!.best_epoch).toBe(3);
    expect(r.stderr).toMatch(/early stop after epoch 4: no better validation accuracy for 1 epochs/);
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta).toMatchObject({ bestEpoch: 3, stoppedEarly: { epoch: 4, patience: 1 } });
    expect(meta.testAccuracy).toBe(epochs[2].test_accuracy);
    // The model at the top is the best epoch's; the report marks where the run stopped.
    const ev = cli(['evaluate', '--run', out, '--json']);
    expect(ev.json!.test_accuracy).toBe(epochs[2].test_accuracy);
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toContain(
      'stopped early after epoch 4: no better validation accuracy for 1 epochs',
    );
    expect(readFileSync(path.join(out, 'curves.svg'), 'utf8')).toContain('kept: 3');
    // A run that stopped early is finished: resuming says so.
    expectCleanError(cli(['train', '--resume', out, '--epochs', '9']), /stopped early after epoch 4/);
  });

  it('fit puts the best epoch’s weights back into the model', async () => {
    await selectBackend('wasm');
    const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
    const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
    const train = subset(dataset.train, dataset.shape, rows(0, 6000));
    const val = subset(dataset.train, dataset.shape, rows(6000, 1000));
    const net = create('softmax', { inputShape: dataset.shape, numClasses: 10, seed: 0 });
    let last: FitState | undefined;
    const history = await fit(net, optimizerFor(resolveConfig({ lr: 3 })), train, dataset.test, {
      epochs: 12,
      batchSize: 64,
      seed: 0,
      shape: dataset.shape,
      val,
      patience: 2,
      onEpoch: (_m, s) => void (last = s),
    });
    expect(last!.stoppedEarly).toBe(history.length);
    expect(history.length).toBeLessThan(12);
    const best = history[last!.bestEpoch - 1];
    expect(best.val_accuracy).toBe(Math.max(...history.map((m) => m.val_accuracy!)));
    expect(evaluate(net, val, { shape: dataset.shape }).accuracy).toBe(best.val_accuracy);
  });

  it('needs a validation split', () => {
    expect(() => resolveConfig({ patience: 2 })).toThrow(
      /--patience watches validation accuracy: give --val-split/,
    );
    expect(() => resolveConfig({ patience: 0, valSplit: 0.1 })).toThrow(/--patience must be a whole number/);
    expectCleanError(cli(['train', '--patience', '2']), /--patience watches validation accuracy/);
  });
});

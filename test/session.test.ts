/**
 * The training session (node/session.ts) on the real Fashion-MNIST: it reproduces the seed's
 * figures exactly, and a resumed run with a validation split keeps its best epoch straight in
 * the metadata, the saved model and the report.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { resolveConfig } from '../src/core/plan.js';
import { evaluate } from '../src/core/train/loop.js';
import { loadRunWithData } from '../src/node/run/data.js';
import { defaultOut, planOfRun, trainSession } from '../src/node/session.js';
import { tempDir } from './helpers.js';

beforeAll(async () => {
  await selectBackend('wasm');
});

describe('training session', () => {
  it('runs started without --out in the same second get a directory each', () => {
    const root = path.join(tempDir(), 'runs');
    const dirs = [defaultOut(root), defaultOut(root), defaultOut(root)];
    expect(new Set(dirs).size).toBe(3);
    for (const d of dirs) {
      expect(existsSync(d)).toBe(true);
      expect(path.basename(d)).toMatch(/^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(-\d+)?$/);
    }
  });

  it('softmax, 2 epochs, seed 0: the figures the seed-faithful pipeline has always given', async () => {
    // Recorded from `imgclf train --epochs 2 --seed 0 --json` before the code moved into
    // layers: moving code must change no figure.
    // With the fused step off (--no-fused) the step is the tfjs kernels' as before: unchanged.
    const unfused = await trainSession(
      resolveConfig({ epochs: 2, seed: 0, backend: 'wasm', fused: false, out: path.join(tempDir(), 'run') }),
    );
    expect(unfused.history.map((m) => [m.train_loss, m.train_accuracy, m.test_accuracy])).toEqual([
      [0.7871354166666666, 0.7480333333333333, 0.7916],
      [0.5701143229166666, 0.8123833333333333, 0.8035],
    ]);
    // The default, the fused dense step (backend/fused-dense.ts), sums its matrix products in
    // another order than XNNPACK, scales the pixel bytes after the product instead of before,
    // takes exp with its own polynomial and sums each epoch's loss in double rather than
    // float32, so the training loss differs in the 7th digit; every accuracy is the same to
    // the example.
    const out = path.join(tempDir(), 'run');
    const r = await trainSession(resolveConfig({ epochs: 2, seed: 0, backend: 'wasm', out }));
    expect(r.history.map((m) => [m.train_loss, m.train_accuracy, m.test_accuracy])).toEqual([
      [0.7871353325563929, 0.7480333333333333, 0.7916],
      [0.5701143348089551, 0.8123833333333333, 0.8035],
    ]);
    expect(r.interrupted).toBe(false);
  });

  it('resume with --val-split: metadata, model and report agree on the best epoch', async () => {
    // lr 1 makes plain SGD overshoot: validation accuracy peaks at epoch 3 of 5 (asserted below).
    const out = path.join(tempDir(), 'run');
    const plan = resolveConfig({ epochs: 5, lr: 1, valSplit: 0.1, seed: 0, backend: 'wasm', out });
    let stop = false;
    const first = await trainSession(plan, {
      onEpoch: (m) => void (stop = m.epoch === 3),
      shouldStop: () => stop,
    });
    expect(first.interrupted).toBe(true);
    expect(first.history).toHaveLength(3);

    const lines: string[] = [];
    const resumed = await trainSession(await planOfRun(out), { log: (m) => lines.push(m) }, { resume: out });
    expect(resumed.interrupted).toBe(false);
    const h = resumed.history;
    expect(h.map((m) => m.epoch)).toEqual([1, 2, 3, 4, 5]);
    const best = h.reduce((a, b) => (b.val_accuracy! > a.val_accuracy! ? b : a));
    // The case this test is about: the best epoch came before the resume, and is not the last.
    expect(best.epoch).toBe(3);
    expect(best.test_accuracy).not.toBe(h[4].test_accuracy);

    expect(resumed.bestEpoch).toBe(3);
    expect(resumed.testAccuracy).toBe(best.test_accuracy);
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta.bestEpoch).toBe(3);
    expect(meta.testAccuracy).toBe(best.test_accuracy);
    expect(meta.finalTestAccuracy).toBe(h[4].test_accuracy);
    const finalMeta = JSON.parse(readFileSync(path.join(out, 'final', 'metadata.json'), 'utf8'));
    expect(finalMeta.testAccuracy).toBe(h[4].test_accuracy);

    // The model at the top level is the best epoch's; final/ holds the last one.
    const { run, dataset } = await loadRunWithData(out);
    const shape = run.metadata.inputShape;
    expect(evaluate(run.model, dataset.test, { shape }).accuracy).toBe(best.test_accuracy);
    const last = await loadRunWithData(path.join(out, 'final'));
    expect(evaluate(last.run.model, dataset.test, { shape }).accuracy).toBe(h[4].test_accuracy);

    // The report shows the best epoch's accuracy, and the session says so too.
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain(best.test_accuracy.toFixed(4));
    expect(lines.join('\n')).toMatch(
      new RegExp(`best epoch by validation accuracy: 3 .*test ${best.test_accuracy.toFixed(4)}`),
    );
  });
});

/**
 * Runs that lose nothing and load nothing wrong, on the real CLI and Fashion-MNIST:
 * a run killed mid-save, a diverged training, --out over another run, --resume's flags and
 * checks, and run directories whose parts disagree.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { resolveConfig } from '../src/core/plan.js';
import { loadCheckpoint, loadRun, saveCheckpoint, saveMetadata, saveModel } from '../src/node/run/rundir.js';
import { commitSave } from '../src/node/run/save.js';
import { planOfRun, trainSession } from '../src/node/session.js';
import { trainedRun } from './fixtures/trained-run.js';
import { BIN, cli, expectCleanError, ROOT, tempDir } from './helpers.js';

let work = '';
/** A fresh copy of a finished 1-epoch softmax run in `work`/name, for the tests that change one. */
let copyOf: (name: string) => string;

beforeAll(async () => {
  await selectBackend('wasm');
  work = tempDir();
  ({ copyOf } = trainedRun(work));
});

/** Every file of a run directory with its SHA-256, to show nothing changed. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of (readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const p = path.join(dir, rel);
    try {
      out[rel] = createHash('sha256').update(readFileSync(p)).digest('hex');
    } catch {
      out[rel] = 'dir';
    }
  }
  return out;
}

/** The run's parts agree: manifest, metrics, checkpoint and model are of one epoch. */
function expectConsistent(dir: string): number {
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const metrics = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  const state = JSON.parse(readFileSync(path.join(dir, 'checkpoint', 'state.json'), 'utf8'));
  expect(metrics).toHaveLength(manifest.epoch);
  expect(state.fit.epoch).toBe(manifest.epoch);
  expect(readFileSync(path.join(dir, 'weights.bin'))).toEqual(
    readFileSync(path.join(dir, 'checkpoint', 'weights.bin')),
  );
  const stray = (readdirSync(dir, { recursive: true }) as string[]).filter(
    (f) => f.endsWith('.part') || f.startsWith('.staging'),
  );
  expect(stray).toEqual([]);
  return manifest.epoch;
}

const hasStrace = existsSync('/usr/bin/strace');

describe('a run killed while saving', () => {
  it.runIf(hasStrace)('at a rename or a flush, keeps one whole save and loads it', () => {
    // The reproduction: SIGKILL at a chosen system call of `train`, as strace injects it.
    const figures = (dir: string) =>
      readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const m = JSON.parse(l);
          return [m.train_loss, m.train_accuracy, m.test_accuracy];
        });
    const ref = copyOf('uninterrupted');
    expect(cli(['train', '--resume', ref, '--epochs', '2']).code).toBe(0);
    const reference = figures(ref);
    const epochs = new Set<number>();
    for (const [call, when] of [
      ['rename', 1],
      ['rename', 2],
      ['rename', 3],
      ['fsync', 2],
      ['fsync', 6],
      ['fsync', 12],
    ] as const) {
      const dir = copyOf(`killed-${call}-${when}`);
      const r = spawnSync(
        'strace',
        [
          '-f',
          '-qq',
          '-o',
          '/dev/null',
          '-e',
          `trace=${call}`,
          '-e',
          `inject=${call}:signal=KILL:when=${when}`,
          process.execPath,
          BIN,
          'train',
          '--resume',
          dir,
          '--epochs',
          '2',
        ],
        { cwd: ROOT, encoding: 'utf8' },
      );
      expect(
        r.status === 0 || r.signal === 'SIGKILL' || r.status === 137,
        `${call} ${when}: ${r.stderr}`,
      ).toBe(true);
      const ev = cli(['evaluate', '--run', dir, '--json']);
      expect(ev.code, `${call} ${when}: ${ev.stderr}`).toBe(0);
      const epoch = expectConsistent(dir);
      epochs.add(epoch);
      // The resume stays exact: finishing the run gives the uninterrupted run's figures.
      if (epoch === 1) expect(cli(['train', '--resume', dir, '--epochs', '2']).code).toBe(0);
      expect(figures(dir)).toEqual(reference);
    }
    // Some kills land before the new save exists (epoch 1 kept), some after (epoch 2 finished).
    expect([...epochs].every((e) => e === 1 || e === 2)).toBe(true);
  });

  it('a run directory whose files do not match its manifest does not load', () => {
    const dir = copyOf('mixed');
    const other = copyOf('other');
    expect(cli(['train', '--resume', other, '--epochs', '2']).code).toBe(0);
    cpSync(path.join(other, 'weights.bin'), path.join(dir, 'weights.bin'));
    expectCleanError(
      cli(['evaluate', '--run', dir]),
      /weights\.bin does not match .*manifest\.json.*mixes two saves/,
    );
  });
});

describe('a diverged training', () => {
  it('stops at the first non-finite loss, exits non-zero and saves nothing', () => {
    const dir = path.join(work, 'nan');
    const r = cli(['train', '--epochs', '1', '--lr', '1e38', '--out', dir]);
    expectCleanError(
      r,
      /training stopped: the training loss became NaN or infinite in epoch 1 .*diverged; nothing was saved; try a lower --lr \(now 1e\+38\)/,
    );
    expect(existsSync(path.join(dir, 'weights.bin'))).toBe(false);
  });

  it('keeps the last good save when a later epoch diverges', async () => {
    const dir = copyOf('diverge-later');
    const before = fingerprint(dir);
    const plan = await planOfRun(dir, { epochs: 3 });
    await expect(trainSession({ ...plan, lr: 1e38 }, {}, { resume: dir })).rejects.toThrow(
      /epoch 2 .*diverged; .*keeps its last good save \(epoch 1\); try a lower --lr/,
    );
    expect(fingerprint(dir)).toEqual(before);
  });

  it('no command loads non-finite weights', async () => {
    const dir = copyOf('nan-weights');
    const run = await loadRun(dir);
    run.model.setWeights(run.model.getWeights().map((w) => tf.fill(w.shape, NaN)));
    await saveModel(run.model, dir);
    expectCleanError(cli(['evaluate', '--run', dir]), /weights\.bin holds NaN or infinite weights/);
    expectCleanError(cli(['predict', '--run', dir]), /weights\.bin holds NaN or infinite weights/);
  });
});

describe('--out and --force', () => {
  it('--out on another run refuses; --force replaces it, but only once the new run saves', () => {
    const dir = copyOf('taken');
    const before = fingerprint(dir);
    expectCleanError(cli(['train', '--epochs', '1', '--out', dir]), /already holds a run; pass --force/);
    // A forced run that diverges before its first save leaves the old run as it was.
    expect(cli(['train', '--epochs', '1', '--lr', '1e38', '--out', dir, '--force']).code).toBe(2);
    expect(fingerprint(dir)).toEqual(before);
    const r = cli([
      'train',
      '--model',
      'softmax-scratch',
      '--epochs',
      '1',
      '--out',
      dir,
      '--force',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8')).model).toBe('softmax-scratch');
    expect(cli(['evaluate', '--run', dir]).code).toBe(0);
  });
});

describe('--resume', () => {
  it('applies --epochs (training a finished run further) and names the flags it ignores', () => {
    const dir = copyOf('further');
    expectCleanError(cli(['train', '--resume', dir]), /has finished 1 epochs; pass --epochs N with N > 1/);
    const r = cli(['train', '--resume', dir, '--epochs', '2', '--lr', '5', '--model', 'mlp', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/resume: applying --epochs 2/);
    expect(r.stderr).toMatch(/resume: ignoring --lr 5, --model mlp \(a resumed run keeps the plan/);
    expect(r.json!.model).toBe('softmax');
    expect((r.json!.epochs as unknown[]).length).toBe(2);
    expect(expectConsistent(dir)).toBe(2);
  });

  it('refuses a checkpoint made for other classes, another input shape or another model', async () => {
    const dir = copyOf('other-classes');
    const ck = await loadCheckpoint(dir, 'softmax');
    const { optimizerFor } = await import('../src/core/plan.js');
    const opt = optimizerFor(resolveConfig({}));
    opt.setState(ck.optimizerState);
    const resume = () => trainSession(resolveConfig({ epochs: 2, out: dir }), {}, { resume: dir });
    await saveCheckpoint(
      dir,
      ck.net,
      opt,
      { ...ck.fit, epoch: 0 },
      { model: 'softmax', classNames: ['a', 'b', 'c'], inputShape: [28, 28, 1] },
    );
    await expect(resume()).rejects.toThrow(/was trained on 3 classes \(a, b, c\) but the data now has 10/);
    await saveCheckpoint(
      dir,
      ck.net,
      opt,
      { ...ck.fit, epoch: 0 },
      { model: 'softmax', classNames: ck.identity.classNames!, inputShape: [32, 32, 1] },
    );
    await expect(resume()).rejects.toThrow(/takes 32x32x1 images but the data is 28x28x1/);
    await saveCheckpoint(dir, ck.net, opt, ck.fit, {
      model: 'mlp',
      classNames: ck.identity.classNames!,
      inputShape: [28, 28, 1],
    });
    await expect(resume()).rejects.toThrow(/is a checkpoint of model 'mlp', not 'softmax'/);
  });
});

describe('a run whose parts disagree', () => {
  it('class names that do not match the model, or another input shape, fail with one line', async () => {
    const dir = copyOf('three-names');
    const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
    await saveMetadata(dir, { ...meta, classNames: ['a', 'b', 'c'] });
    expectCleanError(cli(['predict', '--run', dir]), /names 3 classes but the model has 10 outputs/);
    await saveMetadata(dir, { ...meta, inputShape: [32, 32, 1] });
    expectCleanError(
      cli(['evaluate', '--run', dir]),
      /does not take the 32x32x1 images metadata\.json records/,
    );
  });

  it('a corrupt metrics.jsonl is named', async () => {
    const dir = copyOf('bad-metrics');
    await commitSave(dir, new Map([['metrics.jsonl', '{"epoch":1}\n{"epoch": 2, "trai']]));
    expectCleanError(cli(['report', '--run', dir]), /metrics\.jsonl: line 2 is not valid JSON/);
  });
});

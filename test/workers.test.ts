/**
 * Data-parallel training on worker threads (backend/workers): the same mathematics as one
 * thread, bit-identical repeats, exact resume, and a failing worker that ends the run cleanly.
 */
import { spawn } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { chooseWorkers } from '../src/backend/workers/choose.js';
import { startPool } from '../src/backend/workers/pool.js';
import type { ImageShape, Split } from '../src/core/data/dataset.js';
import { Rng } from '../src/core/data/rng.js';
import { create } from '../src/core/models/index.js';
import { fitOptionsFor, optimizerFor, resolveConfig, type TrainConfig } from '../src/core/plan.js';
import type { Net } from '../src/core/models/net.js';
import type { Optimizer } from '../src/core/optim/optimizers.js';
import { evaluate, fit, type FitOptions, type FitState, trainStep } from '../src/core/train/loop.js';
import { BIN, fashionSlices, ROOT, tempDir } from './helpers.js';

const SHAPE: ImageShape = [28, 28, 1];
let backend: string;
let train: Split;
let test: Split;

beforeAll(async () => {
  backend = await selectBackend('wasm');
  ({ train, test } = await fashionSlices(2000, 500));
});

const flat = (net: { getWeights(): tf.Tensor[] }): Float32Array[] =>
  net.getWeights().map((w) => w.dataSync() as Float32Array);

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let d = 0;
  a.forEach((x, i) => x.forEach((v, j) => (d = Math.max(d, Math.abs(v - b[i][j])))));
  return d;
}

/** Twenty steps on one fixed batch, on this thread and on `workers` threads; the parameters' largest difference. */
async function twentySteps(plan: TrainConfig, workers: number): Promise<number> {
  const n = 64;
  const rng = new Rng(7);
  const x = new Float32Array(n * 784).map(() => rng.next());
  const y = new Int32Array(n).map(() => rng.int(10));
  const spec = { inputShape: SHAPE, numClasses: 10, seed: 3, options: plan.modelOptions };
  const here = create(plan.model, spec);
  const there = create(plan.model, spec);
  const optHere = optimizerFor(plan);
  const optThere = optimizerFor(plan);
  for (let s = 0; s < 20; s++)
    tf.tidy(
      () => void trainStep(here, optHere, tf.tensor4d(x, [n, ...SHAPE]), y, plan.lr, plan.labelSmoothing),
    );
  const pool = await startPool(there, { workers, backend, plan, shape: SHAPE, batchSize: n });
  try {
    await pool.load(there, optThere);
    for (let s = 0; s < 20; s++) await pool.step(x, y, plan.lr, s);
    await pool.drain();
    await pool.sync(there, optThere);
  } finally {
    await pool.close();
  }
  const d = maxDiff(flat(here), flat(there));
  [here, there].forEach((m) => m.dispose());
  [optHere, optThere].forEach((o) => o.dispose());
  return d;
}

describe('worker threads', () => {
  // Dropout draws differ by thread, so these compare without it; batch norm normalizes per
  // shard (pool.ts), so cnn runs without it here. What remains is the order of float32 sums
  // (a shard's filter gradient is summed in other chunks: about 2e-6 relative, the size of
  // wasm's own difference from the cpu backend), which larger steps amplify; the cnn's rate
  // keeps its steps the size of real training's.
  //
  // The cnn's bound is wider: its Winograd filter gradient (backend/conv3x3.ts) sums all of a
  // batch's tiles in one pass, while each worker sums its half and the halves are then added,
  // so the two round differently at a few 1e-6 of a step's gradient (each is within 4e-6 of a
  // float64 reference), and 20 momentum steps amplify that. With F(2x2, 3x3) tiles the two
  // ended 4.8e-5 apart; F(4x4, 3x3), which rounds a little more and which the cnn's layers now
  // use, ends them 6.1e-4 apart. Neither run is the more accurate one.
  const plans: [string, Partial<TrainConfig>, number][] = [
    ['softmax', { model: 'softmax' }, 1e-5],
    ['softmax-scratch', { model: 'softmax-scratch' }, 1e-5],
    ['mlp', { model: 'mlp', optimizer: 'sgd', lr: 0.05, modelOptions: { dropout: 0 } }, 1e-5],
    ['lenet', { model: 'lenet', optimizer: 'sgd', lr: 0.05 }, 1e-5],
    ['cnn', { model: 'cnn', optimizer: 'sgd', lr: 0.005, momentum: 0.9, modelOptions: { dropout: 0 } }, 1e-3],
  ];
  for (const [name, input, bound] of plans) {
    it(`${name}: 2 workers and 1 thread agree within ${bound} after 20 steps on a fixed batch`, async () => {
      const d = await twentySteps(resolveConfig({ ...input, labelSmoothing: 0.1 }), 2);
      expect(d).toBeLessThan(bound);
    }, 120_000);
  }

  it('one worker thread is bit-identical to this thread', async () => {
    expect(await twentySteps(resolveConfig({ model: 'cnn', modelOptions: { dropout: 0 } }), 1)).toBe(0);
  }, 120_000);

  for (const batchNorm of [false, true]) {
    it(`2 workers evaluate as this thread does${batchNorm ? ' (batch norm: every thread uses the statistics the run keeps)' : ''}`, async () => {
      const plan = resolveConfig({
        model: 'cnn',
        modelOptions: { widths: [8, 16], batchNorm },
        batchSize: 64,
      });
      const net = create('cnn', { inputShape: SHAPE, numClasses: 10, seed: 5, options: plan.modelOptions });
      const opt = optimizerFor(plan);
      const pool = await startPool(net, { workers: 2, backend, plan, shape: SHAPE, batchSize: 64 });
      try {
        await pool.load(net, opt);
        // A few steps, so that the weights (and each worker's batch norm statistics) move.
        const n = 64;
        for (let s = 0; s < 6; s++) {
          const rows = Array.from({ length: n }, (_, i) => (s * n + i) % train.count);
          const x = new Float32Array(n * 784);
          rows.forEach((r, i) =>
            x.set(
              Array.from(train.images.subarray(r * 784, (r + 1) * 784), (v) => v / 255),
              i * 784,
            ),
          );
          await pool.step(
            x,
            Int32Array.from(rows, (r) => train.labels[r]),
            plan.lr,
            s,
          );
        }
        await pool.drain();
        await pool.sync(net, opt);
        const there = await pool.evaluate(test, SHAPE);
        const here = evaluate(net, test, { shape: SHAPE });
        // 500 images in batches of 64: a short last batch, split over both workers.
        expect(there.predicted).toEqual(here.predicted);
        expect(there.accuracy).toBe(here.accuracy);
        expect(Math.abs(there.loss - here.loss)).toBeLessThan(1e-5 * here.loss);
      } finally {
        await pool.close();
        net.dispose();
        opt.dispose();
      }
    }, 120_000);
  }

  const PLAN = resolveConfig({ model: 'mlp', epochs: 2, batchSize: 100, seed: 4, augment: true, workers: 2 });
  const newMlp = () => create('mlp', { inputShape: SHAPE, numClasses: 10, seed: 4, options: {} });

  /** 2 epochs of the mlp (dropout on) with augmentation and one-cycle, on 2 workers. */
  async function fitOnWorkers(net: Net, opt: Optimizer, extra: Partial<FitOptions> = {}) {
    const pool = await startPool(net, { workers: 2, backend, plan: PLAN, shape: SHAPE, batchSize: 100 });
    try {
      return await fit(net, opt, train, test, {
        ...fitOptionsFor(PLAN, SHAPE),
        schedule: 'onecycle',
        runner: pool,
        ...extra,
      });
    } finally {
      await pool.close();
    }
  }

  async function run(extra: Partial<FitOptions> = {}) {
    const net = newMlp();
    const opt = optimizerFor(PLAN);
    const history = await fitOnWorkers(net, opt, extra);
    return { history, weights: flat(net), net, opt };
  }

  it('the same seed on 2 workers gives identical metrics and weights twice', async () => {
    const a = await run();
    const b = await run();
    expect(b.history.map((m) => [m.train_loss, m.train_accuracy, m.test_accuracy])).toEqual(
      a.history.map((m) => [m.train_loss, m.train_accuracy, m.test_accuracy]),
    );
    expect(maxDiff(a.weights, b.weights)).toBe(0);
  }, 120_000);

  it('a 2-worker run stopped mid-epoch and resumed ends where an uninterrupted one does', async () => {
    const full = await run();
    let batches = 0;
    let stopped: FitState | undefined;
    const partial = await run({
      onBatch: () => void batches++,
      shouldStop: () => batches >= 27, // 7 batches into epoch 2
      onStop: (state) => void (stopped = structuredClone(state)),
    });
    expect(stopped).toMatchObject({ epoch: 1, batch: 7, step: 27 });
    // What a checkpoint holds: the weights and optimizer state, synced back from the workers.
    const net = newMlp();
    net.setWeights(partial.net.getWeights().map((w) => w.clone()));
    const opt = optimizerFor(PLAN);
    opt.setState(partial.opt.getState());
    const resumed = await fitOnWorkers(net, opt, { resume: stopped });
    expect(resumed.map((m) => m.test_accuracy)).toEqual(full.history.map((m) => m.test_accuracy));
    expect(resumed[1].train_loss).toBe(full.history[1].train_loss);
    expect(maxDiff(flat(net), full.weights)).toBe(0);
  }, 180_000);

  it('dropout masks are seeded: one thread repeats itself, and one worker thread matches it', async () => {
    const plan = resolveConfig({
      model: 'mlp',
      epochs: 1,
      batchSize: 100,
      seed: 9,
      modelOptions: { dropout: 0.3 },
    });
    const once = async (workers: number) => {
      const net = create('mlp', { inputShape: SHAPE, numClasses: 10, seed: 9, options: plan.modelOptions });
      const opt = optimizerFor(plan);
      const pool = workers
        ? await startPool(net, { workers, backend, plan, shape: SHAPE, batchSize: 100 })
        : undefined;
      try {
        await fit(net, opt, train, test, { ...fitOptionsFor(plan, SHAPE), runner: pool });
      } finally {
        await pool?.close();
      }
      return flat(net);
    };
    const a = await once(0);
    expect(maxDiff(a, await once(0))).toBe(0);
    expect(maxDiff(a, await once(1))).toBe(0);
  }, 120_000);

  it('chooses threads by the cost of a step: one for softmax and the mlp, the cores for lenet and the cnn', () => {
    const softmax = create('softmax', { inputShape: SHAPE, numClasses: 10, seed: 0 });
    const cnn = create('cnn', { inputShape: SHAPE, numClasses: 10, seed: 0 });
    expect(chooseWorkers(softmax, 256, undefined, 8).workers).toBe(1);
    const mlp = create('mlp', { inputShape: SHAPE, numClasses: 10, seed: 0 });
    const lenet = create('lenet', { inputShape: SHAPE, numClasses: 10, seed: 0 });
    expect(chooseWorkers(mlp, 256, undefined, 2).workers).toBe(1);
    expect(chooseWorkers(lenet, 256, undefined, 2).workers).toBe(2);
    expect(chooseWorkers(cnn, 256, undefined, 8).workers).toBe(8);
    expect(chooseWorkers(cnn, 256, undefined, 1).workers).toBe(1);
    expect(chooseWorkers(cnn, 64, undefined, 8).workers).toBe(4);
    expect(chooseWorkers(softmax, 256, 3, 8).workers).toBe(3);
  });

  it('a worker that throws ends the run with one line and exit 2, leaving no thread behind', async () => {
    const out = tempDir();
    const child = spawn(
      process.execPath,
      [BIN, 'train', '--model', 'mlp', '--epochs', '1', '--workers', '2', '--out', out],
      { cwd: ROOT, env: { ...process.env, IMGCLF_WORKER_FAIL: '1:3' } },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null); // hung
      }, 60_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(2);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/training worker 1 failed: injected failure at step 3/);
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 90_000);
});

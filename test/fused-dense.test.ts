/**
 * The fused dense training step (backend/fused-dense.ts): the same mathematics as the unfused
 * tfjs step up to the order of float sums, an exact resume on the fused path, the switch that
 * turns it off, and models without a fused step training as before.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { fusedDenseStep } from '../src/backend/fused-dense.js';
import { type ImageShape, pixelsAsFloat, type Split } from '../src/core/data/dataset.js';
import { Rng } from '../src/core/data/rng.js';
import { create } from '../src/core/models/index.js';
import type { Net } from '../src/core/models/net.js';
import { optimizerConfigFor, optimizerFor, resolveConfig, type TrainConfig } from '../src/core/plan.js';
import { fusedStepFor } from '../src/core/train/fused-step.js';
import { type EpochMetrics, type FitState, trainStep } from '../src/core/train/loop.js';
import { trainRun } from '../src/core/train/run.js';
import type { OptimizerState } from '../src/core/optim/optimizers.js';
import { fashionSlices } from './helpers.js';

const SHAPE: ImageShape = [28, 28, 1];
let train: Split;
let test: Split;

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
  ({ train, test } = await fashionSlices(3000, 1000));
});

/** An epoch's figures without its timings. */
const figures = (h: EpochMetrics[]) =>
  h.map(({ seconds, eval_seconds, ...m }) => (void seconds, void eval_seconds, m));

const weights = (net: Net): Float32Array[] => net.getWeights().map((w) => w.dataSync() as Float32Array);

/** Largest |a - b| over every weight, relative to the largest |a|. */
function relDiff(a: Float32Array[], b: Float32Array[]): number {
  let diff = 0;
  let scale = 0;
  a.forEach((x, i) =>
    x.forEach((v, j) => {
      diff = Math.max(diff, Math.abs(v - b[i][j]));
      scale = Math.max(scale, Math.abs(v));
    }),
  );
  return diff / scale;
}

/** Twenty steps on one batch of `n` images of `shape`, unfused and fused; the weights' relative difference. */
async function twentySteps(
  plan: TrainConfig,
  n: number,
  shape: ImageShape = SHAPE,
  path: 'floats' | 'bytes' = 'floats',
): Promise<number> {
  const size = shape[0] * shape[1] * shape[2];
  const rng = new Rng(7);
  // Fashion-MNIST's first images at 28x28 (pure noise with random labels makes momentum steps
  // chaotic, and then any difference in the last bit grows without bound); random bytes scaled
  // to [0, 1] at other shapes.
  const real = size === 784;
  const x = real
    ? pixelsAsFloat(train.images, 0, n * size)
    : new Float32Array(n * size).map(() => Math.floor(rng.next() * 256) / 255);
  const y = real ? Int32Array.from(train.labels.subarray(0, n)) : new Int32Array(n).map(() => rng.int(10));
  const spec = { inputShape: shape, numClasses: 10, seed: 3, options: {} };
  const tfjs = create('softmax', spec);
  const fused = create('softmax', spec);
  const optTfjs = optimizerFor(plan);
  const optFused = optimizerFor(plan);
  const lr = (s: number) => plan.lr * (1 - s / 40); // a schedule: the rate changes every step
  for (let s = 0; s < 20; s++)
    tf.tidy(
      () => void trainStep(tfjs, optTfjs, tf.tensor4d(x, [n, ...shape]), y, lr(s), plan.labelSmoothing),
    );
  const runner = fusedDenseStep(fused, {
    optimizer: optimizerConfigFor(plan),
    labelSmoothing: plan.labelSmoothing,
  });
  expect(runner).toBeDefined();
  await runner!.load(fused, optFused);
  // The byte path reads the split's rows in place (what the loop does for a byte split).
  const images = train.images as Uint8Array;
  const rows = Uint32Array.from({ length: n }, (_, i) => i);
  for (let s = 0; s < 20; s++)
    if (path === 'bytes') await runner!.stepRows!(images, rows, y, lr(s), s);
    else await runner!.step(x, y, lr(s), s);
  expect(await runner!.drain()).toHaveLength(20);
  await runner!.sync(fused, optFused);
  const d = Math.max(
    relDiff(weights(tfjs), weights(fused)),
    slotDiff(optTfjs.getState(), optFused.getState()),
  );
  [tfjs, fused].forEach((m) => m.dispose());
  [optTfjs, optFused].forEach((o) => o.dispose());
  return d;
}

/** The optimizer states' relative difference (0 when neither keeps slots); the step counts must agree. */
function slotDiff(a: OptimizerState, b: OptimizerState): number {
  expect(b.step).toBe(a.step);
  expect(b.slots.map((t) => t.shape)).toEqual(a.slots.map((t) => t.shape));
  const d = a.slots.length
    ? relDiff(
        a.slots.map((t) => t.dataSync() as Float32Array),
        b.slots.map((t) => t.dataSync() as Float32Array),
      )
    : 0;
  [...a.slots, ...b.slots].forEach((t) => t.dispose());
  return d;
}

describe('fused dense step', () => {
  const plans: [string, Record<string, unknown>][] = [
    ['plain sgd (the seed recipe)', {}],
    ['sgd, momentum', { momentum: 0.9 }],
    ['sgd, momentum, label smoothing', { momentum: 0.9, labelSmoothing: 0.1 }],
    [
      'sgd, nesterov, weight decay, label smoothing',
      { momentum: 0.9, nesterov: true, weightDecay: 0.01, labelSmoothing: 0.1 },
    ],
    ['adam, weight decay', { optimizer: 'adam', lr: 0.01, weightDecay: 0.001 }],
    ['adamw, label smoothing', { optimizer: 'adamw', lr: 0.01, weightDecay: 0.05, labelSmoothing: 0.1 }],
  ];
  for (const [name, choices] of plans) {
    it(`matches the unfused step within 1e-5 after 20 steps: ${name}`, async () => {
      const plan = resolveConfig({ model: 'softmax', ...choices });
      // 256 rows (the default batch) and 99 (odd: a short block and the single-row path);
      // 784 columns (a multiple of 16) and 27 (the 4-wide and scalar tails); float rows
      // copied in (step) and byte rows read in place (stepRows).
      expect(train.images).toBeInstanceOf(Uint8Array);
      expect(await twentySteps(plan, 256)).toBeLessThan(1e-5);
      expect(await twentySteps(plan, 256, SHAPE, 'bytes')).toBeLessThan(1e-5);
      expect(await twentySteps(plan, 99, SHAPE, 'bytes')).toBeLessThan(1e-5);
      expect(await twentySteps(plan, 99, [3, 3, 3])).toBeLessThan(1e-5);
    });
  }

  it('is chosen for softmax on wasm, and not for other models or optimizers', () => {
    const spec = { inputShape: SHAPE, numClasses: 10, seed: 1, options: {} };
    const plan = (choices: Record<string, unknown>) => {
      const p = resolveConfig(choices);
      return { optimizer: optimizerConfigFor(p), labelSmoothing: p.labelSmoothing };
    };
    const softmax = create('softmax', spec);
    const mlp = create('mlp', spec);
    const scratch = create('softmax-scratch', spec);
    expect(fusedStepFor(softmax, plan({ model: 'softmax' }))).toBeDefined();
    expect(fusedStepFor(mlp, plan({ model: 'mlp' }))).toBeUndefined();
    expect(fusedStepFor(scratch, plan({ model: 'softmax-scratch', optimizer: 'own' }))).toBeUndefined();
    [softmax, mlp, scratch].forEach((m) => m.dispose());
  });

  /** Trains softmax on the slice through trainRun; stops after `stopAfter` batches when given. */
  async function run(
    choices: Record<string, unknown>,
    opts: { stopAfter?: number; resume?: { net: Net; state: FitState; optimizer: OptimizerState } } = {},
  ) {
    const plan = resolveConfig({ model: 'softmax', epochs: 2, batchSize: 128, seed: 4, ...choices });
    const net =
      opts.resume?.net ?? create('softmax', { inputShape: SHAPE, numClasses: 10, seed: 4, options: {} });
    let batches = 0;
    let stopped: { state: FitState; optimizer: OptimizerState } | undefined;
    const r = await trainRun(
      net,
      plan,
      { train, test, shape: SHAPE },
      [
        {
          shouldStop: () => opts.stopAfter !== undefined && batches >= opts.stopAfter,
          onBatch: () => void batches++,
          onStop: (state, ctx) => void (stopped = { state, optimizer: ctx.optimizer!.getState() }),
        },
      ],
      opts.resume
        ? {
            resume: {
              state: opts.resume.state,
              optimizer: { name: plan.optimizer, state: opts.resume.optimizer },
            },
          }
        : {},
    );
    return { r, net, stopped };
  }

  it('trains through trainRun, and --no-fused (fused: false) gives the unfused figures', async () => {
    const recipe = { momentum: 0.9, nesterov: true, weightDecay: 0.001, labelSmoothing: 0.1 };
    const fused = await run(recipe);
    const unfused = await run({ ...recipe, fused: false });
    const h = fused.r.history;
    expect(h).toHaveLength(2);
    expect(h[1].test_accuracy).toBeGreaterThan(0.7);
    // Summation order aside, the same training: the same accuracies to a few examples.
    h.forEach((m, i) => {
      const u = unfused.r.history[i];
      expect(Math.abs(m.train_loss - u.train_loss)).toBeLessThan(1e-4);
      expect(Math.abs(m.test_accuracy - u.test_accuracy)).toBeLessThanOrEqual(0.003);
    });
    expect(relDiff(weights(fused.net), weights(unfused.net))).toBeLessThan(1e-4);
    // The switch really switches: the unfused run goes through tfjs's kernels, whose sums are
    // ordered differently, so the last bits differ.
    expect(relDiff(weights(fused.net), weights(unfused.net))).toBeGreaterThan(0);
    // fused: true is the default.
    const again = await run({ ...recipe, fused: true });
    expect(figures(again.r.history)).toEqual(figures(h));
    [fused, unfused, again].forEach((x) => x.net.dispose());
  });

  it('a run interrupted mid-epoch and resumed on the fused path ends bit for bit where an unbroken one does', async () => {
    const recipe = {
      optimizer: 'adamw',
      lr: 0.003,
      weightDecay: 0.01,
      labelSmoothing: 0.1,
      schedule: 'cosine',
    };
    const full = await run(recipe);
    const first = await run(recipe, { stopAfter: 31 }); // 7 batches into epoch 2 (24 per epoch)
    expect(first.stopped).toBeDefined();
    expect(first.stopped!.state.batch).toBe(7);
    // The checkpoint's weights, as the run directory would reload them, into a fresh net.
    const net = create('softmax', { inputShape: SHAPE, numClasses: 10, seed: 99, options: {} });
    net.setWeights(first.net.getWeights());
    const resumed = await run(recipe, { resume: { net, ...first.stopped! } });
    expect(figures(resumed.r.history)).toEqual(figures(full.r.history));
    expect(weights(resumed.net).map((w) => Array.from(w))).toEqual(
      weights(full.net).map((w) => Array.from(w)),
    );
    [full, first, resumed].forEach((x) => x.net.dispose());
  });

  it('mlp, which has no fused step, still trains through trainRun', async () => {
    const plan = resolveConfig({
      model: 'mlp',
      epochs: 1,
      batchSize: 100,
      seed: 2,
      modelOptions: { hidden: [32] },
    });
    const net = create('mlp', { inputShape: SHAPE, numClasses: 10, seed: 2, options: { hidden: [32] } });
    const r = await trainRun(net, plan, { train, test, shape: SHAPE });
    expect(r.history[0].test_accuracy).toBeGreaterThan(0.5);
    net.dispose();
  });
});

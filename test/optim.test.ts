/** Optimizers and LR schedules, step by step, against values worked out by hand. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { createOptimizer, type Optimizer } from '../src/core/optim/optimizers.js';
import { createSchedule } from '../src/core/optim/schedule.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Runs `grads.length` steps on a 1x1 weight matrix starting at 1; returns the values after each. */
function run(opt: Optimizer, grads: number[], lr = 0.1, shape: number[] = [1, 1]): number[] {
  const p = tf.variable(tf.ones(shape));
  const out: number[] = [];
  for (const g of grads) {
    opt.apply([p], [tf.fill(shape, g)], lr, 1);
    out.push(p.dataSync()[0]);
  }
  p.dispose();
  opt.dispose();
  return out;
}

function close(actual: number[], expected: number[], digits = 6): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect(a, `step ${i + 1}`).toBeCloseTo(expected[i], digits));
}

describe('optimizers', () => {
  it('sgd: p -= lr * g', () => {
    close(run(createOptimizer({ lr: 0.1, name: 'sgd' }), [0.5, -1]), [0.95, 1.05]);
  });

  it('sgd with momentum 0.9: buf = 0.9 buf + g', () => {
    // buf 0.5 -> p 0.95; buf 0.45 + 0.5 = 0.95 -> p 0.855
    close(run(createOptimizer({ lr: 0.1, name: 'sgd', momentum: 0.9 }), [0.5, 0.5]), [0.95, 0.855]);
  });

  it('sgd with Nesterov momentum and weight decay', () => {
    // step 1: g = 0.5 + 0.1*1 = 0.6, buf = 0.6, d = 0.6 + 0.9*0.6 = 1.14, p = 1 - 0.114 = 0.886
    // step 2: g = 0.5 + 0.0886 = 0.5886, buf = 0.54 + 0.5886 = 1.1286,
    //         d = 0.5886 + 0.9*1.1286 = 1.60434, p = 0.886 - 0.160434 = 0.725566
    const opt = createOptimizer({ lr: 0.1, name: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 0.1 });
    close(run(opt, [0.5, 0.5]), [0.886, 0.725566]);
  });

  it('weight decay skips biases (rank-1 variables)', () => {
    close(run(createOptimizer({ lr: 0.1, name: 'sgd', weightDecay: 0.1 }), [0.5], 0.1, [3]), [0.95]);
  });

  it('adam: bias-corrected moments', () => {
    // step 1: m = 0.05, v = 0.00025; m^ = 0.5, v^ = 0.25 -> update 1 -> p = 0.9
    // step 2 (g = -1): m = -0.055, v = 0.00124975; m^ = -0.289474, v^ = 0.625188
    //         -> update -0.366103 -> p = 0.936610
    close(run(createOptimizer({ lr: 0.001, name: 'adam' }), [0.5, -1]), [0.9, 0.9366103522]);
  });

  it('adam with L2 weight decay adds wd * p to the gradient', () => {
    // step 1: g = 0.6 -> p = 0.9; step 2: g = 0.5 + 0.09 = 0.59 -> p = 0.800047
    close(
      run(createOptimizer({ lr: 0.001, name: 'adam', weightDecay: 0.1 }), [0.5, 0.5]),
      [0.9, 0.8000473388],
    );
  });

  it('adamw decays the weight directly: p = p (1 - lr wd) - lr * update', () => {
    // step 1: 1 * (1 - 0.01) - 0.1 * 1 = 0.89; step 2: 0.89 * 0.99 - 0.1 * 1 = 0.7811
    close(run(createOptimizer({ lr: 0.001, name: 'adamw', weightDecay: 0.1 }), [0.5, 0.5]), [0.89, 0.7811]);
  });

  it('state round-trips: a restored optimizer continues identically', () => {
    const a = createOptimizer({ lr: 0.001, name: 'adamw', weightDecay: 0.1 });
    const p = tf.variable(tf.ones([1, 1]));
    a.apply([p], [tf.fill([1, 1], 0.5)], 0.1, 1);
    const b = createOptimizer({ lr: 0.001, name: 'adamw', weightDecay: 0.1 });
    b.setState(a.getState());
    const q = tf.variable(p.clone());
    a.apply([p], [tf.fill([1, 1], -1)], 0.1, 1);
    b.apply([q], [tf.fill([1, 1], -1)], 0.1, 1);
    expect(q.dataSync()[0]).toBe(p.dataSync()[0]);
  });

  it('unknown names and own without a model updater are clear errors', () => {
    expect(() => createOptimizer({ lr: 0.001, name: 'rmsprop' })).toThrow(
      /unknown optimizer 'rmsprop'; choose one of: sgd, adam, adamw, own/,
    );
    expect(() => createOptimizer({ lr: 0.1, name: 'own' })).toThrow(/needs a model with its own updater/);
  });
});

describe('schedules (lr 1, 10 steps, 2 per epoch)', () => {
  const base = { lr: 1, totalSteps: 10, stepsPerEpoch: 2 };
  const at = (s: (n: number) => number, steps: number[]) => steps.map(s);

  it('constant, with a 2-step warmup', () => {
    close(at(createSchedule({ ...base, name: 'constant' }), [0, 9]), [1, 1]);
    close(at(createSchedule({ ...base, name: 'constant', warmupSteps: 2 }), [0, 1, 2, 9]), [0.5, 1, 1, 1]);
  });

  it('step: x0.1 every 2 epochs', () => {
    const s = createSchedule({ ...base, name: 'step', stepEpochs: 2, gamma: 0.1 });
    close(at(s, [0, 3, 4, 7, 8, 9]), [1, 1, 0.1, 0.1, 0.01, 0.01]);
  });

  it('cosine from lr to 0, and after a warmup', () => {
    close(at(createSchedule({ ...base, name: 'cosine' }), [0, 5, 10]), [1, 0.5, 0]);
    // warmup 2: then t = (s - 2) / 8; s = 6 is halfway
    close(at(createSchedule({ ...base, name: 'cosine', warmupSteps: 2 }), [0, 1, 2, 6]), [0.5, 1, 1, 0.5]);
  });

  it('onecycle: lr/25 rising to lr over 30%, then cosine to lr/25/1e4', () => {
    const s = createSchedule({ ...base, name: 'onecycle' });
    // rise over round(0.3 * 10) = 3 steps: 0.04, 0.04 + 0.96/3, ..., 1 at step 3
    close(at(s, [0, 1, 3, 10]), [0.04, 0.36, 1, 0.000004]);
  });

  it('unknown schedule names are a clear error', () => {
    expect(() => createSchedule({ ...base, name: 'linear' })).toThrow(
      /unknown schedule 'linear'; choose one of: constant, step, cosine, onecycle/,
    );
  });
});

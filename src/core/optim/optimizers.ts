/**
 * Optimizers: sgd (momentum, Nesterov, weight decay), adam and adamw, with the learning rate
 * passed at every step so a schedule (core/optim/schedule.ts) can set it.
 *
 * These are written here rather than taken from tf.train because tfjs has no AdamW (decoupled
 * weight decay) and no weight decay at all, fixes some learning rates at construction, and
 * does not expose its moment estimates in a stable order for an exact resume. The update rules
 * follow PyTorch's torch.optim so that figures compare:
 *
 *   sgd:   g = grad + wd * p;  buf = mu * buf + g;  d = nesterov ? g + mu * buf : buf;  p -= lr * d
 *   adam:  g = grad + wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *          p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 *   adamw: p -= lr * wd * p, then adam without the wd term
 *
 * Weight decay applies to weight matrices and kernels (rank >= 2) only, not to biases or
 * batch-norm scales, the usual practice.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors.js';

export const OPTIMIZERS = ['sgd', 'adam', 'adamw', 'own'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** Optimizer state for checkpoints: the step count and one list of slot tensors per variable. */
export interface OptimizerState {
  step: number;
  slots: tf.Tensor[];
}

export interface Optimizer {
  readonly name: string;
  /** Base learning rate (a schedule scales it per step). */
  readonly lr: number;
  /**
   * 'sum' when the update expects the gradient of the summed batch loss (the seed's updater
   * divides by the batch size itself); default 'mean'.
   */
  readonly lossReduction?: 'mean' | 'sum';
  /** One update of `vars` by `grads` (same order) at learning rate `lr`. */
  apply(vars: tf.Variable[], grads: tf.Tensor[], lr: number, batchSize: number): void;
  getState(): OptimizerState;
  /** Restores state saved by getState (takes ownership of the tensors). */
  setState(state: OptimizerState): void;
  dispose(): void;
}

export interface OptimizerConfig {
  name: string;
  /** Base learning rate; the plan (core/plan.ts) holds the defaults. */
  lr: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Supplies the model's own optimizer for name 'own'. */
  own?: (lr: number) => Optimizer;
}

function decays(v: tf.Variable): boolean {
  return v.rank >= 2;
}

class Slots {
  tensors: tf.Variable[][] = [];
  constructor(private readonly perVar: number) {}
  get(vars: tf.Variable[]): tf.Variable[][] {
    if (this.tensors.length === 0)
      this.tensors = vars.map((v) =>
        Array.from({ length: this.perVar }, () => tf.tidy(() => tf.variable(tf.zerosLike(v), false))),
      );
    return this.tensors;
  }
  flat(): tf.Tensor[] {
    return this.tensors.flat().map((t) => t.clone());
  }
  restore(slots: tf.Tensor[]): void {
    this.dispose();
    const out: tf.Variable[][] = [];
    for (let i = 0; i < slots.length; i += this.perVar)
      out.push(slots.slice(i, i + this.perVar).map((t) => tf.variable(t, false)));
    slots.forEach((t) => t.dispose());
    this.tensors = out;
  }
  dispose(): void {
    this.tensors.flat().forEach((t) => t.dispose());
    this.tensors = [];
  }
}

export function sgd(cfg: {
  lr: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
}): Optimizer {
  const mu = cfg.momentum ?? 0;
  const wd = cfg.weightDecay ?? 0;
  const slots = new Slots(mu > 0 ? 1 : 0);
  let step = 0;
  return {
    name: 'sgd',
    lr: cfg.lr,
    apply(vars, grads, lr) {
      step++;
      const bufs = slots.get(vars);
      tf.tidy(() => {
        vars.forEach((p, i) => {
          let g = grads[i];
          if (wd > 0 && decays(p)) g = tf.add(g, tf.mul(p, wd));
          let d = g;
          if (mu > 0) {
            const buf = bufs[i][0];
            buf.assign(tf.add(tf.mul(buf, mu), g));
            d = cfg.nesterov ? tf.add(g, tf.mul(buf, mu)) : buf;
          }
          p.assign(tf.sub(p, tf.mul(d, lr)));
        });
      });
    },
    getState: () => ({ step, slots: slots.flat() }),
    setState(s) {
      step = s.step;
      slots.restore(s.slots);
    },
    dispose: () => slots.dispose(),
  };
}

export function adam(cfg: {
  lr: number;
  weightDecay?: number;
  decoupled?: boolean;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}): Optimizer {
  const b1 = cfg.beta1 ?? 0.9;
  const b2 = cfg.beta2 ?? 0.999;
  const eps = cfg.epsilon ?? 1e-8;
  const wd = cfg.weightDecay ?? 0;
  const slots = new Slots(2);
  let step = 0;
  return {
    name: cfg.decoupled ? 'adamw' : 'adam',
    lr: cfg.lr,
    apply(vars, grads, lr) {
      step++;
      const ms = slots.get(vars);
      const c1 = 1 - b1 ** step;
      const c2 = 1 - b2 ** step;
      tf.tidy(() => {
        vars.forEach((p, i) => {
          let g = grads[i];
          let base: tf.Tensor = p;
          if (wd > 0 && decays(p)) {
            if (cfg.decoupled) base = tf.mul(p, 1 - lr * wd);
            else g = tf.add(g, tf.mul(p, wd));
          }
          const [m, v] = ms[i];
          m.assign(tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
          v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)));
          const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
          p.assign(tf.sub(base, tf.mul(update, lr)));
        });
      });
    },
    getState: () => ({ step, slots: slots.flat() }),
    setState(s) {
      step = s.step;
      slots.restore(s.slots);
    },
    dispose: () => slots.dispose(),
  };
}

export function createOptimizer(cfg: OptimizerConfig): Optimizer {
  switch (cfg.name) {
    case 'sgd':
      return sgd(cfg);
    case 'adam':
      return adam({ ...cfg, decoupled: false });
    case 'adamw':
      return adam({ ...cfg, decoupled: true });
    case 'own':
      if (!cfg.own)
        throw new UserError("optimizer 'own' needs a model with its own updater (softmax-scratch)");
      return cfg.own(cfg.lr);
    default:
      throw new UserError(`unknown optimizer '${cfg.name}'; choose one of: ${OPTIMIZERS.join(', ')}`);
  }
}

/**
 * Discriminative learning rates (fastai's layer groups): one optimizer of the same kind per run
 * of variables that share a rate factor, each stepped at `lr * factor`. Separate optimizers
 * rather than scaled gradients, because Adam's update does not change with the gradient's
 * scale: only its rate sets the step. `factors` has one entry per variable, in the order `apply`
 * gets them. The state is the groups' slots in variable order, laid out exactly as a single
 * optimizer over all the variables lays out its own, so checkpoints keep their format.
 */
export function withRateFactors(make: () => Optimizer, factors: readonly number[]): Optimizer {
  const groups: { from: number; to: number; factor: number; opt: Optimizer }[] = [];
  factors.forEach((factor, i) => {
    const last = groups.at(-1);
    if (last && last.factor === factor) last.to = i + 1;
    else groups.push({ from: i, to: i + 1, factor, opt: make() });
  });
  if (groups.length === 0) groups.push({ from: 0, to: 0, factor: 1, opt: make() });
  const first = groups[0].opt;
  return {
    name: first.name,
    lr: first.lr,
    ...(first.lossReduction ? { lossReduction: first.lossReduction } : {}),
    apply(vars, grads, lr, batchSize) {
      for (const g of groups)
        g.opt.apply(vars.slice(g.from, g.to), grads.slice(g.from, g.to), lr * g.factor, batchSize);
    },
    getState() {
      const states = groups.map((g) => g.opt.getState());
      return { step: states[0].step, slots: states.flatMap((s) => s.slots) };
    },
    setState(s) {
      const perVar = factors.length ? s.slots.length / factors.length : 0;
      if (!Number.isInteger(perVar)) {
        s.slots.forEach((t) => t.dispose());
        throw new UserError(
          `the optimizer state holds ${s.slots.length} slots for ${factors.length} variables; it cannot be resumed`,
        );
      }
      for (const g of groups)
        g.opt.setState({ step: s.step, slots: s.slots.slice(g.from * perVar, g.to * perVar) });
    },
    dispose: () => groups.forEach((g) => g.opt.dispose()),
  };
}

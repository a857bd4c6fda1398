/**
 * One training run: the sequence every door follows (the CLI's session, the library's `fit`,
 * the page through `fit`), with what each door adds given as callbacks (Keras's `fit` with
 * callbacks, fastai's `Learner` events):
 *
 *   optimizer from the plan ─▶ (resume: its state) ─▶ fit, or memorize (knn) ─▶ kept epoch
 *                                  │ every batch: shouldStop?, onBatch
 *                                  │ every epoch: onEpoch (save, print, early-stop bookkeeping)
 *                                  └ an interrupt: onStop (a checkpoint to resume from)
 *
 * Saving the best epoch, checkpoints, progress bars, interrupts and reports are callbacks
 * composed by each door; none of them is a branch in here. Which epoch the run keeps is
 * `keptEpoch`'s rule. Loading data, choosing a backend and writing files stay with the doors:
 * this module is browser-safe.
 */
import type { ImageShape, Split } from '../data/dataset.js';
import { UserError } from '../errors.js';
import type { Net } from '../models/net.js';
import { type Optimizer, type OptimizerState, withRateFactors } from '../optim/optimizers.js';
import { fitOptionsFor, optimizerConfigFor, optimizerFor, type TrainConfig } from '../plan.js';
import { fusedStepFor } from './fused-step.js';
import {
  type EpochMetrics,
  fit,
  type FitPhase,
  type FitState,
  type KeptEpoch,
  keptEpoch,
  type StepRunner,
} from './loop.js';
import { memorizeAndEvaluate, memorizes } from './memorize.js';

/** What a callback may read while the run goes on. */
export interface RunContext {
  model: Net;
  /** The run's optimizer (undefined for a model that memorizes). */
  optimizer?: Optimizer;
  plan: TrainConfig;
}

/** What a door adds to a run. Every hook is optional; a run calls its callbacks in order. */
export interface RunCallback {
  /** Checked before every batch: true ends the run as an interrupt (onStop gets its state). */
  shouldStop?(): boolean;
  /** After every batch, with the epoch (from 1), batches done and batches in the epoch. */
  onBatch?(epoch: number, done: number, total: number): void | Promise<void>;
  /** After every epoch; `best` is true when validation accuracy improved. */
  onEpoch?(m: EpochMetrics, state: FitState, best: boolean, run: RunContext): void | Promise<void>;
  /** When an interrupt ended the run, with the state to resume from. */
  onStop?(state: FitState, run: RunContext): void | Promise<void>;
}

/** The data of a run: already split, at the model's input shape. */
export interface RunData {
  train: Split;
  test: Split;
  /** A validation split: the run keeps the epoch with its best accuracy. */
  val?: Split;
  shape: ImageShape;
}

export interface RunOptions {
  /** Continue from a checkpoint: the loop state and the optimizer's (the model holds its weights). */
  resume?: { state: FitState; optimizer: { name: string; state: OptimizerState } };
  /** Runs the steps on worker threads (backend/workers); the caller closes it. */
  runner?: StepRunner;
  /**
   * End with the kept epoch's weights in the model (a door that keeps the run in memory); a
   * door that saves every epoch keeps the best one on disk instead.
   */
  restoreBest?: boolean;
  /** This run is one phase of a longer one (fine-tuning: core/train/loop.ts FitPhase). */
  phase?: FitPhase;
  /**
   * Discriminative rates: per trainable variable (the model's order), the factor of the plan's
   * rate it trains at (optimizers.ts withRateFactors). Steps then run here, never fused or on
   * worker threads, whose optimizers know one rate.
   */
  rateFactors?: readonly number[];
}

export interface RunResult {
  history: EpochMetrics[];
  /** Where the run stands (undefined when it was interrupted before its first epoch of a fresh start). */
  state?: FitState;
  /** The epoch the run keeps and the test accuracy it reports. */
  kept: KeptEpoch;
  /** An interrupt ended the run before its last epoch (or mid-epoch): it can be resumed. */
  interrupted: boolean;
}

/** Trains `model` under `plan` (resolved and sized) on `data`, calling `callbacks` along the way. */
export async function trainRun(
  model: Net,
  plan: TrainConfig,
  data: RunData,
  callbacks: RunCallback[] = [],
  opts: RunOptions = {},
): Promise<RunResult> {
  let stopAsked = false;
  const shouldStop = (): boolean => {
    stopAsked ||= callbacks.some((c) => c.shouldStop?.());
    return stopAsked;
  };
  if (memorizes(model)) {
    // A model that memorizes (knn) has no optimizer and no batches: one pass is its one epoch.
    const { history, state } = memorizeAndEvaluate(model, data.train, data.test, data.val, data.shape);
    const run = { model, plan };
    for (const c of callbacks) await c.onEpoch?.(history[0], state, data.val !== undefined, run);
    return { history, state, kept: keptEpoch(state), interrupted: false };
  }
  const rates = opts.rateFactors;
  if (rates && rates.length !== model.trainableVariables.length)
    throw new Error(`${rates.length} rate factors for ${model.trainableVariables.length} variables`);
  const optimizer = rates ? withRateFactors(() => optimizerFor(plan), rates) : optimizerFor(plan);
  const run: RunContext = { model, optimizer, plan };
  let state: FitState | undefined = opts.resume?.state;
  try {
    if (opts.resume) {
      if (opts.resume.optimizer.name !== optimizer.name)
        throw new UserError(
          `the checkpoint's optimizer '${opts.resume.optimizer.name}' differs from the plan's '${optimizer.name}'; it cannot be resumed`,
        );
      optimizer.setState(opts.resume.optimizer.state);
    }
    // A fused step where the backend has one for this model, unless the plan turns it off or
    // the steps already run elsewhere (worker threads).
    const runner = rates
      ? undefined
      : (opts.runner ??
        (plan.fused === false
          ? undefined
          : fusedStepFor(model, {
              optimizer: optimizerConfigFor(plan),
              labelSmoothing: plan.labelSmoothing,
            })));
    const history = await fit(model, optimizer, data.train, data.test, {
      ...fitOptionsFor(plan, data.shape),
      val: data.val,
      resume: opts.resume?.state,
      runner,
      restoreBest: opts.restoreBest,
      phase: opts.phase,
      shouldStop: callbacks.some((c) => c.shouldStop) ? shouldStop : undefined,
      onBatch: async (epoch, done, total) => {
        for (const c of callbacks) await c.onBatch?.(epoch, done, total);
      },
      onEpoch: async (m, s, best) => {
        state = s;
        for (const c of callbacks) await c.onEpoch?.(m, s, best, run);
      },
      onStop: async (s) => {
        state = s;
        for (const c of callbacks) await c.onStop?.(s, run);
      },
    });
    const interrupted =
      stopAsked && state?.stoppedEarly === undefined && (state?.batch !== 0 || history.length < plan.epochs);
    return { history, state, kept: keptEpoch(state ?? { history, bestEpoch: 0 }), interrupted };
  } finally {
    optimizer.dispose();
  }
}

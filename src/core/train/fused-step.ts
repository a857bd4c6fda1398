/**
 * Fused training steps: a backend may compute a whole optimizer step of some models in one call
 * (forward pass, softmax cross-entropy, backward pass and update) instead of a dozen small
 * tfjs kernels. It does so as a `StepRunner`, the loop's hook for steps computed elsewhere, so
 * the loop still draws, augments and schedules every batch, and `fit`, checkpoints and resume
 * work as they do for the worker threads: the runner loads the net's weights and the
 * optimizer's state, and syncs them back into the tfjs variables before anything evaluates or
 * saves.
 *
 * This module only keeps the registry: core stays browser-safe and knows no kernel. The wasm
 * backend registers its fused dense step (backend/fused-dense.ts); `trainRun` asks here for a
 * runner unless the plan turns fused steps off (`fused: false`, `--no-fused`) or the run has
 * one already (worker threads).
 */
import type { Net } from '../models/net.js';
import type { OptimizerConfig } from '../optim/optimizers.js';
import type { StepRunner } from './loop.js';

/** What a fused step needs from the plan besides the net: the update rule and the loss. */
export interface FusedStepPlan {
  optimizer: OptimizerConfig;
  labelSmoothing: number;
}

/** Returns a runner for `net` under `plan`, or undefined when it does not handle that case. */
export type FusedStepFactory = (net: Net, plan: FusedStepPlan) => StepRunner | undefined;

const factories: FusedStepFactory[] = [];

/** Adds a fused step (registering the same function twice adds it once). */
export function registerFusedStep(factory: FusedStepFactory): void {
  if (!factories.includes(factory)) factories.push(factory);
}

/** The first registered fused step that handles `net` under `plan`, if any. */
export function fusedStepFor(net: Net, plan: FusedStepPlan): StepRunner | undefined {
  for (const factory of factories) {
    const runner = factory(net, plan);
    if (runner) return runner;
  }
  return undefined;
}

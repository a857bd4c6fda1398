/**
 * Learning-rate schedules, evaluated per optimizer step by the training loop:
 *
 *   constant   lr
 *   step       lr * gamma^floor(epoch / stepEpochs)           (epoch = step / stepsPerEpoch)
 *   cosine     lr * (1 + cos(pi * t)) / 2, t from 0 to 1 over the steps after warmup
 *   onecycle   linear rise from lr / 25 to lr over the first 30% (or the warmup), then cosine
 *              down to lr / 25 / 1e4 (fastai / PyTorch OneCycleLR's defaults)
 *
 * Any schedule can start with a linear warmup: for step s < W the rate is lr * (s + 1) / W, then
 * the schedule runs over the remaining steps.
 */
import { UserError } from '../errors.js';

export const SCHEDULES = ['constant', 'step', 'cosine', 'onecycle'] as const;
export type ScheduleName = (typeof SCHEDULES)[number];

export interface ScheduleConfig {
  name: string;
  /** Base (peak) learning rate. */
  lr: number;
  /** Total optimizer steps of the run. */
  totalSteps: number;
  stepsPerEpoch: number;
  /** Warmup length in steps. */
  warmupSteps?: number;
  /** step: epochs between decays (default 1/3 of the run, at least 1). */
  stepEpochs?: number;
  /** step: decay factor (default 0.1). */
  gamma?: number;
}

export type Schedule = (step: number) => number;

export function checkSchedule(name: string): void {
  if (!(SCHEDULES as readonly string[]).includes(name))
    throw new UserError(`unknown schedule '${name}'; choose one of: ${SCHEDULES.join(', ')}`);
}

/** The learning rate at each optimizer step (0-based). */
export function createSchedule(cfg: ScheduleConfig): Schedule {
  checkSchedule(cfg.name);
  const { lr, totalSteps, stepsPerEpoch } = cfg;
  const warm = Math.min(Math.max(0, Math.round(cfg.warmupSteps ?? 0)), totalSteps);
  const cosine = (t: number, from: number, to: number) =>
    to + ((from - to) * (1 + Math.cos(Math.PI * t))) / 2;
  const frac = (s: number, start: number, end: number) =>
    end > start ? Math.min(1, Math.max(0, (s - start) / (end - start))) : 1;
  switch (cfg.name as ScheduleName) {
    case 'constant':
      return (s) => (s < warm ? (lr * (s + 1)) / warm : lr);
    case 'step': {
      const every = cfg.stepEpochs ?? Math.max(1, Math.round(totalSteps / stepsPerEpoch / 3));
      const gamma = cfg.gamma ?? 0.1;
      return (s) => (s < warm ? (lr * (s + 1)) / warm : lr * gamma ** Math.floor(s / stepsPerEpoch / every));
    }
    case 'cosine':
      return (s) => (s < warm ? (lr * (s + 1)) / warm : cosine(frac(s, warm, totalSteps), lr, 0));
    case 'onecycle': {
      const rise = warm > 0 ? warm : Math.round(0.3 * totalSteps);
      const start = lr / 25;
      const end = start / 1e4;
      return (s) =>
        s < rise ? start + (lr - start) * frac(s, 0, rise) : cosine(frac(s, rise, totalSteps), lr, end);
    }
  }
}

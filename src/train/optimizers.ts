/** Optimizers by name. The seed's is plain minibatch SGD: w <- w - lr * mean-gradient. */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors.js';

export const OPTIMIZERS = ['sgd'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

export interface OptimizerConfig {
  name: string;
  lr: number;
}

export function createOptimizer(cfg: OptimizerConfig): tf.Optimizer {
  switch (cfg.name) {
    case 'sgd':
      return tf.train.sgd(cfg.lr);
    default:
      throw new UserError(`unknown optimizer '${cfg.name}'; choose one of: ${OPTIMIZERS.join(', ')}`);
  }
}

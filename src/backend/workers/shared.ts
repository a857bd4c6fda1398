/**
 * The memory the training pool's threads share, and the few rules for touching it. Both sides
 * (pool.ts on the main thread, thread.ts in each worker) build their views from one
 * `SharedLayout`, so the offsets are written down once.
 *
 * Commands: STEP (a training step on a batch slot), LOAD, SYNC, and EVAL (evaluation mode on a
 * batch slot: predicted classes, summed loss and correct count per shard).
 *
 * Every command goes through `ctrl`: the main thread writes the command and its parameters,
 * then bumps SEQ and wakes the workers; each worker bumps DONE when it has finished. Commands
 * are strictly one at a time, so a plain counter is enough to know that all W workers are
 * done with command s (DONE = W * s). Inside a step the workers meet once more, at a barrier,
 * after each has written its shard's gradients and before any of them reads the others'.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ImageShape } from '../../core/data/dataset.js';
import type { Optimizer } from '../../core/optim/optimizers.js';
import type { TrainConfig } from '../../core/plan.js';
import type { Net, NetArtifacts } from '../../core/models/net.js';

/** Int32 slots of the control block. */
export const CTRL = {
  /** Commands issued so far. */
  SEQ: 0,
  /** The current command (one of COMMAND). */
  CMD: 1,
  /** Worker completions so far, over all commands. */
  DONE: 2,
  /** Workers arrived at the gradient barrier in this generation. */
  ARRIVED: 3,
  /** Barrier generation: bumped when the last worker arrives. */
  GEN: 4,
  /** 1 once a worker has failed: everyone stops waiting. */
  FAILED: 5,
  LENGTH: 8,
} as const;

export const COMMAND = { STEP: 1, LOAD: 2, SYNC: 3, EVAL: 4 } as const;

/** Float64 slots of the step parameters. */
export const PARAM = { LR: 0, SIZE: 1, SLOT: 2, STEP: 3, LENGTH: 4 } as const;

/** What every worker gets at start-up (structured-cloned, SharedArrayBuffers shared). */
export interface WorkerInit {
  index: number;
  workers: number;
  backend: string;
  plan: TrainConfig;
  shape: ImageShape;
  artifacts: NetArtifacts;
  layout: SharedLayout;
}

/** The shared buffers; see `views`. */
export interface SharedLayout {
  batchSize: number;
  rowSize: number;
  /** Trainable parameters in all, in net.trainableVariables order. */
  params: number;
  ctrl: SharedArrayBuffer;
  stepParams: SharedArrayBuffer;
  /** Two batch slots, so the next batch is built while this one trains. */
  images: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  /** One gradient row per worker. */
  grads: SharedArrayBuffer;
  /** Per worker: the shard's summed loss and correct count. */
  stats: SharedArrayBuffer;
  /** Per batch slot: the arg-max class of every row, written by EVAL. */
  predicted: SharedArrayBuffer;
}

export function createLayout(
  workers: number,
  batchSize: number,
  rowSize: number,
  params: number,
): SharedLayout {
  return {
    batchSize,
    rowSize,
    params,
    ctrl: new SharedArrayBuffer(CTRL.LENGTH * 4),
    stepParams: new SharedArrayBuffer(PARAM.LENGTH * 8),
    images: new SharedArrayBuffer(2 * batchSize * rowSize * 4),
    labels: new SharedArrayBuffer(2 * batchSize * 4),
    grads: new SharedArrayBuffer(workers * params * 4),
    stats: new SharedArrayBuffer(workers * 2 * 8),
    predicted: new SharedArrayBuffer(2 * batchSize * 4),
  };
}

export interface Views {
  ctrl: Int32Array;
  param: Float64Array;
  /** Batch slot i's images and labels. */
  images: [Float32Array, Float32Array];
  labels: [Int32Array, Int32Array];
  /** Worker k's gradient row. */
  grads: Float32Array[];
  stats: Float64Array;
  /** Batch slot i's predicted classes (EVAL). */
  predicted: [Int32Array, Int32Array];
}

export function views(l: SharedLayout, workers: number): Views {
  const slot = l.batchSize * l.rowSize;
  return {
    ctrl: new Int32Array(l.ctrl),
    param: new Float64Array(l.stepParams),
    images: [new Float32Array(l.images, 0, slot), new Float32Array(l.images, slot * 4, slot)],
    labels: [
      new Int32Array(l.labels, 0, l.batchSize),
      new Int32Array(l.labels, l.batchSize * 4, l.batchSize),
    ],
    grads: Array.from({ length: workers }, (_, k) => new Float32Array(l.grads, k * l.params * 4, l.params)),
    stats: new Float64Array(l.stats),
    predicted: [
      new Int32Array(l.predicted, 0, l.batchSize),
      new Int32Array(l.predicted, l.batchSize * 4, l.batchSize),
    ],
  };
}

/** Rows [lo, hi) of an n-example batch that worker k of `workers` trains on. */
export function shard(n: number, k: number, workers: number): [number, number] {
  return [Math.floor((k * n) / workers), Math.floor(((k + 1) * n) / workers)];
}

/** A tensor's shape and values, as weights and optimizer slots cross between threads. */
export interface Packed {
  shape: number[];
  data: Float32Array;
}

/** What LOAD hands to the workers and SYNC brings back. */
export interface TrainingState {
  weights: Packed[];
  optimizerStep: number;
  slots: Packed[];
}

function pack(t: tf.Tensor): Packed {
  return { shape: t.shape, data: t.dataSync() as Float32Array };
}

/** A net's weights and its optimizer's state, as plain arrays to post to another thread. */
export function packState(net: Net, optimizer: Optimizer): TrainingState {
  const opt = optimizer.getState();
  const state = { weights: net.getWeights().map(pack), optimizerStep: opt.step, slots: opt.slots.map(pack) };
  opt.slots.forEach((t) => t.dispose());
  return state;
}

/** Puts a posted TrainingState into a net and its optimizer. */
export function unpackState(net: Net, optimizer: Optimizer, s: TrainingState): void {
  const weights = s.weights.map((p) => tf.tensor(p.data, p.shape, 'float32'));
  net.setWeights(weights);
  weights.forEach((t) => t.dispose());
  optimizer.setState({
    step: s.optimizerStep,
    slots: s.slots.map((p) => tf.tensor(p.data, p.shape, 'float32')),
  });
}

/** What a worker reports when it stops because another one failed (not a cause of its own). */
export const PEER_FAILED = 'another worker failed';

/** A worker's failure, posted before it raises FAILED. */
export interface WorkerFailure {
  error: string;
}

/**
 * tfjs-layers' Dropout with seeded masks, registered under the same class name so saved models
 * stay plain TensorFlow.js layers models (dropout does nothing at inference anyway).
 *
 * Why: tfjs draws each dropout mask from a generator seeded by Math.random (or, given a seed,
 * the same mask at every call), so a run with dropout could not repeat or resume exactly. The
 * training loop now seeds a stream per step (`seedDropout`, from the run's seed and the step;
 * a worker thread adds its index), and the masks come from it: the same seed gives the same
 * masks on every platform, and a resumed run draws what the unbroken one would. Drawing the
 * mask in JavaScript into one buffer also replaces tfjs's per-element generator and four
 * kernels (randomUniform, Add, Floor, Multiply) with one Multiply. Without a seeded stream
 * (a model used outside the loop) the stock code runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Rng } from '../data/rng.js';

type DropoutArgs = Parameters<typeof tfl.layers.dropout>[0];

let stream: Rng | undefined;

/**
 * Seeds the masks of the next training step. The three numbers are mixed so that neighbouring
 * steps and workers get unrelated streams.
 */
export function seedDropout(seed: number, step: number, worker = 0): void {
  stream = new Rng(
    Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b) ^ Math.imul(worker + 1, 0xc2b2ae35),
  );
}

/** Back to tfjs's own masks (outside a training loop). */
export function unseedDropout(): void {
  stream = undefined;
}

// The Dropout class itself is not exported by tfjs-layers; its factory's product tells us it.
const BaseDropout = tfl.layers.dropout({ rate: 0.5 }).constructor as new (
  args: DropoutArgs,
) => tfl.layers.Layer;

export class Dropout extends BaseDropout {
  static className = 'Dropout';

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const self = this as unknown as { rate: number; noiseShape?: number[] };
    const rng = stream;
    if (!kwargs?.training || !rng || self.noiseShape || !(self.rate > 0 && self.rate < 1))
      return super.call(inputs, kwargs);
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const keep = 1 - self.rate;
    const scale = 1 / keep;
    const mask = new Float32Array(x.size);
    for (let i = 0; i < mask.length; i++) mask[i] = rng.next() < keep ? scale : 0;
    return tf.tidy(() => tf.mul(x, tf.tensor(mask, x.shape, 'float32')));
  }
}

// Registered as "Dropout": loading any layers model in this process builds this class.
tf.serialization.registerClass(
  Dropout as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
);

/** A Dropout layer (same arguments as tfl.layers.dropout). */
export function dropout(args: DropoutArgs): tfl.layers.Layer {
  return new Dropout(args);
}

/**
 * tfjs-layers' Dense with a cheaper backward pass, registered under the same class name so
 * saved models stay plain TensorFlow.js layers models.
 *
 * Why: in gradient mode tfjs-core runs a linear Dense as one fused matMul whose gradient is a
 * `customGrad` computing the input gradient eagerly, even when the input is data and its
 * gradient is thrown away. For the first layer of a 784 -> 10 model that wasted 256x10 * 10x784
 * product took ~40% of a training step on wasm. Written as matMul + add, the gradients are
 * evaluated lazily and tfjs prunes the ones nothing needs. Inference keeps the fused kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

type DenseArgs = Parameters<typeof tfl.layers.dense>[0];

interface DenseInternals {
  kernel: { read(): tf.Tensor };
  bias: { read(): tf.Tensor } | null;
  activation: { apply(x: tf.Tensor): tf.Tensor };
}

// The Dense class itself is not exported by tfjs-layers; its factory's product tells us it.
const BaseDense = tfl.layers.dense({ units: 1 }).constructor as new (args: DenseArgs) => tfl.layers.Layer;

export class Dense extends BaseDense {
  static className = 'Dense';

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (!kwargs?.training || x.rank !== 2) return super.call(inputs, kwargs);
    const self = this as unknown as DenseInternals;
    return tf.tidy(() => {
      let y = tf.matMul(x, self.kernel.read());
      if (self.bias) y = tf.add(y, self.bias.read());
      return self.activation.apply(y);
    });
  }
}

// Registered as "Dense": loading any layers model in this process builds this class.
tf.serialization.registerClass(
  Dense as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
);

/** A Dense layer (same arguments as tfl.layers.dense). */
export function dense(args: DenseArgs): tfl.layers.Layer {
  return new Dense(args);
}

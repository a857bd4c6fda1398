/** Helpers for the kernel tests, which load tfjs themselves (helpers.ts does not, for the rest). */
import * as tf from '@tensorflow/tfjs-core';

/** Runs a kernel by name through the engine on the current backend, with tfjs's attributes. */
export function runKernel(name: string, inputs: Record<string, tf.Tensor>, attrs: object): tf.Tensor {
  return tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
}

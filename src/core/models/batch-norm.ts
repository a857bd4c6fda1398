/**
 * tfjs-layers' BatchNormalization with a fused training path, registered under the same class
 * name so saved models stay plain TensorFlow.js layers models.
 *
 * Why: in training mode tfjs-layers normalizes with tf.moments and tf.batchNorm, and their
 * autodiff gradients run a dozen separate kernels (Mean, SquaredDifference, Tile, Sum with
 * transposes, Sub, Mul, Rsqrt, ...) over the whole activation; on wasm that more than doubled
 * the cnn's training step. When the current backend has the fused kernels named below
 * (backend/bn-kernels.ts registers them for wasm), training runs one forward kernel and one
 * backward kernel, each two passes over the data, as a single tape node (tf.customGrad).
 *
 * The function is the same as tfjs-layers': batch mean and biased batch variance over every
 * axis but the normalized one, y = (x - mean) / sqrt(var + epsilon) * gamma + beta, gradients
 * through the statistics, and the moving statistics updated as
 * moving <- moving - (moving - batch) * (1 - momentum) outside the gradient path.
 * Inference, other axes, layers without gamma or beta, and backends without the kernels use
 * tfjs-layers' own code.
 *
 * This module is browser-safe: it only names the kernels, it does not register them.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

/** Forward kernel: inputs x, scale, offset; attr varianceEpsilon; outputs [y, mean, variance]. */
export const BN_TRAIN_KERNEL = 'ImgclfBatchNormTrain';
/** Backward kernel: inputs dy, x, scale, mean, variance; attr varianceEpsilon; outputs [dx, dscale, doffset]. */
export const BN_TRAIN_GRAD_KERNEL = 'ImgclfBatchNormTrainGrad';

type BatchNormArgs = NonNullable<Parameters<typeof tfl.layers.batchNormalization>[0]>;

interface LayerVariableLike {
  read(): tf.Tensor;
  write(v: tf.Tensor): void;
}

interface BatchNormInternals {
  axis: number;
  momentum: number;
  epsilon: number;
  gamma?: LayerVariableLike;
  beta?: LayerVariableLike;
  movingMean: LayerVariableLike;
  movingVariance: LayerVariableLike;
}

// The BatchNormalization class itself is not exported by tfjs-layers; its factory's product is one.
const BaseBatchNorm = tfl.layers.batchNormalization({}).constructor as new (
  args?: BatchNormArgs,
) => tfl.layers.Layer;

/** True when the current backend has both fused kernels. */
export function fusedBatchNormAvailable(): boolean {
  const backend = tf.getBackend();
  return (
    backend != null &&
    tf.getKernel(BN_TRAIN_KERNEL, backend) != null &&
    tf.getKernel(BN_TRAIN_GRAD_KERNEL, backend) != null
  );
}

/**
 * Batch-normalizes x over all axes but the last with the fused kernels: returns the output (one
 * tape node whose gradient is the fused backward kernel) and the batch mean and variance, which
 * carry no gradient and belong to the caller.
 */
export function fusedBatchNormTrain(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const attrs = { varianceEpsilon: epsilon } as unknown as tf.NamedAttrMap;
  let stats: tf.Tensor[] = [];
  const f = tf.customGrad(((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mean, variance] = tf
      .engine()
      .runKernel(BN_TRAIN_KERNEL, { x: xi, scale: g, offset: b }, attrs) as tf.Tensor[];
    // customGrad keeps only its value; the statistics leave its scope through keep().
    stats = [tf.keep(mean), tf.keep(variance)];
    save([xi, g, mean, variance]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sg, sm, sv] = saved;
        return tf
          .engine()
          .runKernel(
            BN_TRAIN_GRAD_KERNEL,
            { dy, x: sx, scale: sg, mean: sm, variance: sv },
            attrs,
          ) as tf.Tensor[];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad<tf.Tensor>>[0]);
  // Named like tfjs-core's op scopes ("<op>__op"): profiles list the customGrad node under this
  // name, and tools that skip op wrappers do not count the kernel inside it twice.
  const y = tf.tidy('imgclfBatchNormTrain__op', () => f(x, gamma, beta));
  return { y, mean: stats[0], variance: stats[1] };
}

export class BatchNormalization extends BaseBatchNorm {
  static className = 'BatchNormalization';

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const self = this as unknown as BatchNormInternals;
    const axis = self.axis >= 0 ? self.axis : self.axis + x.rank;
    if (
      !kwargs?.training ||
      axis !== x.rank - 1 ||
      x.dtype !== 'float32' ||
      !self.gamma ||
      !self.beta ||
      !fusedBatchNormAvailable()
    ) {
      return super.call(inputs, kwargs);
    }
    return tf.tidy(() => {
      const { y, mean, variance } = fusedBatchNormTrain(
        x,
        self.gamma!.read(),
        self.beta!.read(),
        self.epsilon,
      );
      // tfjs-layers' doMovingAverage, op for op.
      const update = (variable: LayerVariableLike, value: tf.Tensor) => {
        tf.tidy(() => {
          const orig = variable.read();
          variable.write(tf.sub(orig, tf.mul(tf.sub(orig, value), 1 - self.momentum)));
        });
        value.dispose();
      };
      update(self.movingMean, mean);
      update(self.movingVariance, variance);
      return y;
    });
  }
}

// Registered as "BatchNormalization": loading any layers model in this process builds this class.
tf.serialization.registerClass(
  BatchNormalization as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
);

/** A BatchNormalization layer (same arguments as tfl.layers.batchNormalization). */
export function batchNormalization(args?: BatchNormArgs): tfl.layers.Layer {
  return new BatchNormalization(args);
}

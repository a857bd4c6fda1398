/**
 * Softmax, cross-entropy and accuracy, as the seed defines them, computed stably from logits.
 *
 * softmax(o)_j = exp(o_j) / sum_k exp(o_k)       -> softmax([2,4,6]) = [0.0159, 0.1173, 0.8668]
 * CE(y, p)     = -sum_j y_j ln p_j = -ln p_label  -> -ln 0.8668 = 0.1429 for y = (0,0,1)
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-layers' bundle registers tfjs-core's gradient functions (tfjs-core's own
// register_all_gradients module cannot be imported as Node ESM), which training needs.
import '@tensorflow/tfjs-layers';
/**
 * The fused softmax cross-entropy kernel's name. src/backend/fused-xent.ts registers it for the
 * CPU-side backends; where it is missing, the composed ops below are used.
 */
export const SOFTMAX_XENT = 'ImgclfSoftmaxCrossEntropy';

/** Row-wise softmax; subtracting the row max first keeps exp() finite for logits like 1000. */
export function softmax(logits: tf.Tensor2D): tf.Tensor2D {
  return tf.softmax(logits);
}

/**
 * Per-example cross-entropy between one-hot targets and softmax(logits), with the gradient
 * written directly as (softmax - target): one fused expression instead of the tape walking
 * back through log-sum-exp, which saves a handful of kernels per step.
 */
const crossEntropyFromLogits = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [logits, target, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  const logProbs = tf.logSoftmax(logits);
  save([logProbs, target]);
  const value = tf.neg(tf.sum(tf.mul(target, logProbs), -1)) as tf.Tensor1D;
  const gradFunc = (dy: tf.Tensor1D, saved: tf.Tensor[]) => {
    const [lp, t] = saved;
    return [tf.mul(tf.sub(tf.exp(lp), t), tf.expandDims(dy, -1)), tf.zerosLike(t)];
  };
  return { value, gradFunc };
}) as (logits: tf.Tensor2D, target: tf.Tensor2D) => tf.Tensor1D;

/**
 * Per-example cross-entropy from logits and integer labels. `labelSmoothing` = eps mixes the
 * one-hot target with the uniform distribution: (1 - eps) * onehot + eps / K.
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, labelSmoothing = 0): tf.Tensor1D {
  const k = logits.shape[1];
  let target = tf.cast(tf.oneHot(labels, k), 'float32') as tf.Tensor2D;
  if (labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - labelSmoothing), labelSmoothing / k);
  return crossEntropyFromLogits(logits, target);
}

/** Cross-entropy between explicit probabilities and one-hot rows, as the seed writes it. */
export function crossEntropyFromProbs(probs: tf.Tensor2D, oneHot: tf.Tensor2D): tf.Tensor1D {
  return tf.neg(tf.sum(tf.mul(oneHot, tf.log(probs)), -1));
}

/** Number of rows whose arg-max equals the label (the seed's `accuracy`, before dividing). */
export function correctCount(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32'));
}

/**
 * Per-example cross-entropy plus the batch's correct-prediction count, for the training step.
 * Uses the fused kernel where the backend has one (wasm, cpu: see backend/fused-xent.ts), and
 * the composed ops above elsewhere; both give the same values and gradient.
 */
export function crossEntropyAndCorrect(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  labelSmoothing = 0,
): { loss: tf.Tensor1D; correct: tf.Scalar } {
  if (!tf.getKernel(SOFTMAX_XENT, tf.getBackend())) {
    return { loss: crossEntropy(logits, labels, labelSmoothing), correct: correctCount(logits, labels) };
  }
  let correct: tf.Scalar | undefined;
  const fused = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [lg, lb, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const [value, grad, count] = tf.engine().runKernel(SOFTMAX_XENT, { logits: lg, labels: lb }, {
      labelSmoothing,
    } as unknown as tf.NamedAttrMap) as tf.Tensor[];
    // Kept: the gradient tape disposes everything its forward pass creates but the value.
    correct = tf.keep(count as tf.Scalar);
    save([grad]);
    const gradFunc = (dy: tf.Tensor1D, saved: tf.Tensor[]) => [
      tf.mul(saved[0], tf.expandDims(dy, -1)),
      tf.zerosLike(lb),
    ];
    return { value: value as tf.Tensor1D, gradFunc };
  }) as (logits: tf.Tensor2D, labels: tf.Tensor1D) => tf.Tensor1D;
  const loss = fused(logits, labels);
  return { loss, correct: correct! };
}

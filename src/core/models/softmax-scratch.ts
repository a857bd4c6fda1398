/**
 * The seed's from-scratch softmax regression (d2l 3.6), on raw tfjs variables: its own softmax,
 * its own cross-entropy and its own minibatch SGD updater, no layers API and no tfjs optimizer.
 * It trains through the same loop as every other model (core/train/loop.ts); the loop takes the
 * model's loss and, with `--optimizer own` (this model's default), its updater.
 *
 * With the same seed it starts from the same weights as `softmax` (the same N(0, 0.01^2)
 * draw) and sees the same batches, so the two reach the same accuracy.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Optimizer } from '../optim/optimizers.js';
import type { Net, NetArtifacts } from './net.js';
import { layerSeed, register, type ModelSpec } from './registry.js';

/** softmax(X)_ij = exp(X_ij) / sum_k exp(X_ik), as the seed writes it, after subtracting the row max. */
export function scratchSoftmax(x: tf.Tensor2D): tf.Tensor2D {
  // The seed exponentiates directly; subtracting the row max changes nothing mathematically and
  // keeps exp() finite when a logit grows large.
  const shifted = tf.sub(x, tf.max(x, 1, true));
  const e = tf.exp(shifted);
  return tf.div(e, tf.sum(e, 1, true));
}

/** The seed's cross_entropy(y_hat, y) = -log(y_hat[range(n), y]), per example. */
export function scratchCrossEntropy(
  probs: tf.Tensor2D,
  labels: tf.Tensor1D,
  labelSmoothing = 0,
): tf.Tensor1D {
  const k = probs.shape[1];
  // Picking y_hat[i, y_i] is a dot product with the one-hot row; smoothing mixes in 1/K.
  let target = tf.cast(tf.oneHot(labels, k), 'float32') as tf.Tensor2D;
  if (labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - labelSmoothing), labelSmoothing / k);
  // A floor on the probability keeps log finite for a confidently wrong example.
  return tf.neg(tf.sum(tf.mul(target, tf.log(tf.maximum(probs, 1e-12))), 1));
}

/**
 * The seed's `updater(batch_size)`: d2l.sgd([W, b], lr, batch_size), which steps every parameter
 * by -lr * grad / batch_size where grad is that of the *summed* batch loss.
 */
export function scratchUpdater(lr = 0.1): Optimizer {
  return {
    name: 'own',
    lr,
    lossReduction: 'sum',
    apply(vars, grads, lr, batchSize) {
      tf.tidy(() => {
        vars.forEach((v, i) => v.assign(tf.sub(v, tf.mul(grads[i], lr / batchSize))));
      });
    },
    getState: () => ({ step: 0, slots: [] }),
    setState: () => {},
    dispose: () => {},
  };
}

class SoftmaxScratch implements Net {
  readonly name = 'softmax-scratch';
  readonly trainableVariables: tf.Variable[];
  private readonly numInputs: number;

  constructor(
    private readonly spec: Pick<ModelSpec, 'inputShape' | 'numClasses'>,
    w: tf.Tensor,
    b: tf.Tensor,
  ) {
    this.numInputs = spec.inputShape.reduce((a, c) => a * c, 1);
    this.trainableVariables = [
      tf.variable(w, true, undefined, 'float32'),
      tf.variable(b, true, undefined, 'float32'),
    ];
  }

  /** The seed's net(X) = softmax(X.reshape(-1, W.shape[0]) @ W + b), here as logits. */
  apply(x: tf.Tensor): tf.Tensor {
    const [w, b] = this.trainableVariables;
    return tf.add(tf.matMul(tf.reshape(x, [-1, this.numInputs]), w), b);
  }

  loss(logits: tf.Tensor2D, labels: tf.Tensor1D, labelSmoothing: number): tf.Tensor1D {
    return scratchCrossEntropy(scratchSoftmax(logits), labels, labelSmoothing);
  }

  countParams(): number {
    return this.trainableVariables.reduce((s, v) => s + v.size, 0);
  }

  getWeights(): tf.Tensor[] {
    return this.trainableVariables.map((v) => v.clone());
  }

  setWeights(weights: tf.Tensor[]): void {
    this.trainableVariables.forEach((v, i) => v.assign(weights[i]));
  }

  async artifacts(): Promise<NetArtifacts> {
    const [w, b] = this.trainableVariables;
    const { data, specs } = await tf.io.encodeWeights({ W: w, b });
    return {
      modelTopology: {
        imgclf: this.name,
        inputShape: this.spec.inputShape,
        numClasses: this.spec.numClasses,
      },
      weightSpecs: specs,
      weightData: data,
    };
  }

  dispose(): void {
    this.trainableVariables.forEach((v) => v.dispose());
  }
}

export function softmaxScratch(spec: ModelSpec): Net {
  const n = spec.inputShape.reduce((a, c) => a * c, 1);
  // The same draw as softmax's dense kernel initializer: tf.randomNormal with the same seed.
  const w = tf.randomNormal([n, spec.numClasses], 0, 0.01, 'float32', layerSeed(spec.seed, 0));
  const b = tf.zeros([spec.numClasses]);
  const net = new SoftmaxScratch(spec, w, b);
  w.dispose();
  b.dispose();
  return net;
}

async function load(a: NetArtifacts): Promise<Net> {
  const topo = a.modelTopology as {
    imgclf?: string;
    inputShape?: [number, number, number];
    numClasses?: number;
  };
  if (topo.imgclf !== 'softmax-scratch' || !topo.inputShape || !topo.numClasses)
    throw new Error('not a softmax-scratch model');
  const named = tf.io.decodeWeights(a.weightData, a.weightSpecs);
  if (!named.W || !named.b) throw new Error('softmax-scratch weights need W and b');
  const net = new SoftmaxScratch(
    { inputShape: topo.inputShape, numClasses: topo.numClasses },
    named.W,
    named.b,
  );
  named.W.dispose();
  named.b.dispose();
  return net;
}

register({
  name: 'softmax-scratch',
  description: "the seed's from-scratch softmax regression: raw variables, own softmax, loss and SGD",
  create: softmaxScratch,
  options: {},
  load,
  ownOptimizer: scratchUpdater,
  defaults: { optimizer: 'own' },
});

/**
 * k nearest neighbours by cosine similarity: few-shot classification with no training. The
 * "weights" are the training examples themselves (their inputs, L2-normalized, and their
 * labels), so a saved run is self-contained. It has no trainable variables: the session
 * memorizes the training split (`memorize`) and evaluates once instead of running the loop.
 *
 * With `--backbone` the inputs are a frozen network's features ([1, 1, D]); without one, knn
 * works on the flattened pixels.
 *
 * `apply` gives logits: the log of each class's share of the k nearest neighbours' votes, each
 * vote weighted by exp(similarity / 0.1), floored at 1e-3. The softmax of these logits is
 * (nearly) that share, which is what `predict` and `serve` show as probabilities. With nothing
 * memorized, every class is equally likely.
 *
 * Options: `k` (default 5; fewer when fewer examples are memorized).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Net, NetArtifacts } from './net.js';
import { type OptionDecls, optionValues, register, type ModelSpec } from './registry.js';

export const KNN_DEFAULT_K = 5;
/** Similarities are divided by this before exponentiating: nearer neighbours weigh much more. */
const TEMPERATURE = 0.1;
/** The smallest vote share a class gets, so logits stay finite. */
const FLOOR = 1e-3;
/** Similarity matrices are computed at most this many entries (rows x memory) at a time. */
const CHUNK_ENTRIES = 1 << 23;

/** The options `create('knn', ...)` takes. */
export const KNN_OPTIONS = {
  k: {
    type: 'int',
    min: 1,
    max: 1000,
    default: KNN_DEFAULT_K,
    flag: '--knn-k <k>',
    help: 'neighbours that vote (fewer when fewer examples are memorized)',
  },
} as const satisfies OptionDecls;

/** k, checked against its declaration (a saved model's too). */
function kOf(options: Record<string, unknown>): number {
  return optionValues('knn', KNN_OPTIONS, options).k;
}

/** Rows divided by their L2 norm (zero rows stay zero). */
function l2Normalize(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.add(tf.norm(x, 'euclidean', 1, true), 1e-12)));
}

export class KnnNet implements Net {
  readonly name = 'knn';
  readonly trainableVariables: tf.Variable[] = [];
  readonly k: number;
  private readonly dim: number;
  /** [N, D] normalized examples and [N] labels (as float32, the run directory's weight type). */
  private memory: tf.Tensor2D;
  private labels: tf.Tensor1D;

  constructor(
    private readonly spec: Pick<ModelSpec, 'inputShape' | 'numClasses'>,
    k: number,
  ) {
    this.k = k;
    this.dim = spec.inputShape.reduce((a, c) => a * c, 1);
    this.memory = tf.zeros([0, this.dim]);
    this.labels = tf.zeros([0]);
  }

  /** Examples memorized. */
  get size(): number {
    return this.memory.shape[0];
  }

  /**
   * Replaces the memory with `count` examples of `rowSize` values each (any scale: cosine
   * similarity does not see it) and their labels.
   */
  memorize(inputs: Float32Array | Uint8Array, labels: Uint8Array, count: number): void {
    if (inputs.length !== count * this.dim || labels.length < count)
      throw new Error(`knn: ${count} examples of ${this.dim} values expected`);
    const values =
      inputs instanceof Float32Array ? inputs.subarray(0, count * this.dim) : Float32Array.from(inputs);
    const memory = tf.tidy(() => l2Normalize(tf.tensor2d(values, [count, this.dim])));
    const y = tf.tensor1d(Float32Array.from(labels.subarray(0, count)));
    this.replace(memory, y);
  }

  private replace(memory: tf.Tensor2D, labels: tf.Tensor1D): void {
    this.memory.dispose();
    this.labels.dispose();
    this.memory = memory;
    this.labels = labels;
  }

  apply(x: tf.Tensor): tf.Tensor {
    const n = x.shape[0];
    const classes = this.spec.numClasses;
    const size = this.size;
    if (size === 0) return tf.tidy(() => tf.fill([n, classes], Math.log(1 / classes)));
    const k = Math.min(this.k, size);
    const rows = Math.max(1, Math.floor(CHUNK_ENTRIES / size));
    return tf.tidy(() => {
      const q = l2Normalize(tf.reshape(x, [n, this.dim]));
      const parts: tf.Tensor2D[] = [];
      for (let start = 0; start < n; start += rows) {
        const m = Math.min(rows, n - start);
        // Each chunk's similarity matrix is freed before the next is made.
        parts.push(
          tf.tidy(() => {
            const sims = tf.matMul(tf.slice(q, [start, 0], [m, this.dim]), this.memory, false, true);
            const { values, indices } = tf.topk(sims, k);
            const weights = tf.exp(tf.div(tf.sub(values, 1), TEMPERATURE)); // [m, k], at most 1
            const neighbourLabels = tf.cast(tf.gather(this.labels, indices), 'int32'); // [m, k]
            const votes = tf.sum(tf.mul(tf.oneHot(neighbourLabels, classes), tf.expandDims(weights, 2)), 1);
            const share = tf.div(votes, tf.sum(votes, 1, true));
            return tf.log(tf.add(share, FLOOR)) as tf.Tensor2D;
          }),
        );
      }
      return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
    });
  }

  countParams(): number {
    return 0;
  }

  getWeights(): tf.Tensor[] {
    return [this.memory.clone(), this.labels.clone()];
  }

  /** [memory [N, D], labels [N]]: any N (the memory is data, not a fixed-size parameter). */
  setWeights(weights: tf.Tensor[]): void {
    const [memory, labels] = weights;
    if (
      memory?.rank !== 2 ||
      memory.shape[1] !== this.dim ||
      labels?.rank !== 1 ||
      labels.shape[0] !== memory.shape[0]
    )
      throw new Error(`knn weights are [N, ${this.dim}] examples and [N] labels`);
    this.replace(memory.clone() as tf.Tensor2D, labels.clone() as tf.Tensor1D);
  }

  async artifacts(): Promise<NetArtifacts> {
    const { data, specs } = await tf.io.encodeWeights({ memory: this.memory, labels: this.labels });
    return {
      modelTopology: {
        imgclf: this.name,
        inputShape: this.spec.inputShape,
        numClasses: this.spec.numClasses,
        k: this.k,
      },
      weightSpecs: specs,
      weightData: data,
    };
  }

  dispose(): void {
    this.memory.dispose();
    this.labels.dispose();
  }
}

export function knn(spec: ModelSpec): Net {
  return new KnnNet(spec, kOf(spec.options ?? {}));
}

async function load(a: NetArtifacts): Promise<Net> {
  const topo = a.modelTopology as {
    imgclf?: string;
    inputShape?: [number, number, number];
    numClasses?: number;
    k?: number;
  };
  if (topo.imgclf !== 'knn' || !topo.inputShape || !topo.numClasses) throw new Error('not a knn model');
  const net = new KnnNet({ inputShape: topo.inputShape, numClasses: topo.numClasses }, kOf({ k: topo.k }));
  const named = tf.io.decodeWeights(a.weightData, a.weightSpecs);
  if (!named.memory || !named.labels) throw new Error('knn weights need memory and labels');
  try {
    net.setWeights([named.memory, named.labels]);
  } finally {
    named.memory.dispose();
    named.labels.dispose();
  }
  return net;
}

register({
  name: 'knn',
  description:
    "k nearest neighbours by cosine similarity, no training (few-shot; best on a --backbone's features); --knn-k",
  create: knn,
  options: KNN_OPTIONS,
  load,
  memorizes: true,
  // Nothing is trained: the session memorizes the training split and evaluates once.
  defaults: { epochs: 1 },
});

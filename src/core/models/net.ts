/**
 * What the training loop, evaluation and the run directory need from a model. A tfjs layers
 * model fits behind it (`layersNet`), and so does a model written on raw variables
 * (softmax-scratch), so both train through the one loop in core/train/loop.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

/** A model's topology and weights, as the run directory stores them. */
export interface NetArtifacts {
  /** Layers topology (tfjs format), or `{ imgclf: <model name>, ... }` for non-layers models. */
  modelTopology: object;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
}

export interface Net {
  /** Registered model name. */
  readonly name: string;
  /** Logits (no softmax) for NHWC images; `training` enables dropout and batch statistics. */
  apply(x: tf.Tensor, kwargs?: { training?: boolean }): tf.Tensor;
  /** Trainable variables in a fixed order (optimizer state is saved in this order). */
  readonly trainableVariables: tf.Variable[];
  countParams(): number;
  /**
   * Multiply-adds of one forward pass for one example: what decides whether splitting a batch
   * over threads pays (backend/workers/choose.ts). Without it, the parameter count stands in,
   * which is exact for dense-only nets.
   */
  macsPerExample?(): number;
  /** Topology and every weight, including non-trainable ones (batch-norm statistics). */
  artifacts(): Promise<NetArtifacts>;
  /** Copies weights (same order and shapes as artifacts()) into this net. */
  setWeights(weights: tf.Tensor[]): void;
  /** Current weights, same order as artifacts(). */
  getWeights(): tf.Tensor[];
  dispose(): void;
  /**
   * Per-example loss, when the model brings its own (softmax-scratch does, as the seed's
   * from-scratch chapter does); otherwise the loop uses core/train/loss.ts crossEntropy.
   */
  loss?(logits: tf.Tensor2D, labels: tf.Tensor1D, labelSmoothing: number): tf.Tensor1D;
  /**
   * A model that learns by storing its examples (knn) has no trainable variables and brings
   * its own "fit": it takes `count` rows of inputs in [0, 1] and their labels, in one pass.
   */
  memorize?(inputs: Float32Array, labels: Uint8Array, count: number): void;
}

/** Wraps a tfjs layers model. */
export function layersNet(name: string, model: tfl.LayersModel): Net {
  return {
    name,
    apply: (x, kwargs) => model.apply(x, { training: kwargs?.training ?? false }) as tf.Tensor,
    // LayerVariable.read() is the tf.Variable itself.
    trainableVariables: model.trainableWeights.map((w) => w.read() as tf.Variable),
    countParams: () => model.countParams(),
    macsPerExample: () => layerMacs(model),
    artifacts: async () => {
      let captured: NetArtifacts | undefined;
      await model.save(
        tf.io.withSaveHandler(async (a) => {
          captured = {
            modelTopology: a.modelTopology as object,
            weightSpecs: a.weightSpecs ?? [],
            weightData: tf.io.concatenateArrayBuffers(
              a.weightData === undefined ? [] : ([] as ArrayBuffer[]).concat(a.weightData),
            ),
          };
          return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
        }),
      );
      return captured!;
    },
    setWeights: (weights) => model.setWeights(weights),
    getWeights: () => model.getWeights(),
    dispose: () => model.dispose(),
  };
}

/**
 * Forward multiply-adds per example: a kernel's size times the output positions it slides
 * over (1 for a dense layer). Layers without kernels (pooling, activations) are not counted.
 */
function layerMacs(model: tfl.LayersModel): number {
  let macs = 0;
  for (const layer of model.layers) {
    const kernel = layer.getWeights().find((w) => w.rank >= 2);
    if (!kernel) continue;
    const out = layer.outputShape as (number | null)[];
    const positions = out.length === 4 ? (out[1] ?? 1) * (out[2] ?? 1) : 1;
    macs += kernel.size * positions;
  }
  return macs;
}

/** Rebuilds a layers model saved by `layersNet(...).artifacts()`. */
export async function loadLayersNet(name: string, a: NetArtifacts): Promise<Net> {
  const model = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: a.modelTopology,
      weightSpecs: a.weightSpecs,
      weightData: a.weightData,
    }),
  );
  return layersNet(name, model);
}

/**
 * Fine-tuning a TensorFlow.js layers backbone (`train --backbone SRC --fine-tune N`), fastai's
 * `fine_tune`: after the head has trained on the frozen backbone's cached features, backbone
 * and head become one tfjs layers model, the last N backbone layers that hold weights are made
 * trainable, and that model trains end to end on the images through the usual `trainRun`.
 *
 * The model is Sequential: the backbone's layers up to its feature layer (nested Sequential
 * models, as a Teachable Machine export has, are flattened into it; a functional model, such as
 * a MobileNet or Teachable Machine's base, is nested whole, cut at the feature layer when that
 * is one of its own), a Flatten where the features are a map, then the head's layers after its
 * own Flatten, each renamed `head_NAME` (the head's names may repeat the backbone's, and a
 * model's layer names are unique; a name taken already gets a number). Which layers are the
 * head is counted from the end (a backbone that was fine-tuned before has `head_` layers of its
 * own). A [-1, 1] backbone gets a Rescaling layer first, so the model takes pixels in [0, 1] as
 * every imgclf run does. The run directory stores this whole model, since the backbone's
 * weights changed: it loads, evaluates, exports and resumes like any layers run.
 *
 * Frozen layers are `trainable: false` (saved so in model.json, so a resumed run finds the same
 * ones), which keeps their variables out of the net's trainable variables: the optimizer never
 * sees them. While training, the backbone's layers run in inference mode, as Keras' transfer
 * learning guide calls its base model with `training=False`: batch-norm layers keep their
 * pretrained moving statistics (a few hundred pictures give noisy batch statistics), and
 * dropout inside the backbone stays off, so the head goes on seeing the features it was trained
 * on in the first phase (computed in inference mode, then cached). The head's own layers train
 * as usual (an mlp head's dropout). --fine-tune-bn lets the unfrozen batch-norm layers use
 * batch statistics and update their moving ones instead.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../../core/errors.js';
import type { Net } from '../../core/models/index.js';
import { layersNet } from '../../core/models/index.js';
import { isModel } from '../../core/models/layer-paths.js';
import { fineTuneFactor } from '../../core/plan.js';
import type { Backbone } from './backbone.js';

/** Layer names of the head's part of a fine-tuned model start with this. */
const HEAD_PREFIX = 'head_';
/** The first layer of a [-1, 1] backbone's fine-tuned model: pixels x -> 2x - 1. */
const RANGE_LAYER = 'backbone_input_range';
/** Flattens a feature map into the vector the head was trained on. */
const FLATTEN_LAYER = 'backbone_features_flatten';

type LayerJson = { class_name: string; config: Record<string, unknown> };

/** A backbone layer and its config as model.json holds it. */
interface Part {
  /** A layer, or a functional model taken whole (up to the feature layer when it is inside). */
  layer: tfl.layers.Layer;
  json: LayerJson;
}

const notInput = (l: tfl.layers.Layer) => l.getClassName() !== 'InputLayer';

/** The layers that compute, in order: a model's own, nested models' flattened into them. */
function leaves(layer: tfl.layers.Layer): tfl.layers.Layer[] {
  return isModel(layer) ? layer.layers.filter(notInput).flatMap(leaves) : [layer];
}

/** Whether `model` holds a layer named `name`, at any depth. */
const holds = (model: tfl.LayersModel, name: string): boolean =>
  model.layers.some((l) => l.name === name || (isModel(l) && holds(l, name)));

/**
 * The backbone's layers in order up to and including `feature` (all of them when no layer has
 * that name: the output is the features). Sequential models, nested ones too, are flattened
 * into their layers; a functional model (MobileNet) is one part, cut at the feature layer when
 * it is one of its own layers.
 */
function flatLayers(model: tfl.LayersModel, feature: string, source: string): Part[] {
  const parts: Part[] = [];
  const jsonOf = (m: tfl.LayersModel): LayerJson => {
    const j = m.toJSON(null, false) as unknown as LayerJson;
    return { class_name: j.class_name, config: j.config };
  };
  const functional = (m: tfl.LayersModel, json: LayerJson): boolean => {
    const at = m.layers.find((l) => l.name === feature);
    if (!at) {
      if (holds(m, feature))
        throw new UserError(
          `backbone ${source}: its feature layer ${feature} is inside a model nested in a functional model; --fine-tune cannot cut there: choose a layer of the outer model with --backbone-layer`,
        );
      parts.push({ layer: m, json });
      return false;
    }
    // The model from its input to the feature layer, which shares the layers (and weights).
    const cut = tfl.model({ inputs: m.inputs, outputs: at.output as tfl.SymbolicTensor });
    parts.push({ layer: cut, json: jsonOf(cut) });
    return true;
  };
  const walk = (m: tfl.LayersModel, json: LayerJson): boolean => {
    if (m.getClassName() !== 'Sequential') return functional(m, json);
    const cfg = json.config as { layers?: LayerJson[] } | LayerJson[] | undefined;
    const configs = (Array.isArray(cfg) ? cfg : cfg?.layers) ?? [];
    const layers = m.layers.filter(notInput);
    const jsons = configs.filter((c) => c.class_name !== 'InputLayer');
    if (layers.length !== jsons.length)
      throw new UserError(
        `backbone ${source}: its topology does not match its layers; it cannot be fine-tuned`,
      );
    for (const [i, layer] of layers.entries()) {
      if (isModel(layer)) {
        if (walk(layer, jsons[i])) return true;
        continue;
      }
      parts.push({ layer, json: jsons[i] });
      if (layer.name === feature) return true;
    }
    return false;
  };
  walk(model, jsonOf(model));
  return parts;
}

/** Whether a layer holds weights (the layers --fine-tune N counts). */
const weighted = (l: tfl.layers.Layer): boolean => l.weights.length > 0;

/** Which backbone layers a fine-tuning run unfreezes. */
export interface FineTuneChoice {
  /** Every backbone layer with weights, up to the feature layer, in order. */
  weighted: string[];
  /** The last N of them: the layers that train in the second phase. */
  unfrozen: string[];
}

/** The weighted backbone layers `layers` unfreezes; a one-line error when it cannot be. */
function choose(
  parts: Part[],
  layers: number | 'all',
  source: string,
  feature: string,
): FineTuneChoice & { leaves: Set<tfl.layers.Layer> } {
  const all = parts.flatMap((p) => leaves(p.layer)).filter(weighted);
  if (all.length === 0)
    throw new UserError(
      `backbone ${source} has no layer with weights up to ${feature}; there is nothing to fine-tune`,
    );
  const n = layers === 'all' ? all.length : layers;
  if (n > all.length)
    throw new UserError(
      `--fine-tune ${n}: backbone ${source} has ${all.length} layers with weights up to its feature layer ${feature}; give 1 to ${all.length}, or all`,
    );
  const chosen = all.slice(all.length - n);
  return {
    weighted: all.map((l) => l.name),
    unfrozen: chosen.map((l) => l.name),
    leaves: new Set(chosen),
  };
}

/**
 * --fine-tune-bn trains batch-norm layers in training mode one by one, which the layer-by-layer
 * step does for a Sequential model's own layers only; a functional part runs as one.
 */
function checkBn(parts: Part[], bn: boolean, source: string): void {
  if (bn && parts.some((p) => isModel(p.layer)))
    throw new UserError(
      `--fine-tune-bn works on Sequential backbones; ${source} has a functional model in it, whose batch-norm layers stay in inference mode: drop --fine-tune-bn`,
    );
}

/** A one-line error when `backbone` cannot be fine-tuned, before anything trains. */
function needLayers(backbone: Backbone): () => Promise<tfl.LayersModel> {
  const r = backbone.record;
  if (backbone.layersModel) return backbone.layersModel;
  const what =
    r.format === 'onnx'
      ? 'an ONNX model, which ONNX Runtime runs but cannot train'
      : 'a TensorFlow.js graph model, whose weights are constants that tfjs cannot train';
  throw new UserError(
    `--fine-tune trains backbone layers in TensorFlow.js, and ${r.source} is ${what}; drop --fine-tune to train a head on its features, or give a TensorFlow.js layers model`,
  );
}

/**
 * Checks that `backbone` can be fine-tuned with `layers` unfrozen, and says which layers those
 * are: the session asks before the first phase, so a wrong choice fails at once.
 */
export async function fineTuneChoice(
  backbone: Backbone,
  layers: number | 'all',
  bn = false,
): Promise<FineTuneChoice> {
  const model = await needLayers(backbone)();
  try {
    const r = backbone.record;
    const parts = flatLayers(model, r.layer, r.source);
    checkBn(parts, bn, r.source);
    const { weighted, unfrozen, leaves: chosen } = choose(parts, layers, r.source, r.layer);
    probeGradients(parts, chosen, r.inputShape);
    return { weighted, unfrozen };
  } finally {
    model.dispose();
  }
}

/**
 * One backward pass through the backbone to the unfrozen layers' weights, on one blank image:
 * a backend without a gradient kernel one of them needs (wasm has none for DepthwiseConv2D's
 * filter) fails here, in one line, before the head trains, rather than after it.
 */
function probeGradients(parts: Part[], chosen: Set<tfl.layers.Layer>, shape: readonly number[]): void {
  const vars = [...chosen].flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  try {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        let y: tf.Tensor = tf.zeros([1, ...shape]);
        for (const p of parts) y = p.layer.apply(y, { training: false }) as tf.Tensor;
        return tf.sum(y) as tf.Scalar;
      }, vars);
      Object.values(grads).forEach((g) => g.dispose());
    });
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    const kernel = /Kernel '(\w+)' not registered for backend '(\w+)'/.exec(message);
    if (!kernel) throw err;
    throw new UserError(
      `fine-tuning these layers needs the ${kernel[1]} kernel, which the ${kernel[2]} backend does not have; unfreeze fewer layers (--fine-tune N), or train with --backend cpu`,
    );
  }
}

/** The head as a tfjs layers model (softmax and mlp heads are Sequential, Flatten first). */
async function headLayers(head: Net): Promise<{ model: tfl.LayersModel; parts: Part[] }> {
  const a = await head.artifacts();
  const model = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: a.modelTopology,
      weightSpecs: a.weightSpecs,
      weightData: a.weightData,
    }),
  );
  const topo = a.modelTopology as { config?: { layers?: LayerJson[] } | LayerJson[] };
  const configs = (Array.isArray(topo.config) ? topo.config : topo.config?.layers) ?? [];
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const jsons = configs.filter((c) => c.class_name !== 'InputLayer');
  if (layers.length !== jsons.length || layers[0]?.getClassName() !== 'Flatten') {
    model.dispose();
    throw new Error(`the ${head.name} head is not a Sequential model that starts with Flatten`);
  }
  // Its Flatten took the [1, 1, D] features; the fine-tuned model flattens them itself.
  return { model, parts: layers.slice(1).map((layer, i) => ({ layer, json: jsons[i + 1] })) };
}

/** The fine-tuned model and what it unfroze. */
export interface FineTunedModel extends FineTuneChoice {
  model: tfl.LayersModel;
  /** The head's layers, the model's last ones. */
  headLayers: number;
}

/**
 * How many layers `head` puts at the end of a fine-tuned model: its own but the Flatten. A
 * resumed run counts them on a fresh head of its plan (the model does not say where its head
 * starts).
 */
export async function headLayerCount(head: Net): Promise<number> {
  const topo = (await head.artifacts()).modelTopology as { config?: { layers?: unknown[] } | unknown[] };
  const layers = (Array.isArray(topo.config) ? topo.config : topo.config?.layers) ?? [];
  return layers.length - 1;
}

/**
 * Backbone (up to its feature layer) and the trained `head` as one Sequential layers model
 * taking the backbone's images in [0, 1], with the last `layers` weighted backbone layers and
 * the head trainable and every other layer frozen. The backbone's weights are its files'; the
 * head's are `head`'s now.
 */
export async function fineTuneModel(
  backbone: Backbone,
  head: Net,
  layers: number | 'all',
): Promise<FineTunedModel> {
  const r = backbone.record;
  const src = await needLayers(backbone)();
  let headModel: tfl.LayersModel | undefined;
  try {
    const parts = flatLayers(src, r.layer, r.source);
    const choice = choose(parts, layers, r.source, r.layer);
    const h = await headLayers(head);
    headModel = h.model;
    const unfrozen = choice.leaves;
    const taken = new Set(parts.map((p) => p.layer.name));
    const unique = (base: string): string => {
      let name = base;
      for (let k = 2; taken.has(name); k++) name = `${base}_${k}`;
      taken.add(name);
      return name;
    };
    const configs: LayerJson[] = [];
    const sources: (tfl.layers.Layer | undefined)[] = [];
    const add = (
      json: LayerJson,
      from: tfl.layers.Layer | undefined,
      trainable: boolean,
      rename?: string,
    ) => {
      const config: Record<string, unknown> = { ...json.config, trainable };
      if (rename) config.name = rename;
      // Only the model's first layer says what the model takes.
      if (configs.length > 0) delete config.batch_input_shape;
      configs.push({ class_name: json.class_name, config });
      sources.push(from);
    };
    const input = [null, ...r.inputShape];
    if (r.range === '-1,1')
      add(
        {
          class_name: 'Rescaling',
          config: {
            name: unique(RANGE_LAYER),
            scale: 2,
            offset: -1,
            batch_input_shape: input,
            dtype: 'float32',
          },
        },
        undefined,
        false,
      );
    // A functional part is trainable as a container; its own layers are set below.
    for (const p of parts) add(p.json, p.layer, isModel(p.layer) || unfrozen.has(p.layer));
    if (configs.length === 0) throw new UserError(`backbone ${r.source} has no layers to fine-tune`);
    configs[0].config.batch_input_shape = input;
    if ((parts.at(-1)!.layer.outputShape as number[]).length > 2)
      add({ class_name: 'Flatten', config: { name: unique(FLATTEN_LAYER) } }, undefined, false);
    for (const p of h.parts) add(p.json, p.layer, true, unique(`${HEAD_PREFIX}${p.layer.name}`));
    const names = configs.map((c) => String(c.config.name));
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined)
      throw new UserError(`backbone ${r.source}: layer name ${twice} is used twice; it cannot be fine-tuned`);
    const model = (await tfl.models.modelFromJSON({
      modelTopology: { class_name: 'Sequential', config: { name: 'fine_tuned', layers: configs } },
    } as unknown as Parameters<typeof tfl.models.modelFromJSON>[0])) as tfl.LayersModel;
    model.layers.forEach((layer, i) => {
      const from = sources[i];
      if (!from) return;
      layer.setWeights(from.getWeights());
      if (isModel(layer)) {
        // The same config, so the same layers in the same order as the part it was built from.
        const mine = leaves(layer);
        leaves(from).forEach((l, k) => (mine[k].trainable = unfrozen.has(l)));
      }
    });
    return { weighted: choice.weighted, unfrozen: choice.unfrozen, model, headLayers: h.parts.length };
  } finally {
    src.dispose();
    headModel?.dispose();
  }
}

/** A fine-tuned model as the net the training loop trains, with its rate factors. */
export interface FineTunedNet {
  net: Net;
  /** Per trainable variable, in the net's order: the factor of the head's rate it trains at. */
  rateFactors: number[];
  /** The unfrozen backbone layers, in order. */
  unfrozen: string[];
}

const isBatchNorm = (l: tfl.layers.Layer) => l.getClassName() === 'BatchNormalization';

/**
 * The net of a fine-tuned model (made by fineTuneModel, or loaded from a checkpoint: the frozen
 * layers are saved as such). In training, the backbone's layers run in inference mode (see
 * above), except the unfrozen batch-norm layers when `trainStats` says so; the head's layers
 * train as usual. Rates: the head's layers 1, the unfrozen backbone layers from 1/100 (the
 * earliest) to 1/10 (the last) (core/plan.ts fineTuneFactor).
 */
export function fineTunedNet(
  name: string,
  model: tfl.LayersModel,
  trainStats: boolean,
  headLayers: number,
): FineTunedNet {
  const base = layersNet(name, model);
  const layers = model.layers.filter(notInput);
  const head = new Set(layers.slice(layers.length - headLayers));
  // A functional part (checkBn refuses --fine-tune-bn with one) always runs in inference mode.
  const inference = layers.map(
    (l) => !head.has(l) && !(trainStats && !isModel(l) && isBatchNorm(l) && l.trainable),
  );
  const unfrozen = layers
    .filter((l) => !head.has(l))
    .flatMap(leaves)
    .filter((l) => l.trainable && l.trainableWeights.length > 0);
  const factorOf = new Map<tfl.LayerVariable, number>();
  unfrozen.forEach((l, k) => {
    for (const w of l.trainableWeights) factorOf.set(w, fineTuneFactor(k, unfrozen.length));
  });
  const rateFactors = model.trainableWeights.map((w) => factorOf.get(w) ?? 1);
  const net: Net = {
    ...base,
    apply: (x, kwargs) => {
      if (!kwargs?.training) return base.apply(x, kwargs);
      return tf.tidy(() => {
        let y = x;
        layers.forEach((l, i) => {
          y = l.apply(y, { training: !inference[i] }) as tf.Tensor;
        });
        return y;
      });
    },
  };
  return { net, rateFactors, unfrozen: unfrozen.map((l) => l.name) };
}

/** Rebuilds the layers model of a net saved by a fine-tuning run (a checkpoint to resume). */
export async function layersModelOf(net: Net): Promise<tfl.LayersModel> {
  const a = await net.artifacts();
  return tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: a.modelTopology,
      weightSpecs: a.weightSpecs,
      weightData: a.weightData,
    }),
  );
}

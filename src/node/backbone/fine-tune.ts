/**
 * Fine-tuning a TensorFlow.js layers backbone (`train --backbone SRC --fine-tune N`), fastai's
 * `fine_tune`: after the head has trained on the frozen backbone's cached features, backbone
 * and head become one tfjs layers model, the last N backbone layers that hold weights are made
 * trainable, and that model trains end to end on the images through the usual `trainRun`.
 *
 * The model is Sequential: the backbone's layers up to its feature layer (nested Sequential
 * models, as a Teachable Machine export has, are flattened into it), a Flatten where the
 * features are a map, then the head's layers after its own Flatten, each renamed `head_NAME`
 * (the head's names may repeat the backbone's, and a model's layer names are unique; a name
 * taken already gets a number). Which layers are the head is counted from the end (a backbone
 * that was fine-tuned before has `head_` layers of its own). A [-1, 1]
 * backbone gets a Rescaling layer first, so the model takes pixels in [0, 1] as every imgclf
 * run does. The run directory stores this whole model, since the backbone's weights changed:
 * it loads, evaluates, exports and resumes like any layers run.
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
  layer: tfl.layers.Layer;
  json: LayerJson;
}

const isModel = (l: tfl.layers.Layer): l is tfl.LayersModel => 'layers' in l && Array.isArray(l.layers);

/**
 * The layers of a Sequential backbone in order, nested Sequential models flattened, up to and
 * including `feature` (all of them when no layer has that name: the output is the features).
 */
function flatLayers(model: tfl.LayersModel, feature: string, source: string): Part[] {
  const parts: Part[] = [];
  const walk = (m: tfl.LayersModel, json: { class_name?: string; config?: unknown }): boolean => {
    if (m.getClassName() !== 'Sequential')
      throw new UserError(
        `--fine-tune works on Sequential TensorFlow.js backbones (an imgclf run, a Teachable Machine export); ${source} is a ${m.getClassName()} model; drop --fine-tune to train a head on its features`,
      );
    const cfg = json.config as { layers?: LayerJson[] } | LayerJson[] | undefined;
    const configs = (Array.isArray(cfg) ? cfg : cfg?.layers) ?? [];
    const layers = m.layers.filter((l) => l.getClassName() !== 'InputLayer');
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
  walk(model, model.toJSON(null, false) as { class_name?: string; config?: unknown });
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
function choose(parts: Part[], layers: number | 'all', source: string, feature: string): FineTuneChoice {
  const names = parts.filter((p) => weighted(p.layer)).map((p) => p.layer.name);
  if (names.length === 0)
    throw new UserError(
      `backbone ${source} has no layer with weights up to ${feature}; there is nothing to fine-tune`,
    );
  const n = layers === 'all' ? names.length : layers;
  if (n > names.length)
    throw new UserError(
      `--fine-tune ${n}: backbone ${source} has ${names.length} layers with weights up to its feature layer ${feature}; give 1 to ${names.length}, or all`,
    );
  return { weighted: names, unfrozen: names.slice(names.length - n) };
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
export async function fineTuneChoice(backbone: Backbone, layers: number | 'all'): Promise<FineTuneChoice> {
  const model = await needLayers(backbone)();
  try {
    const r = backbone.record;
    return choose(flatLayers(model, r.layer, r.source), layers, r.source, r.layer);
  } finally {
    model.dispose();
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
    const unfrozen = new Set(choice.unfrozen);
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
    for (const p of parts) add(p.json, p.layer, unfrozen.has(p.layer.name));
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
      if (from) layer.setWeights(from.getWeights());
    });
    return { ...choice, model, headLayers: h.parts.length };
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
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const head = new Set(layers.slice(layers.length - headLayers));
  const isHead = (l: tfl.layers.Layer) => head.has(l);
  const inference = layers.map((l) => !isHead(l) && !(trainStats && isBatchNorm(l) && l.trainable));
  const unfrozen = layers.filter((l) => !isHead(l) && l.trainable && l.trainableWeights.length > 0);
  const factorOf = new Map<tfl.LayerVariable, number>();
  for (const l of layers) {
    const k = unfrozen.indexOf(l);
    const factor = isHead(l) ? 1 : k >= 0 ? fineTuneFactor(k, unfrozen.length) : 0;
    for (const w of l.trainableWeights) factorOf.set(w, factor);
  }
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

/**
 * Finding a TensorFlow.js layers backbone's feature layer and cutting the model there, the same
 * in Node (node/backbone/backbone.ts) and in the page (web/src/backbone.ts). Layers are reached
 * by path, their index in each (nested) model on the way, since a Teachable Machine export nests
 * Sequential models and a MobileNet is a functional model nested in one. Each refusal is a
 * UserError of one line; `hint` ends it with what the caller can do.
 */
import type * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../errors.js';

/** A layer and how to reach it: its index in each (nested) model on the way. */
export interface LayerPath {
  layer: tfl.layers.Layer;
  path: number[];
}

export const isModel = (l: tfl.layers.Layer): l is tfl.LayersModel =>
  'layers' in l && Array.isArray((l as tfl.LayersModel).layers);

/** Every layer, depth first, nested models' layers after the model itself. */
export function allLayers(model: tfl.LayersModel, prefix: number[] = []): LayerPath[] {
  const out: LayerPath[] = [];
  model.layers.forEach((layer, i) => {
    out.push({ layer, path: [...prefix, i] });
    if (isModel(layer)) out.push(...allLayers(layer, [...prefix, i]));
  });
  return out;
}

/**
 * The function from the model's input to the output of the layer at `path`, in inference mode.
 * A Sequential model (and a Sequential nested in one) is applied layer by layer; a functional
 * model is cut with tfl.model at a layer of its own. A layer inside a model nested in a
 * functional one cannot be reached: `nested` says what to do instead.
 */
export function upTo(model: tfl.LayersModel, path: number[], nested: string): (x: tf.Tensor) => tf.Tensor {
  const [i, ...rest] = path;
  if (model.getClassName() === 'Sequential') {
    const before = model.layers.slice(0, i);
    const target = model.layers[i];
    const inner = rest.length ? upTo(target as tfl.LayersModel, rest, nested) : undefined;
    return (x) => {
      let y = x;
      for (const l of before) y = l.apply(y, { training: false }) as tf.Tensor;
      return inner ? inner(y) : (target.apply(y, { training: false }) as tf.Tensor);
    };
  }
  if (rest.length) throw new UserError(nested);
  const cut = tfl.model({ inputs: model.inputs, outputs: model.layers[i].output as tfl.SymbolicTensor });
  return (x) => cut.apply(x, { training: false }) as tf.Tensor;
}

/**
 * The layer whose output feeds the model's last Dense layer (the penultimate output, where a
 * classifier's features are), or undefined when the model has no Dense layer (its output is
 * the features). `hint` ends the refusals ("name a feature layer with --backbone-layer").
 */
export function defaultFeatureLayer(
  model: tfl.LayersModel,
  source: string,
  hint: string,
): LayerPath | undefined {
  const layers = allLayers(model);
  const dense = layers.filter((l) => l.layer.getClassName() === 'Dense').at(-1);
  if (!dense) return undefined;
  const at = dense.path.at(-1)!;
  if (at === 0) {
    // The Dense layer is first in its (nested) model: its input is what feeds that model.
    if (dense.path.length > 1) {
      const parent = dense.path.slice(0, -1);
      const owner = parent.at(-1)!;
      if (owner > 0) {
        const feeding = [...parent.slice(0, -1), owner - 1];
        return layers.find((l) => l.path.join('/') === feeding.join('/'));
      }
    }
    throw new UserError(
      `backbone ${source}: its last Dense layer ${dense.layer.name} reads the input directly; ${hint}`,
    );
  }
  if (model.getClassName() !== 'Sequential' && dense.path.length === 1) {
    // Functional: the layer whose output the Dense layer reads.
    const inbound = dense.layer.inboundNodes[0]?.inboundLayers[0];
    const found = inbound && layers.find((l) => l.layer === inbound);
    if (found && found.layer.getClassName() !== 'InputLayer') return found;
    throw new UserError(`backbone ${source}: cannot tell which layer feeds ${dense.layer.name}; ${hint}`);
  }
  const previous = [...dense.path.slice(0, -1), at - 1];
  return layers.find((l) => l.path.join('/') === previous.join('/'));
}

/**
 * Multilayer perceptron (d2l 4.3): flatten, hidden dense layers with ReLU, then the class
 * scores. Default 784-256-10; `--hidden 256,128` sets the hidden sizes, `--dropout p` adds
 * dropout after each hidden layer.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { layersNet, type Net } from './net.js';
import { layerSeed, register, type ModelSpec } from './registry.js';
import { dense } from './dense.js';
import { dropout as dropoutLayer } from './dropout.js';

export interface MlpOptions {
  hidden?: number[];
  dropout?: number;
  activation?: 'relu' | 'sigmoid' | 'tanh';
}

export function mlp(spec: ModelSpec): Net {
  const opts = (spec.options ?? {}) as MlpOptions;
  const hidden = opts.hidden ?? [256];
  const dropout = opts.dropout ?? 0;
  const layers: tfl.layers.Layer[] = [tfl.layers.flatten({ inputShape: spec.inputShape })];
  hidden.forEach((units, i) => {
    layers.push(
      dense({
        units,
        activation: opts.activation ?? 'relu',
        kernelInitializer: tfl.initializers.heNormal({ seed: layerSeed(spec.seed, i) }),
      }),
    );
    if (dropout > 0) layers.push(dropoutLayer({ rate: dropout }));
  });
  layers.push(
    dense({
      units: spec.numClasses,
      kernelInitializer: tfl.initializers.glorotUniform({ seed: layerSeed(spec.seed, hidden.length) }),
    }),
  );
  return layersNet('mlp', tfl.sequential({ name: 'mlp', layers }));
}

register({
  name: 'mlp',
  description: 'multilayer perceptron (d2l 4.3): 784-256-10 with ReLU; --hidden, --dropout',
  create: mlp,
  defaults: {
    epochs: 20,
    lr: 0.001,
    optimizer: 'adamw',
    weightDecay: 0.0001,
    schedule: 'cosine',
    warmup: 0,
    labelSmoothing: 0.1,
  },
});

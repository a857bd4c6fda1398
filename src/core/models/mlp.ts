/**
 * Multilayer perceptron (d2l 4.3): flatten, hidden dense layers with ReLU, then the class
 * scores. Default 784-256-10; `--hidden 256,128` sets the hidden sizes, `--dropout p` adds
 * dropout after each hidden layer.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { layersNet, type Net } from './net.js';
import { layerSeed, type OptionDecls, optionValues, register, type ModelSpec } from './registry.js';
import { dense } from './dense.js';
import { dropout as dropoutLayer } from './dropout.js';

/** The options `create('mlp', ...)` takes. */
export const MLP_OPTIONS = {
  hidden: {
    type: 'list',
    min: 1,
    max: 65536,
    default: [256],
    example: 'sizes like 256 or 256,128',
    flag: '--hidden <sizes>',
    help: 'units of each hidden layer',
  },
  dropout: {
    type: 'number',
    min: 0,
    max: 1,
    maxExclusive: true,
    default: 0,
    flag: '--dropout <p>',
    help: 'dropout rate after each hidden layer',
  },
  activation: {
    type: 'enum',
    choices: ['relu', 'sigmoid'],
    default: 'relu',
    flag: '--activation <name>',
    help: 'activation of the hidden layers',
  },
} as const satisfies OptionDecls;

export function mlp(spec: ModelSpec): Net {
  const opts = optionValues('mlp', MLP_OPTIONS, spec.options);
  const { hidden, dropout } = opts;
  const layers: tfl.layers.Layer[] = [tfl.layers.flatten({ inputShape: spec.inputShape })];
  hidden.forEach((units, i) => {
    layers.push(
      dense({
        units,
        activation: opts.activation,
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
  options: MLP_OPTIONS,
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

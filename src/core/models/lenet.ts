/**
 * LeNet-5 as d2l (6.6) builds it: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, then 120, 84 and
 * the class scores. ReLU and max-pooling by default; `--activation sigmoid --pool avg` gives
 * the original.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { layersNet, type Net } from './net.js';
import { layerSeed, type OptionDecls, optionValues, register, type ModelSpec } from './registry.js';
import { dense } from './dense.js';

/** The options `create('lenet', ...)` takes; sigmoid and avg give the original LeNet. */
export const LENET_OPTIONS = {
  activation: {
    type: 'enum',
    choices: ['relu', 'sigmoid'],
    default: 'relu',
    flag: '--activation <name>',
    help: 'activation of every layer but the last',
  },
  pool: {
    type: 'enum',
    choices: ['max', 'avg'],
    default: 'max',
    flag: '--pool <name>',
    help: 'pooling after each convolution',
  },
} as const satisfies OptionDecls;

export function lenet(spec: ModelSpec): Net {
  const opts = optionValues('lenet', LENET_OPTIONS, spec.options);
  const activation = opts.activation;
  const pool = () =>
    opts.pool === 'avg'
      ? tfl.layers.averagePooling2d({ poolSize: 2, strides: 2 })
      : tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 });
  const init = (i: number) =>
    activation === 'relu'
      ? tfl.initializers.heNormal({ seed: layerSeed(spec.seed, i) })
      : tfl.initializers.glorotUniform({ seed: layerSeed(spec.seed, i) });
  const model = tfl.sequential({
    name: 'lenet',
    layers: [
      // d2l pads the 28x28 input by 2 so the first conv sees LeNet's 32x32 field.
      tfl.layers.conv2d({
        inputShape: spec.inputShape,
        filters: 6,
        kernelSize: 5,
        padding: 'same',
        activation,
        kernelInitializer: init(0),
      }),
      pool(),
      tfl.layers.conv2d({
        filters: 16,
        kernelSize: 5,
        padding: 'valid',
        activation,
        kernelInitializer: init(1),
      }),
      pool(),
      tfl.layers.flatten(),
      dense({ units: 120, activation, kernelInitializer: init(2) }),
      dense({ units: 84, activation, kernelInitializer: init(3) }),
      dense({
        units: spec.numClasses,
        kernelInitializer: tfl.initializers.glorotUniform({ seed: layerSeed(spec.seed, 4) }),
      }),
    ],
  });
  return layersNet('lenet', model);
}

register({
  name: 'lenet',
  description: 'LeNet-5 (d2l 6.6): conv6@5x5, pool, conv16@5x5, pool, 120-84; --activation, --pool',
  create: lenet,
  options: LENET_OPTIONS,
  defaults: {
    epochs: 8,
    lr: 0.002,
    optimizer: 'adamw',
    weightDecay: 0.0001,
    schedule: 'cosine',
    warmup: 0.5,
    labelSmoothing: 0.1,
  },
});

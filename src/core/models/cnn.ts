/**
 * A compact CNN sized for CPU training: a block of two 3x3 conv-ReLU layers per resolution with
 * max-pooling after each (28 -> 14 -> 7; 16 then 32 filters), then dropout, a dense layer of 128,
 * dropout and the class scores. Every convolution has stride 1 and 'same' padding, the case the
 * wasm kernels in backend/conv3x3.ts run by Winograd (and the first layer directly). Two narrow
 * layers per resolution cost about what one layer of twice the width did, and reached 0.935
 * where the wider single-layer blocks stopped at 0.933; 30 epochs reach 0.9375 in under 10
 * minutes on 2 cores (docs/models.md, Results).
 * Trained with batch augmentation (random crop with padding 2 and horizontal flip) by default.
 *
 * Batch normalization is an option (`batchNorm`). Its training pass runs as two fused kernels on
 * wasm (batch-norm.ts, backend/bn-kernels.ts): tfjs's own backward pass (Tile, Sum and Mean
 * kernels) made a step 3.5 to 4 times slower.
 *
 * Dropout masks come from the training loop's seeded stream (dropout.ts), so runs repeat and
 * resume exactly.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { layersNet, type Net } from './net.js';
import { layerSeed, type OptionDecls, optionValues, register, type ModelSpec } from './registry.js';
import { dense } from './dense.js';
import { batchNormalization } from './batch-norm.js';
import { dropout as dropoutLayer } from './dropout.js';

/** The options `create('cnn', ...)` takes. */
export const CNN_OPTIONS = {
  widths: {
    type: 'list',
    min: 1,
    max: 4096,
    default: [16, 32],
    example: 'filter counts like 32,64',
    flag: '--widths <filters>',
    help: 'filters of the block at each resolution (full, 1/2, 1/4, ...: each block halves the size)',
  },
  convs: { type: 'int', min: 1, max: 8, default: 2, help: '3x3 convolutions per resolution' },
  batchNorm: {
    type: 'boolean',
    default: false,
    flag: '--batch-norm',
    help: 'batch normalization after every convolution',
  },
  dropout: {
    type: 'number',
    min: 0,
    max: 1,
    maxExclusive: true,
    default: 0.1,
    flag: '--dropout <p>',
    help: 'dropout rate before and after the dense layer',
  },
} as const satisfies OptionDecls;

export function cnn(spec: ModelSpec): Net {
  const opts = optionValues('cnn', CNN_OPTIONS, spec.options);
  const { widths, dropout } = opts;
  let seedIndex = 0;
  const layers: tfl.layers.Layer[] = [];
  const bn = opts.batchNorm;
  const convBnRelu = (filters: number, first: boolean) => {
    layers.push(
      tfl.layers.conv2d({
        ...(first ? { inputShape: spec.inputShape } : {}),
        filters,
        kernelSize: 3,
        padding: 'same',
        useBias: !bn,
        activation: bn ? 'linear' : 'relu',
        kernelInitializer: tfl.initializers.heNormal({ seed: layerSeed(spec.seed, seedIndex++) }),
      }),
    );
    if (bn) layers.push(batchNormalization({ momentum: 0.9 }), tfl.layers.reLU());
  };
  widths.forEach((w, i) => {
    for (let j = 0; j < opts.convs; j++) convBnRelu(w, i === 0 && j === 0);
    layers.push(tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
  });
  layers.push(
    tfl.layers.flatten(),
    dropoutLayer({ rate: dropout }),
    dense({
      units: 128,
      activation: 'relu',
      kernelInitializer: tfl.initializers.heNormal({ seed: layerSeed(spec.seed, seedIndex++) }),
    }),
    dropoutLayer({ rate: dropout }),
    dense({
      units: spec.numClasses,
      kernelInitializer: tfl.initializers.glorotUniform({ seed: layerSeed(spec.seed, seedIndex++) }),
    }),
  );
  return layersNet('cnn', tfl.sequential({ name: 'cnn', layers }));
}

register({
  name: 'cnn',
  description: 'CNN: conv16-conv16-pool-conv32-conv32-pool (3x3, ReLU), dropout, dense 128; augmentation on',
  create: cnn,
  options: CNN_OPTIONS,
  defaults: {
    epochs: 30,
    lr: 0.003,
    optimizer: 'adamw',
    weightDecay: 0.0005,
    schedule: 'onecycle',
    labelSmoothing: 0.1,
    augment: true,
  },
});

/**
 * The seed's model: flatten the image to a vector, then one dense layer to the class scores.
 * Weights ~ N(0, 0.01^2) and biases 0, as the seed's `nn.init.normal_(m.weight, std=0.01)`.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { dense } from './dense.js';
import { layersNet, type Net } from './net.js';
import { layerSeed, register, type ModelSpec } from './registry.js';

export function softmaxRegression(spec: ModelSpec): Net {
  const model = tfl.sequential({
    name: 'softmax',
    layers: [
      tfl.layers.flatten({ inputShape: spec.inputShape }),
      dense({
        units: spec.numClasses,
        kernelInitializer: tfl.initializers.randomNormal({
          mean: 0,
          stddev: 0.01,
          seed: layerSeed(spec.seed, 0),
        }),
        biasInitializer: 'zeros',
      }),
    ],
  });
  return layersNet('softmax', model);
}

register({
  name: 'softmax',
  description: "softmax regression, the seed's model: flatten, then one linear layer",
  create: softmaxRegression,
  options: {},
  // The seed's settings (5 epochs of SGD at lr 0.1, batch 256) are the plan's global defaults.
  defaults: {},
});

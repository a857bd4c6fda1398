/** Our Dense against tfjs-layers' own: same outputs, same weight gradients, same saved format. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { Dense, dense } from '../src/core/models/dense.js';

beforeAll(async () => {
  await selectBackend('wasm');
});

function pair(activation: 'linear' | 'relu') {
  const init = {
    kernelInitializer: tfl.initializers.randomNormal({ seed: 3 }),
    biasInitializer: 'ones' as const,
  };
  const ours = tfl.sequential({ layers: [dense({ units: 7, activation, inputShape: [13], ...init })] });
  const theirs = tfl.sequential({
    layers: [tfl.layers.dense({ units: 7, activation, inputShape: [13], ...init })],
  });
  theirs.setWeights(ours.getWeights());
  return { ours, theirs };
}

describe('Dense', () => {
  for (const activation of ['linear', 'relu'] as const) {
    it(`matches tfjs-layers' Dense in training and inference (${activation})`, () => {
      const { ours, theirs } = pair(activation);
      const x = tf.randomNormal([5, 13], 0, 1, 'float32', 4);
      for (const training of [true, false]) {
        const a = (ours.apply(x, { training }) as tf.Tensor).dataSync();
        const b = (theirs.apply(x, { training }) as tf.Tensor).dataSync();
        for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 5);
      }
      const grads = (m: tfl.LayersModel) =>
        tf.variableGrads(
          () => tf.sum(tf.square(m.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar,
          m.trainableWeights.map((w) => w.read() as tf.Variable),
        ).grads;
      const ga = Object.values(grads(ours)).map((g) => Array.from(g.dataSync()));
      const gb = Object.values(grads(theirs)).map((g) => Array.from(g.dataSync()));
      for (let k = 0; k < ga.length; k++)
        for (let i = 0; i < ga[k].length; i++) expect(ga[k][i]).toBeCloseTo(gb[k][i], 4);
    });
  }

  it('serializes as a plain Dense and loads back as ours', async () => {
    const { ours } = pair('linear');
    let topology: unknown;
    await ours.save(
      tf.io.withSaveHandler(async (artifacts) => {
        topology = artifacts.modelTopology;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    expect(JSON.stringify(topology)).toContain('"class_name":"Dense"');
    const loaded = await tfl.models.modelFromJSON({ modelTopology: topology } as never);
    expect(loaded.layers[0]).toBeInstanceOf(Dense);
  });
});

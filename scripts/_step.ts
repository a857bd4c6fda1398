import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend/index.js';
import { create } from '../src/models/index.js';
import { createOptimizer } from '../src/train/optimizers.js';
import { trainEpoch } from '../src/train/loop.js';
import { Rng } from '../src/data/rng.js';
try {
  await selectBackend('wasm');
  const name = process.argv[2] ?? 'cnn';
  const opts = process.argv[3] ? JSON.parse(process.argv[3]) : undefined;
  const net = create(name, { inputShape: [28, 28, 1], numClasses: 10, seed: 1, options: opts });
  console.log(name, 'params', net.countParams());
  const n = 256 * 6;
  const images = new Float32Array(n * 784).map(() => Math.random());
  const labels = new Uint8Array(n).map(() => Math.floor(Math.random() * 10));
  const opt = createOptimizer({ name: 'adamw', lr: 0.001, weightDecay: 1e-4 });
  const split = { images, labels, count: n };
  await trainEpoch(net, opt, { images, labels, count: 256 }, { batchSize: 256, shape: [28, 28, 1], rng: new Rng(1) });
  const r = await trainEpoch(net, opt, split, { batchSize: 256, shape: [28, 28, 1], rng: new Rng(1), augment: { pad: 2, flip: true, rng: new Rng(2) } });
  console.log('ms/step', (r.seconds * 1000 / 6).toFixed(0), 'epoch est s', (r.seconds / 6 * 235).toFixed(0));
  if (process.argv[4] === 'profile') {
    const x = tf.tensor4d(images.subarray(0, 256 * 784), [256, 28, 28, 1]);
    const y = tf.tensor1d(Array.from(labels.subarray(0, 256)), 'int32');
    const prof = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.losses.softmaxCrossEntropy(tf.oneHot(y, 10), net.apply(x, { training: true }) as tf.Tensor2D)) as tf.Scalar, net.trainableVariables);
      return value;
    });
    const agg: Record<string, number> = {};
    for (const k of prof.kernels) agg[k.name] = (agg[k.name] ?? 0) + (k.kernelTimeMs as number);
    const tot = Object.values(agg).reduce((a, b) => a + b, 0);
    console.log('total kernel ms', tot.toFixed(0));
    for (const [k, v] of Object.entries(agg).sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(k.padEnd(24), v.toFixed(1));
  }
} catch (e) { console.log((e as Error).stack); }

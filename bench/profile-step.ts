/**
 * Where a training step's time goes: runs a few warm-up steps of a registered model on real
 * Fashion-MNIST batches, then profiles one step (forward, backward, optimizer update) with
 * tf.profile and prints kernel time per kernel name, plus the wall time of timed steps.
 *
 *   npx tsx bench/profile-step.ts [model] [batch size] [backend]
 *   npx tsx bench/profile-step.ts cnn 256 wasm
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend, type BackendName } from '../src/backend/index.js';
import { loadDataset } from '../src/data/load.js';
import { Rng } from '../src/data/rng.js';
import { subset } from '../src/data/split.js';
import { create, getEntry } from '../src/models/index.js';
import { trainEpoch } from '../src/train/loop.js';
import { crossEntropy } from '../src/train/loss.js';
import { createOptimizer } from '../src/train/optimizers.js';

async function main(): Promise<void> {
  const name = process.argv[2] ?? 'cnn';
  const batchSize = Number(process.argv[3] ?? 256);
  const backend = await selectBackend((process.argv[4] ?? 'wasm') as BackendName);
  const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
  const shape = dataset.shape;
  const steps = 5;
  const part = subset(
    dataset.train,
    shape,
    Array.from({ length: batchSize * steps }, (_, i) => i),
  );
  const entry = getEntry(name);
  const net = create(name, { inputShape: shape, numClasses: 10, seed: 1 });
  const d = entry.defaults;
  const opt = createOptimizer({
    name: d.optimizer ?? 'sgd',
    lr: d.lr,
    weightDecay: d.weightDecay,
    momentum: d.momentum,
    own: entry.ownOptimizer,
  });
  const augment = d.augment ? { pad: 2, flip: true, rng: new Rng(2) } : undefined;
  // Warm-up: the first steps compile and allocate.
  await trainEpoch(
    net,
    opt,
    subset(
      part,
      shape,
      Array.from({ length: batchSize }, (_, i) => i),
    ),
    {
      batchSize,
      shape,
      rng: new Rng(1),
    },
  );
  const r = await trainEpoch(net, opt, part, { batchSize, shape, rng: new Rng(1), augment });
  const perStep = (r.seconds * 1000) / steps;
  console.log(
    `${name} (${net.countParams()} params), batch ${batchSize}, backend ${backend}: ` +
      `${perStep.toFixed(0)} ms per training step, ~${((perStep * Math.ceil(60000 / batchSize)) / 1000).toFixed(0)} s per epoch`,
  );

  const x = tf.tensor4d(part.images.subarray(0, batchSize * 784), [batchSize, ...shape]);
  const y = tf.tensor1d(Int32Array.from(part.labels.subarray(0, batchSize)), 'int32');
  const vars = net.trainableVariables;
  const profile = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(
      () => tf.mean(crossEntropy(net.apply(x, { training: true }) as tf.Tensor2D, y)) as tf.Scalar,
      vars,
    );
    opt.apply(
      vars,
      vars.map((v) => grads[v.name]),
      d.lr,
      batchSize,
    );
    Object.values(grads).forEach((g) => g.dispose());
    return value;
  });
  const byKernel = new Map<string, number>();
  for (const k of profile.kernels) {
    // Op-level wrappers (name__op) repeat their kernels' time.
    if (k.name.endsWith('__op')) continue;
    byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (k.kernelTimeMs as number));
  }
  const total = [...byKernel.values()].reduce((a, b) => a + b, 0);
  console.log(`profiled step: ${total.toFixed(0)} ms in kernels`);
  for (const [k, ms] of [...byKernel.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(
      `  ${k.padEnd(24)} ${ms.toFixed(1).padStart(8)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)}%`,
    );
  }
}

main().catch((err: unknown) => {
  // Catch everything: the wasm module's own handler would print its whole glue file.
  console.error(`profile failed: ${(err as Error).message}`);
  process.exit(1);
});

/**
 * Where a training step's time goes: runs a few warm-up steps of a registered model on real
 * Fashion-MNIST batches, then profiles one step (forward, backward, optimizer update) with
 * tf.profile and prints kernel time per kernel name, plus the wall time of timed steps.
 *
 *   npx tsx bench/profile-step.ts [model] [batch size] [backend] [model options JSON]
 *   npx tsx bench/profile-step.ts cnn 256 wasm
 *   npx tsx bench/profile-step.ts cnn 256 wasm '{"batchNorm":true}'
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend, type BackendName } from '../src/backend/index.js';
import { loadDataset } from '../src/node/data/load.js';
import { Rng } from '../src/core/data/rng.js';
import { subset } from '../src/core/data/split.js';
import { create } from '../src/core/models/index.js';
import { trainEpoch } from '../src/core/train/loop.js';
import { AUGMENTATION, optimizerFor, resolveConfig } from '../src/core/plan.js';

async function main(): Promise<void> {
  const name = process.argv[2] ?? 'cnn';
  const batchSize = Number(process.argv[3] ?? 256);
  const backend = await selectBackend((process.argv[4] ?? 'wasm') as BackendName);
  const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
  const shape = dataset.shape;
  // Enough steps that start-up effects average out for small models.
  const steps = name.startsWith('softmax') ? 40 : 5;
  const part = subset(
    dataset.train,
    shape,
    Array.from({ length: batchSize * steps }, (_, i) => i),
  );
  const options = process.argv[5] ? (JSON.parse(process.argv[5]) as Record<string, unknown>) : undefined;
  const net = create(name, { inputShape: shape, numClasses: 10, seed: 1, options });
  const plan = resolveConfig({ model: name });
  const opt = optimizerFor(plan);
  const augment = plan.augment ? { ...AUGMENTATION, rng: new Rng(2) } : undefined;
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
      `${perStep.toFixed(1)} ms per training step, ~${((perStep * Math.ceil(60000 / batchSize)) / 1000).toFixed(2)} s per epoch`,
  );

  // Profile the same steps through the training loop itself, so the kernels are the ones
  // `imgclf train` runs (fused loss where the backend has it, the model's optimizer).
  const profile = await tf.profile(async () => {
    await trainEpoch(net, opt, part, { batchSize, shape, rng: new Rng(1), augment });
  });
  const byKernel = new Map<string, number>();
  for (const k of profile.kernels) {
    // Op-level wrappers (name__op) repeat their kernels' time.
    if (k.name.endsWith('__op')) continue;
    byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (k.kernelTimeMs as number));
  }
  const total = [...byKernel.values()].reduce((a, b) => a + b, 0);
  console.log(`profiled: ${(total / steps).toFixed(1)} ms of kernel time per step`);
  for (const [k, ms] of [...byKernel.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(
      `  ${k.padEnd(26)} ${(ms / steps).toFixed(2).padStart(8)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)}%`,
    );
  }
}

main().catch((err: unknown) => {
  // Catch everything: the wasm module's own handler would print its whole glue file.
  console.error(`profile failed: ${(err as Error).message}`);
  process.exit(1);
});

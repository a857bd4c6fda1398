/**
 * Batch normalization in training mode on wasm: one forward + backward (gradients with respect
 * to the input, gamma and beta for a given dy, the moving statistics updated) through
 * tfjs-layers' BatchNormalization and through ours (src/core/models/batch-norm.ts, fused
 * kernels in src/backend/bn-kernels.ts), alternating in one process, medians of the repeats.
 *
 * `step` mode times whole cnn training steps (batch 256, Fashion-MNIST, the cnn's training
 * plan) without batch norm, with tfjs-layers' batch norm, and with ours, alternating epochs of
 * a few steps between the three nets. The net with ours is the stock one saved and loaded back
 * (loadNet), which builds the registered BatchNormalization class, ours.
 *
 *   npx tsx bench/batch-norm.ts [repeats]
 *   npx tsx bench/batch-norm.ts step [rounds]
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { selectBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/node/data/load.js';
import { Rng } from '../src/core/data/rng.js';
import { subset } from '../src/core/data/split.js';
import { BN_TRAIN_KERNEL, batchNormalization } from '../src/core/models/batch-norm.js';
import { create, loadNet, type Net } from '../src/core/models/index.js';
import { trainEpoch } from '../src/core/train/loop.js';
import { AUGMENTATION, optimizerFor, resolveConfig } from '../src/core/plan.js';

const SHAPES: [number, number, number, number][] = [
  [256, 28, 28, 32],
  [256, 14, 14, 64],
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Milliseconds for one training-mode forward and backward of `layer`. wasm kernels run
 * synchronously, so the results are complete on return; reading them back (about 14 ms per
 * 25 MB tensor) would only add the same copy to both sides.
 */
function step(layer: tfl.layers.Layer, x: tf.Tensor, dy: tf.Tensor): number {
  const vars = layer.trainableWeights.map((w) => w.read());
  const t0 = performance.now();
  tf.tidy(() => {
    tf.engine().gradients(() => layer.apply(x, { training: true }) as tf.Tensor, [x, ...vars], dy);
  });
  return performance.now() - t0;
}

async function layerBench(repeats: number): Promise<void> {
  for (const shape of SHAPES) {
    const x = tf.randomNormal(shape, 0.5, 2, 'float32', 1);
    const dy = tf.randomNormal(shape, 0, 1, 'float32', 2);
    const stock = tfl.layers.batchNormalization({ momentum: 0.9 });
    const ours = batchNormalization({ momentum: 0.9 });
    const times = { stock: [] as number[], ours: [] as number[] };
    // Two warm-up rounds build the layers and let the JIT compile the loops.
    for (let r = -2; r < repeats; r++) {
      const a = step(stock, x, dy);
      const b = step(ours, x, dy);
      if (r >= 0) {
        times.stock.push(a);
        times.ours.push(b);
      }
    }
    const s = median(times.stock);
    const o = median(times.ours);
    console.log(
      `[${shape}] forward+backward: stock ${s.toFixed(1)} ms, ours ${o.toFixed(1)} ms, ` +
        `${(s / o).toFixed(1)}x (medians of ${repeats})`,
    );
    tf.dispose([x, dy]);
  }
}

async function stepBench(rounds: number): Promise<void> {
  const batchSize = 256;
  const steps = 3;
  const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
  const shape = dataset.shape;
  const part = subset(
    dataset.train,
    shape,
    Array.from({ length: batchSize * steps }, (_, i) => i),
  );
  const spec = (batchNorm: boolean) => ({
    inputShape: shape,
    numClasses: 10,
    seed: 1,
    options: { batchNorm },
  });
  const stockBn = create('cnn', spec(true));
  const nets: [string, Net][] = [
    ['no batch norm', create('cnn', spec(false))],
    ['batch norm, tfjs-layers', stockBn],
    ['batch norm, ours', await loadNet('cnn', await stockBn.artifacts())],
  ];
  // Which batch norm each net runs: the fused kernel shows in a profile of a training pass.
  for (const [label, net] of nets) {
    const x = tf.zeros([2, ...shape]);
    const profile = await tf.profile(() => tf.dispose(net.apply(x, { training: true })));
    const fused = profile.kernels.some((k) => k.name === BN_TRAIN_KERNEL);
    console.log(`${label}: ${fused ? 'fused kernels' : 'tfjs-layers kernels'}`);
    x.dispose();
  }
  const plan = resolveConfig({ model: 'cnn' });
  const runs = nets.map(([label, net]) => ({ label, net, opt: optimizerFor(plan), times: [] as number[] }));
  for (let r = -1; r < rounds; r++) {
    for (const run of runs) {
      const augment = { ...AUGMENTATION, rng: new Rng(2) };
      const res = await trainEpoch(run.net, run.opt, part, { batchSize, shape, rng: new Rng(1), augment });
      // The first round compiles and allocates.
      if (r >= 0) run.times.push((res.seconds * 1000) / steps);
    }
  }
  const base = median(runs[1].times);
  for (const run of runs) {
    const m = median(run.times);
    console.log(
      `cnn step, ${run.label.padEnd(24)} ${m.toFixed(0).padStart(5)} ms` +
        (run === runs[1] ? '' : `  (${(base / m).toFixed(2)}x faster than tfjs-layers' batch norm)`),
    );
  }
  console.log(`(medians of ${rounds} rounds of ${steps} steps, batch ${batchSize})`);
}

async function main(): Promise<void> {
  await selectBackend('wasm');
  if (process.argv[2] === 'step') await stepBench(Number(process.argv[3] ?? 5));
  else await layerBench(Number(process.argv[2] ?? 15));
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${(err as Error).message}`);
  process.exit(1);
});

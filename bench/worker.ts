/**
 * One benchmark subject in its own process, so peak RSS and start-up time are its own.
 * Trains the seed's model with the seed's settings and prints one JSON line:
 *   imgclf:      the seed's model through trainRun (the code path of `imgclf train` and fit())
 *   imgclf-unfused: the same with the fused step off (`--no-fused`)
 *   imgclf-cnn:  the cnn with its default plan, the same way
 *   naive-tfjs:  see naive-tfjs.ts
 * Usage: tsx bench/worker.ts <imgclf|imgclf-unfused|imgclf-cnn|naive-tfjs> <backend> <epochs> [workers]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend, type BackendName } from '../src/backend/index.js';
import { loadDataset } from '../src/node/data/load.js';
import { create } from '../src/core/models/index.js';
import { trainRun } from '../src/core/train/run.js';
import { resolveConfig } from '../src/core/plan.js';
import { startPool } from '../src/backend/workers/pool.js';
import { naiveTfjs } from './naive-tfjs.js';

export interface WorkerResult {
  subject: string;
  backend: string;
  epochs: { seconds: number; test_accuracy: number; train_loss: number; eval_seconds: number }[];
  /** Seconds from process start to the end of the first training step. */
  first_batch_seconds: number;
  /** Seconds to read, gunzip, verify and parse the dataset. */
  data_load_seconds: number;
  /** Peak resident set size of this process (worker threads included), MB. */
  peak_rss_mb: number;
  /** Training threads. */
  workers: number;
  /** Median wall milliseconds per training step, past the first five. */
  ms_per_step: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
}

const [subject, backendName, epochsArg, workersArg] = process.argv.slice(2);
const epochs = Number(epochsArg ?? 3);
const workers = Number(workersArg ?? 1);
// The naive baseline gets the stock backends, without imgclf's kernels, as a tfjs user has them.
const backend =
  subject === 'naive-tfjs'
    ? await stockBackend(backendName)
    : await selectBackend(backendName as BackendName);
const loadStart = performance.now();
const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
const dataLoad = (performance.now() - loadStart) / 1000;
let firstBatch = 0;
let result: WorkerResult['epochs'];
/** Wall time between consecutive steps, after the first few (compilation, allocation). */
const stepGaps: number[] = [];
let lastStep = 0;
const onBatch = (): void => {
  const now = performance.now();
  firstBatch ||= now / 1000;
  if (lastStep) stepGaps.push(now - lastStep);
  lastStep = now;
};
if (subject === 'imgclf' || subject === 'imgclf-unfused' || subject === 'imgclf-cnn') {
  // The seed's model and settings (imgclf-unfused: with the fused step turned off, as
  // `--no-fused` does), or the cnn with its default plan (what `imgclf train --model cnn` runs).
  const plan =
    subject === 'imgclf-cnn'
      ? resolveConfig({ model: 'cnn', epochs, workers })
      : resolveConfig({
          model: 'softmax',
          epochs,
          workers,
          ...(subject === 'imgclf-unfused' ? { fused: false } : {}),
        });
  const model = create(plan.model, { inputShape: dataset.shape, numClasses: 10, seed: plan.seed });
  // The network and recipe as a run directory's model.json and metadata.json, for
  // cnn_reference.py --like: PyTorch then trains the same network whatever the defaults are.
  const likeDir = process.env.IMGCLF_BENCH_LIKE;
  if (likeDir && subject === 'imgclf-cnn') {
    mkdirSync(likeDir, { recursive: true });
    const { modelTopology } = await model.artifacts();
    writeFileSync(path.join(likeDir, 'model.json'), JSON.stringify({ modelTopology }));
    writeFileSync(path.join(likeDir, 'metadata.json'), JSON.stringify({ config: plan }));
  }
  const pool =
    workers > 1
      ? await startPool(model, { workers, backend, plan, shape: dataset.shape, batchSize: plan.batchSize })
      : undefined;
  try {
    // trainRun, as `imgclf train` and the library's fit() run it: it picks the fused step
    // unless the plan turns it off.
    const { history } = await trainRun(
      model,
      plan,
      { train: dataset.train, test: dataset.test, shape: dataset.shape },
      [
        {
          onBatch: (_epoch, done) => {
            if (done === 1) lastStep = 0; // the gap across an evaluation is not a step
            onBatch();
          },
        },
      ],
      { runner: pool },
    );
    result = history.map((m) => ({
      seconds: m.seconds,
      test_accuracy: m.test_accuracy,
      train_loss: m.train_loss,
      eval_seconds: m.eval_seconds,
    }));
  } finally {
    await pool?.close();
  }
} else if (subject === 'naive-tfjs') {
  const r = await naiveTfjs(dataset, epochs);
  result = r.epochs;
  firstBatch = r.firstBatchAt;
} else {
  throw new Error(`unknown subject ${subject}`);
}
const out: WorkerResult = {
  subject,
  backend,
  epochs: result,
  first_batch_seconds: firstBatch,
  data_load_seconds: dataLoad,
  peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  workers,
  ms_per_step: median(stepGaps.slice(5)),
};
process.stdout.write(JSON.stringify(out) + '\n');

async function stockBackend(name: string): Promise<string> {
  if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  else await import('@tensorflow/tfjs-backend-cpu');
  await tf.setBackend(name);
  await tf.ready();
  return tf.getBackend();
}
process.exit(0);

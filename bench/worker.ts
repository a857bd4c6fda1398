/**
 * One benchmark subject in its own process, so peak RSS and start-up time are its own.
 * Trains the seed's model with the seed's settings and prints one JSON line:
 *   imgclf:      the library's own fit() (the code path of `imgclf train`)
 *   naive-tfjs:  see naive-tfjs.ts
 * Usage: tsx bench/worker.ts <imgclf|naive-tfjs> <backend> <epochs>
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend, type BackendName } from '../src/backend/index.js';
import { loadDataset } from '../src/node/data/load.js';
import { create } from '../src/core/models/index.js';
import { fit } from '../src/core/train/loop.js';
import { createOptimizer } from '../src/core/optim/optimizers.js';
import { naiveTfjs } from './naive-tfjs.js';

export interface WorkerResult {
  subject: string;
  backend: string;
  epochs: { seconds: number; test_accuracy: number; train_loss: number; eval_seconds: number }[];
  /** Seconds from process start to the end of the first training step. */
  first_batch_seconds: number;
  /** Seconds to read, gunzip, verify and parse the dataset. */
  data_load_seconds: number;
  /** Peak resident set size of this process, MB. */
  peak_rss_mb: number;
}

const [subject, backendName, epochsArg] = process.argv.slice(2);
const epochs = Number(epochsArg ?? 3);
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
if (subject === 'imgclf') {
  const model = create('softmax', { inputShape: dataset.shape, numClasses: 10, seed: 0 });
  const history = await fit(model, createOptimizer({ name: 'sgd', lr: 0.1 }), dataset.train, dataset.test, {
    epochs,
    batchSize: 256,
    seed: 0,
    shape: dataset.shape,
    onBatch: () => {
      firstBatch ||= performance.now() / 1000;
    },
  });
  result = history.map((m) => ({
    seconds: m.seconds,
    test_accuracy: m.test_accuracy,
    train_loss: m.train_loss,
    eval_seconds: m.eval_seconds,
  }));
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

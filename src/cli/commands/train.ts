/** `imgclf train`: train a registered model and write a run directory. */
import type { Command } from 'commander';
import path from 'node:path';
import { selectBackend, type BackendName } from '../../backend/index.js';
import { resolveConfig, type TrainConfig } from '../../config.js';
import type { Lang } from '../../data/classes.js';
import { loadDataset } from '../../data/load.js';
import { create } from '../../models/index.js';
import { writeReport } from '../../report/report.js';
import { RUN_FORMAT, saveMetadata, saveMetrics, saveModel } from '../../run/rundir.js';
import { type EpochMetrics, fit } from '../../train/loop.js';
import { createOptimizer } from '../../train/optimizers.js';
import { VERSION } from '../../version.js';
import { type GlobalOptions, numberArg, Output } from '../output.js';

/** The per-epoch line: the seed's figures plus test accuracy and time. */
export function epochLine(m: EpochMetrics, epochs: number, lang: Lang): string {
  const secs = `${m.seconds.toFixed(1)}s`;
  if (lang === 'zh') {
    return `第${m.epoch}次训练平均损失为${m.train_loss.toFixed(4)},平均分类准确度${m.train_accuracy.toFixed(4)},测试准确度${m.test_accuracy.toFixed(4)} (${secs})`;
  }
  return `epoch ${m.epoch}/${epochs}  loss ${m.train_loss.toFixed(4)}  train acc ${m.train_accuracy.toFixed(4)}  test acc ${m.test_accuracy.toFixed(4)}  ${secs}`;
}

function defaultOut(): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
  return path.join('runs', stamp);
}

export async function train(
  cfg: TrainConfig,
  out: Output,
): Promise<{ history: EpochMetrics[]; dir: string; backend: string }> {
  const dir = cfg.out ?? defaultOut();
  const backend = await selectBackend(cfg.backend);
  const log = (m: string) => out.line(m);
  const { dataset, located, seconds } = await loadDataset({
    dataset: cfg.dataset,
    dataDir: cfg.dataDir,
    resize: cfg.resize,
    log,
  });
  const [h, w, c] = dataset.shape;
  out.line(
    `training ${cfg.model} on ${dataset.name} (${dataset.train.count} train / ${dataset.test.count} test, ${h}x${w}x${c}) ` +
      `from ${located.dir}, backend ${backend}, data loaded in ${seconds.toFixed(2)}s`,
  );
  const model = create(cfg.model, {
    inputShape: dataset.shape,
    numClasses: dataset.classNames.length,
    seed: cfg.seed,
  });
  const optimizer = createOptimizer({ name: cfg.optimizer, lr: cfg.lr });
  const metadata = {
    format: RUN_FORMAT,
    model: cfg.model,
    dataset: dataset.name,
    classNames: dataset.classNames,
    inputShape: dataset.shape,
    preprocessing: { scale: 255, invertLightBackground: true, resize: 'contain' as const },
    config: { ...cfg, out: dir },
    backend,
    imgclfVersion: VERSION,
    tfjsVersion: (await import('@tensorflow/tfjs-core')).version_core,
    created: new Date().toISOString(),
  };
  let bar: ReturnType<Output['progress']> | undefined;
  const finished: EpochMetrics[] = [];
  const history = await fit(model, optimizer, dataset.train, dataset.test, {
    epochs: cfg.epochs,
    batchSize: cfg.batchSize,
    seed: cfg.seed,
    shape: dataset.shape,
    onBatch: (epoch, done, total) => {
      bar ??= out.progress(total, `epoch ${epoch}/${cfg.epochs}`);
      const pending = bar.update(done);
      if (done === total) {
        bar.stop();
        bar = undefined;
      }
      return pending;
    },
    onEpoch: async (m) => {
      out.line(epochLine(m, cfg.epochs, out.lang));
      // Saved every epoch: an interrupted run keeps its last finished epoch.
      await saveModel(model, dir);
      finished.push(m);
      await saveMetrics(dir, finished);
      await saveMetadata(dir, { ...metadata, testAccuracy: m.test_accuracy });
    },
  });
  out.line(`saved ${dir}`);
  // Pictures are drawn from the finished history and model, never inside the loop.
  const testAccuracy = history.at(-1)?.test_accuracy;
  await writeReport({
    dir,
    model,
    test: dataset.test,
    metadata: { ...metadata, testAccuracy },
    history,
    lang: out.lang,
    log,
  });
  out.line(`report ${path.join(dir, 'report.html')}`);
  return { history, dir, backend };
}

export function registerTrain(program: Command, globals: () => GlobalOptions): void {
  program
    .command('train')
    .description('train a model on Fashion-MNIST and write a run directory')
    .option('--model <name>', 'model name (see `imgclf models`)', 'softmax')
    .option(
      '--epochs <n>',
      "passes over the training set (default: the model's; 5 for softmax)",
      numberArg('--epochs', true),
    )
    .option('--batch-size <n>', 'examples per minibatch', numberArg('--batch-size', true), 256)
    .option('--lr <x>', "learning rate (default: the model's; 0.1 for softmax)", numberArg('--lr'))
    .option('--optimizer <name>', "optimizer (default: the model's; sgd for softmax)")
    .option('--seed <n>', 'seed for weight init and data order', numberArg('--seed', true), 0)
    .option('--backend <name>', 'auto, wasm, cpu or tensorflow', 'auto')
    .option('--data-dir <dir>', 'folder with the Fashion-MNIST IDX files')
    .option('--resize <n>', 'resize images to N x N (bilinear) before training', numberArg('--resize', true))
    .option('--out <dir>', 'run directory (default runs/<timestamp>)')
    .action(async (opts: Record<string, unknown>) => {
      const g = globals();
      const out = new Output(g);
      const cfg = resolveConfig({
        model: opts.model as string,
        epochs: opts.epochs as number | undefined,
        batchSize: opts.batchSize as number,
        lr: opts.lr as number | undefined,
        optimizer: opts.optimizer as string | undefined,
        seed: opts.seed as number,
        backend: opts.backend as BackendName,
        dataDir: opts.dataDir as string | undefined,
        resize: opts.resize as number | undefined,
        out: opts.out as string | undefined,
        lang: out.lang,
      });
      const { history, dir, backend } = await train(cfg, out);
      out.json({
        model: cfg.model,
        backend,
        epochs: history.map((m) => ({
          epoch: m.epoch,
          train_loss: m.train_loss,
          train_accuracy: m.train_accuracy,
          test_accuracy: m.test_accuracy,
          seconds: m.seconds,
        })),
        test_accuracy: history.at(-1)?.test_accuracy ?? null,
        out: dir,
      });
    });
}

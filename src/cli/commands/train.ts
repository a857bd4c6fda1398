/** `imgclf train`: train a registered model and write a run directory. */
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { selectBackend, type BackendName } from '../../backend/index.js';
import { resolveConfig, type TrainConfig } from '../../core/plan.js';
import type { Lang } from '../../core/data/classes.js';
import { borderBrightness, type Split } from '../../core/data/dataset.js';
import { folderPreprocessing } from '../../node/data/folder.js';
import { type DataSource, idxSource, type LoadedDataset, loadDataset } from '../../node/data/load.js';
import { stratifiedSplit } from '../../core/data/split.js';
import { UserError } from '../../core/errors.js';
import { create, getEntry, type Net } from '../../core/models/index.js';
import { writeReport } from '../../node/report/report.js';
import {
  CHECKPOINT_DIR,
  FINAL_DIR,
  loadCheckpoint,
  loadRun,
  METADATA_FILE,
  type Preprocessing,
  RUN_FORMAT,
  saveCheckpoint,
  saveMetadata,
  saveMetrics,
  saveModel,
} from '../../node/run/rundir.js';
import { type EpochMetrics, fit, type FitState } from '../../core/train/loop.js';
import { createOptimizer } from '../../core/optim/optimizers.js';
import { VERSION } from '../../core/version.js';
import { type GlobalOptions, numberArg, Output } from '../output.js';

/** The per-epoch line: the seed's figures plus test accuracy and time. */
export function epochLine(m: EpochMetrics, epochs: number, lang: Lang): string {
  const secs = `${m.seconds.toFixed(1)}s`;
  if (lang === 'zh') {
    return `第${m.epoch}次训练平均损失为${m.train_loss.toFixed(4)},平均分类准确度${m.train_accuracy.toFixed(4)},测试准确度${m.test_accuracy.toFixed(4)} (${secs})`;
  }
  const val = m.val_accuracy !== undefined ? `  val acc ${m.val_accuracy.toFixed(4)}` : '';
  return `epoch ${m.epoch}/${epochs}  loss ${m.train_loss.toFixed(4)}  train acc ${m.train_accuracy.toFixed(4)}${val}  test acc ${m.test_accuracy.toFixed(4)}  ${secs}`;
}

function defaultOut(): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
  return path.join('runs', stamp);
}

/** What `train --json` reports about the data it trained on. */
export interface DataSummary {
  source: DataSource['kind'];
  name: string;
  classes: string[];
  shape: number[];
  train: number;
  test: number;
  /** Image-folder files that could not be decoded. */
  skipped: string[];
  /** Image folders: 'hit' when the decoded tensors came from the cache. */
  cache: 'hit' | 'miss' | null;
  /** Seconds spent loading (reading, decoding or parsing) the data. */
  seconds: number;
}

/** The data source a training config names. */
export function dataSourceFromConfig(cfg: TrainConfig): DataSource {
  if (cfg.dataset === 'folder') {
    return {
      kind: 'folder',
      path: path.resolve(cfg.data!),
      imageSize: cfg.imageSize ?? 28,
      channels: cfg.channels ?? 3,
      resizeMode: cfg.resizeMode ?? 'fill',
      valSplit: cfg.valSplit ?? 0.1,
      seed: cfg.seed,
    };
  }
  if (cfg.dataset === 'csv') {
    return {
      kind: 'csv',
      path: path.resolve(cfg.data!),
      testPath: cfg.testData ? path.resolve(cfg.testData) : undefined,
      valSplit: cfg.valSplit ?? 0.1,
      seed: cfg.seed,
      resize: cfg.resize,
    };
  }
  return idxSource(cfg.dataset, cfg.dataDir, cfg.resize);
}

/**
 * How `predict` turns a picture into this model's input. Photos (image folders) are taken as
 * they are; for MNIST-like data (light strokes on a dark ground) light-background pictures are
 * inverted and letterboxed to look like the training images.
 */
export function preprocessingFor(loaded: LoadedDataset): Preprocessing {
  const { source, dataset } = loaded;
  if (source.kind === 'folder') return folderPreprocessing(source.resizeMode);
  if (source.kind === 'csv' && borderBrightness(dataset.train, dataset.shape) >= 0.5)
    return { scale: 255, invertLightBackground: false, resize: 'fill' };
  return { scale: 255, invertLightBackground: true, resize: 'contain' };
}

/** Flags that set model options, by model option key. */
function modelOptionsFrom(opts: Record<string, unknown>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (opts.hidden !== undefined) {
    const sizes = String(opts.hidden)
      .split(',')
      .map((v) => Number(v.trim()));
    if (sizes.length === 0 || sizes.some((v) => !Number.isInteger(v) || v < 1 || v > 65536))
      throw new UserError(`--hidden expects sizes like 256 or 256,128, got '${String(opts.hidden)}'`);
    o.hidden = sizes;
  }
  if (opts.widths !== undefined) {
    const widths = String(opts.widths)
      .split(',')
      .map((v) => Number(v.trim()));
    if (widths.length === 0 || widths.some((v) => !Number.isInteger(v) || v < 1 || v > 4096))
      throw new UserError(`--widths expects filter counts like 16,32, got '${String(opts.widths)}'`);
    o.widths = widths;
  }
  if (opts.dropout !== undefined) {
    const d = opts.dropout as number;
    if (!(d >= 0 && d < 1)) throw new UserError(`--dropout must be in [0, 1) (got ${d})`);
    o.dropout = d;
  }
  if (opts.activation !== undefined) {
    if (!['relu', 'sigmoid'].includes(String(opts.activation)))
      throw new UserError(`--activation must be relu or sigmoid (got '${String(opts.activation)}')`);
    o.activation = opts.activation;
  }
  if (opts.pool !== undefined) {
    if (!['max', 'avg'].includes(String(opts.pool)))
      throw new UserError(`--pool must be max or avg (got '${String(opts.pool)}')`);
    o.pool = opts.pool;
  }
  return o;
}

export async function train(
  cfg: TrainConfig,
  out: Output,
  resumeDir?: string,
): Promise<{
  history: EpochMetrics[];
  dir: string;
  backend: string;
  data: DataSummary;
  interrupted: boolean;
  bestEpoch?: number;
}> {
  const dir = cfg.out ?? defaultOut();
  const backend = await selectBackend(cfg.backend);
  const log = (m: string) => out.line(m);
  let decoding: ReturnType<Output['progress']> | undefined;
  const loaded = await loadDataset({
    source: dataSourceFromConfig(cfg),
    strict: cfg.strict,
    log,
    onProgress: (done, total) => {
      decoding ??= out.progress(total, 'decoding', 'images');
      decoding.update(done);
      if (done === total) decoding.stop();
    },
  });
  const { dataset, located, seconds } = loaded;
  if (loaded.source.kind === 'folder') {
    const counts = `${dataset.train.count + dataset.test.count} images in ${dataset.classNames.length} classes`;
    const skipped = loaded.skipped.length ? `, ${loaded.skipped.length} unreadable skipped` : '';
    const held = loaded.heldOut ? `, ${dataset.test.count} held out for testing` : '';
    out.line(`image folder ${located.dir}: ${counts}${skipped}${held} (cache ${loaded.cache})`);
  }
  const [h, w, c] = dataset.shape;
  const numClasses = dataset.classNames.length;
  // A validation split only where the data has a test split of its own; otherwise --val-split
  // already chose the held-out test split (data/load.ts), and selecting the best epoch on it
  // would report an optimistic test accuracy.
  let trainSplit = dataset.train;
  let val: Split | undefined;
  if (cfg.valSplit && !loaded.heldOut) {
    ({ train: trainSplit, val } = stratifiedSplit(
      dataset.train,
      dataset.shape,
      numClasses,
      cfg.valSplit,
      cfg.seed,
    ));
  }
  out.line(
    `training ${cfg.model} on ${dataset.name} (${trainSplit.count} train${val ? ` / ${val.count} val` : ''} / ${dataset.test.count} test, ${h}x${w}x${c}) ` +
      `from ${located.dir}, backend ${backend}, data loaded in ${seconds.toFixed(2)}s`,
  );
  const entry = getEntry(cfg.model);
  const optimizer = createOptimizer({
    name: cfg.optimizer,
    lr: cfg.lr,
    momentum: cfg.momentum,
    nesterov: cfg.nesterov,
    weightDecay: cfg.weightDecay,
    own: entry.ownOptimizer,
  });
  let model: Net;
  let resume: FitState | undefined;
  if (resumeDir) {
    const ck = await loadCheckpoint(resumeDir, cfg.model);
    if (ck.optimizerName !== optimizer.name)
      throw new UserError(
        `${resumeDir}: checkpoint optimizer '${ck.optimizerName}' differs from '${optimizer.name}'`,
      );
    model = ck.net;
    optimizer.setState(ck.optimizerState);
    resume = ck.fit;
    out.line(
      `resuming ${resumeDir} after epoch ${resume.epoch}${resume.batch ? ` and ${resume.batch} batches of the next` : ''}`,
    );
  } else {
    model = create(cfg.model, {
      inputShape: dataset.shape,
      numClasses,
      seed: cfg.seed,
      options: cfg.modelOptions,
    });
  }
  const metadata = {
    format: RUN_FORMAT,
    model: cfg.model,
    dataset: dataset.name,
    classNames: dataset.classNames,
    inputShape: dataset.shape,
    preprocessing: preprocessingFor(loaded),
    data: loaded.source,
    config: { ...cfg, out: dir },
    backend,
    imgclfVersion: VERSION,
    tfjsVersion: (await import('@tensorflow/tfjs-core')).version_core,
    created: new Date().toISOString(),
  };
  // Ctrl-C: finish the current step, write a checkpoint, then exit; a second Ctrl-C exits now.
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    out.line('interrupted: saving a checkpoint (Ctrl-C again to quit without it)');
  };
  process.on('SIGINT', onSigint);
  let bar: ReturnType<Output['progress']> | undefined;
  let bestTest: number | undefined;
  let history: EpochMetrics[];
  try {
    history = await fit(model, optimizer, trainSplit, dataset.test, {
      epochs: cfg.epochs,
      batchSize: cfg.batchSize,
      seed: cfg.seed,
      shape: dataset.shape,
      labelSmoothing: cfg.labelSmoothing,
      lr: cfg.lr,
      schedule: cfg.schedule,
      warmup: cfg.warmup,
      augment: cfg.augment ? { pad: 2, flip: true } : undefined,
      val,
      resume,
      shouldStop: () => stop,
      onBatch: (epoch, done, total) => {
        bar ??= out.progress(total, `epoch ${epoch}/${cfg.epochs}`);
        const pending = bar.update(done);
        if (done === total) {
          bar.stop();
          bar = undefined;
        }
        return pending;
      },
      onStop: async (state) => {
        bar?.stop();
        bar = undefined;
        await saveCheckpoint(dir, model, optimizer, state);
      },
      onEpoch: async (m, state, best) => {
        out.line(epochLine(m, cfg.epochs, out.lang));
        // Saved every epoch: an interrupted run keeps its last finished epoch. With a
        // validation split the top level holds the best epoch and final/ the last one.
        if (val) {
          if (best) {
            await saveModel(model, dir);
            bestTest = m.test_accuracy;
          }
          // final/ is a complete run directory too: evaluate and predict accept it.
          await saveModel(model, path.join(dir, FINAL_DIR));
          await saveMetadata(path.join(dir, FINAL_DIR), { ...metadata, testAccuracy: m.test_accuracy });
        } else {
          await saveModel(model, dir);
        }
        await saveMetrics(dir, state.history);
        await saveCheckpoint(dir, model, optimizer, state);
        await saveMetadata(dir, {
          ...metadata,
          testAccuracy: val ? (bestTest ?? m.test_accuracy) : m.test_accuracy,
          ...(val ? { bestEpoch: state.bestEpoch, finalTestAccuracy: m.test_accuracy } : {}),
        });
      },
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
  const data: DataSummary = {
    source: loaded.source.kind,
    name: dataset.name,
    classes: dataset.classNames,
    shape: dataset.shape,
    train: trainSplit.count,
    test: dataset.test.count,
    skipped: loaded.skipped.map((s) => s.path),
    cache: loaded.cache ?? null,
    seconds,
  };
  if (stop) {
    out.line(
      `checkpoint saved in ${path.join(dir, CHECKPOINT_DIR)}; continue with: imgclf train --resume ${dir}`,
    );
    return { history, dir, backend, data, interrupted: true };
  }
  let bestEpoch: number | undefined;
  if (val && history.length > 0) {
    const best = history.reduce((a, b) => ((b.val_accuracy ?? 0) > (a.val_accuracy ?? 0) ? b : a));
    bestEpoch = best.epoch;
    out.line(
      `best epoch by validation accuracy: ${best.epoch} (val ${best.val_accuracy!.toFixed(4)}, test ${best.test_accuracy.toFixed(4)}), kept in ${dir}; last epoch in ${path.join(dir, FINAL_DIR)}`,
    );
  }
  out.line(`saved ${dir}`);
  // Pictures are drawn from the finished run, never inside the loop. With a validation split
  // the run's model is the best epoch's, so the report evaluates the model saved at the top.
  const reported = val ? (await loadRun(dir)).model : model;
  await writeReport({
    dir,
    model: reported,
    test: dataset.test,
    metadata: { ...metadata, testAccuracy: val ? bestTest : history.at(-1)?.test_accuracy },
    history,
    lang: out.lang,
    log,
  });
  out.line(`report ${path.join(dir, 'report.html')}`);
  return { history, dir, backend, data, interrupted: false, bestEpoch };
}

/** The config a run directory was trained with, for --resume. */
async function configOf(dir: string): Promise<TrainConfig> {
  let text: string;
  try {
    text = await readFile(path.join(dir, METADATA_FILE), 'utf8');
  } catch {
    throw new UserError(`${dir} is not a run directory to resume (${METADATA_FILE} is missing)`);
  }
  try {
    const meta = JSON.parse(text) as { config: TrainConfig };
    return resolveConfig({ ...meta.config, out: dir });
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${path.join(dir, METADATA_FILE)} is not valid JSON; cannot resume`);
  }
}

export function registerTrain(program: Command, globals: () => GlobalOptions): void {
  program
    .command('train')
    .description(
      'train a model on Fashion-MNIST, another built-in set, or your own images, and write a run directory',
    )
    .option('--model <name>', 'model name (see `imgclf models`; default softmax)')
    .option(
      '--epochs <n>',
      "passes over the training set (default: the model's; 5 for softmax)",
      numberArg('--epochs', true),
    )
    .option(
      '--batch-size <n>',
      "examples per minibatch (default: the model's; 256)",
      numberArg('--batch-size', true),
    )
    .option('--lr <x>', "learning rate (default: the model's; 0.1 for softmax)", numberArg('--lr'))
    .option('--optimizer <name>', "sgd, adam, adamw or own (default: the model's; sgd for softmax)")
    .option('--momentum <x>', 'sgd momentum', numberArg('--momentum'))
    .option('--nesterov', 'Nesterov momentum (sgd)')
    .option('--weight-decay <x>', 'weight decay (decoupled for adamw)', numberArg('--weight-decay'))
    .option('--schedule <name>', 'LR schedule: constant, step, cosine, onecycle')
    .option('--warmup <epochs>', 'linear LR warmup, in epochs', numberArg('--warmup'))
    .option('--label-smoothing <eps>', 'label smoothing', numberArg('--label-smoothing'))
    .option(
      '--val-split <f>',
      'hold out this fraction of the training data (stratified): for validation, keeping the best epoch, or, for data without a test split, as the test split (default 0.1 there)',
      numberArg('--val-split'),
    )
    .option('--augment', "random crop + flip on each batch (default: the model's; on for cnn)")
    .option('--no-augment', 'turn batch augmentation off')
    .option('--hidden <sizes>', 'mlp hidden sizes, e.g. 256,128')
    .option('--widths <filters>', 'cnn filters per resolution (default 32,64)')
    .option('--dropout <p>', 'mlp/cnn dropout rate', numberArg('--dropout'))
    .option('--activation <name>', 'mlp/lenet activation: relu or sigmoid')
    .option('--pool <name>', 'lenet pooling: max or avg')
    .option('--resume <dir>', 'continue an interrupted run from its checkpoint')
    .option('--seed <n>', 'seed for weight init, data order and augmentation', numberArg('--seed', true), 0)
    .option('--backend <name>', 'auto, wasm, cpu or tensorflow', 'auto')
    .option('--dataset <name>', 'built-in IDX dataset: fashion-mnist (default), mnist or kmnist')
    .option('--data-dir <dir>', 'folder with the IDX files of --dataset')
    .option('--data <path>', 'your own data: a folder with one subfolder per class, or a .csv file')
    .option('--test-data <file>', 'test CSV for a CSV --data (default: hold out --val-split)')
    .option(
      '--image-size <n>',
      'image folders: resize to N x N (default 28)',
      numberArg('--image-size', true),
    )
    .option('--channels <n>', 'image folders: 1 (gray) or 3 (RGB, default)', numberArg('--channels', true))
    .option('--resize-mode <mode>', 'image folders: fill (default), contain or cover')
    .option('--strict', 'image folders: fail on an unreadable file instead of skipping it')
    .option('--resize <n>', 'resize images to N x N (bilinear) before training', numberArg('--resize', true))
    .option('--out <dir>', 'run directory (default runs/<timestamp>)')
    .action(async (opts: Record<string, unknown>) => {
      const g = globals();
      const out = new Output(g);
      const cfg = opts.resume
        ? await configOf(opts.resume as string)
        : resolveConfig({
            model: (opts.model as string | undefined) ?? 'softmax',
            epochs: opts.epochs as number | undefined,
            batchSize: opts.batchSize as number | undefined,
            lr: opts.lr as number | undefined,
            optimizer: opts.optimizer as string | undefined,
            seed: opts.seed as number,
            backend: opts.backend as BackendName,
            dataset: opts.dataset as string | undefined,
            dataDir: opts.dataDir as string | undefined,
            data: opts.data as string | undefined,
            testData: opts.testData as string | undefined,
            imageSize: opts.imageSize as number | undefined,
            channels: opts.channels as 1 | 3 | undefined,
            resizeMode: opts.resizeMode as TrainConfig['resizeMode'],
            strict: opts.strict as boolean | undefined,
            resize: opts.resize as number | undefined,
            out: opts.out as string | undefined,
            lang: out.lang,
            schedule: opts.schedule as string | undefined,
            warmup: opts.warmup as number | undefined,
            momentum: opts.momentum as number | undefined,
            nesterov: opts.nesterov as boolean | undefined,
            weightDecay: opts.weightDecay as number | undefined,
            labelSmoothing: opts.labelSmoothing as number | undefined,
            valSplit: opts.valSplit as number | undefined,
            augment: opts.augment as boolean | undefined,
            modelOptions: modelOptionsFrom(opts),
          });
      const { history, dir, backend, data, interrupted, bestEpoch } = await train(
        cfg,
        out,
        opts.resume as string | undefined,
      );
      if (interrupted) process.exitCode = 130;
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
        ...(bestEpoch !== undefined ? { best_epoch: bestEpoch } : {}),
        interrupted,
        out: dir,
        data,
      });
    });
}

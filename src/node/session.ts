/**
 * One training session: load the data, split it, build (or resume) the model, fit, save the
 * best and the final model after every epoch, and write the report. The CLI calls it; any
 * other shell (a server, a script) can too, because everything it shows goes through hooks.
 *
 *   plan ─▶ loadDataset ─▶ (validation split) ─▶ create | loadCheckpoint ─▶ fit ─▶ run directory
 *                                                                                  └▶ report
 *
 * The training loop itself is `fit` in src/core/train/loop.ts; this module is the policy
 * around it: what is saved where and when.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { version_core as tfjsVersion } from '@tensorflow/tfjs-core';
import { selectBackend } from '../backend/index.js';
import type { Split } from '../core/data/dataset.js';
import { preprocessingFor } from '../core/data/source.js';
import { stratifiedSplit } from '../core/data/split.js';
import { UserError } from '../core/errors.js';
import { create, type Net } from '../core/models/index.js';
import { dataSourceOf, fitOptionsFor, optimizerFor, resolveConfig, type TrainConfig } from '../core/plan.js';
import { type EpochMetrics, fit, type FitState } from '../core/train/loop.js';
import { VERSION } from '../core/version.js';
import { type DataSource, type LoadedDataset, loadDataset } from './data/load.js';
import { writeReport } from './report/report.js';
import {
  CHECKPOINT_DIR,
  FINAL_DIR,
  loadCheckpoint,
  loadRun,
  METADATA_FILE,
  RUN_FORMAT,
  type RunMetadata,
  saveCheckpoint,
  saveMetadata,
  saveMetrics,
  saveModel,
} from './run/rundir.js';

/** A progress display for a counted task; `update` may hand back a promise the loop awaits. */
export interface Progress {
  update(done: number): void | Promise<void>;
  stop(): void;
}

/** How a session talks to its shell. Every hook is optional. */
export interface SessionHooks {
  /** Informational lines: what is loaded, what is saved, where the report is. */
  log?(message: string): void;
  /** A progress display for `total` items (decoding images, batches of an epoch). */
  progress?(total: number, label: string, unit?: string): Progress;
  /** After each finished epoch, with the plan's epoch count. */
  onEpoch?(m: EpochMetrics, epochs: number): void;
  /** Checked before every batch: true stops the run and writes a checkpoint to resume from. */
  shouldStop?(): boolean;
  /** Language of the report's pictures. */
  lang?: 'en' | 'zh';
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

export interface SessionResult {
  history: EpochMetrics[];
  dir: string;
  backend: string;
  data: DataSummary;
  /** True when shouldStop ended the run; a checkpoint was written. */
  interrupted: boolean;
  /** With a validation split: the epoch kept at the top of the run directory. */
  bestEpoch?: number;
  /** Test accuracy of the run's model (with a validation split: of the best epoch). */
  testAccuracy?: number;
}

function defaultOut(): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
  return path.join('runs', stamp);
}

/** The plan a run directory was trained with, for --resume. */
export async function planOfRun(dir: string): Promise<TrainConfig> {
  let text: string;
  try {
    text = await readFile(path.join(dir, METADATA_FILE), 'utf8');
  } catch {
    throw new UserError(`${dir} is not a run directory to resume (${METADATA_FILE} is missing)`);
  }
  let meta: { config?: TrainConfig };
  try {
    meta = JSON.parse(text) as { config?: TrainConfig };
  } catch {
    throw new UserError(`${path.join(dir, METADATA_FILE)} is not valid JSON; cannot resume`);
  }
  if (!meta.config) throw new UserError(`${path.join(dir, METADATA_FILE)} records no training plan`);
  return resolveConfig({ ...meta.config, out: dir });
}

/** Loads the data a plan names, with a decoding progress bar for image folders. */
async function loadPlanData(plan: TrainConfig, hooks: SessionHooks): Promise<LoadedDataset> {
  let decoding: Progress | undefined;
  const loaded = await loadDataset({
    source: dataSourceOf(plan),
    strict: plan.strict,
    log: hooks.log,
    onProgress: (done, total) => {
      decoding ??= hooks.progress?.(total, 'decoding', 'images');
      void decoding?.update(done);
      if (done === total) decoding?.stop();
    },
  });
  const { dataset, located } = loaded;
  if (loaded.source.kind === 'folder') {
    const counts = `${dataset.train.count + dataset.test.count} images in ${dataset.classNames.length} classes`;
    const skipped = loaded.skipped.length ? `, ${loaded.skipped.length} unreadable skipped` : '';
    const held = loaded.heldOut ? `, ${dataset.test.count} held out for testing` : '';
    hooks.log?.(`image folder ${located.dir}: ${counts}${skipped}${held} (cache ${loaded.cache})`);
  }
  return loaded;
}

/**
 * Trains under `plan` into `plan.out` (default runs/<timestamp>), or continues the run in
 * `resumeDir` from its checkpoint. Every finished epoch is saved, so an interrupted run keeps
 * its last finished epoch; with a validation split the top level holds the best epoch and
 * final/ the last one.
 */
export async function trainSession(
  plan: TrainConfig,
  hooks: SessionHooks = {},
  resumeDir?: string,
): Promise<SessionResult> {
  const log = (m: string) => hooks.log?.(m);
  const dir = plan.out ?? defaultOut();
  const backend = await selectBackend(plan.backend);
  const loaded = await loadPlanData(plan, hooks);
  const { dataset, located, seconds } = loaded;
  const [h, w, c] = dataset.shape;
  const numClasses = dataset.classNames.length;
  // A validation split only where the data has a test split of its own; otherwise --val-split
  // already chose the held-out test split (node/data/load.ts), and selecting the best epoch on
  // it would report an optimistic test accuracy.
  let trainSplit: Split = dataset.train;
  let val: Split | undefined;
  if (plan.valSplit && !loaded.heldOut) {
    ({ train: trainSplit, val } = stratifiedSplit(
      dataset.train,
      dataset.shape,
      numClasses,
      plan.valSplit,
      plan.seed,
    ));
  }
  log(
    `training ${plan.model} on ${dataset.name} (${trainSplit.count} train${val ? ` / ${val.count} val` : ''} / ${dataset.test.count} test, ${h}x${w}x${c}) ` +
      `from ${located.dir}, backend ${backend}, data loaded in ${seconds.toFixed(2)}s`,
  );

  const optimizer = optimizerFor(plan);
  let model: Net;
  let resume: FitState | undefined;
  if (resumeDir) {
    const ck = await loadCheckpoint(resumeDir, plan.model);
    if (ck.optimizerName !== optimizer.name)
      throw new UserError(
        `${resumeDir}: checkpoint optimizer '${ck.optimizerName}' differs from '${optimizer.name}'`,
      );
    model = ck.net;
    optimizer.setState(ck.optimizerState);
    resume = ck.fit;
    log(
      `resuming ${resumeDir} after epoch ${resume.epoch}${resume.batch ? ` and ${resume.batch} batches of the next` : ''}`,
    );
  } else {
    model = create(plan.model, {
      inputShape: dataset.shape,
      numClasses,
      seed: plan.seed,
      options: plan.modelOptions,
    });
  }

  const metadata: RunMetadata = {
    format: RUN_FORMAT,
    model: plan.model,
    dataset: dataset.name,
    classNames: dataset.classNames,
    inputShape: dataset.shape,
    preprocessing: preprocessingFor(loaded.source, dataset.train, dataset.shape),
    data: loaded.source,
    config: { ...plan, out: dir },
    backend,
    imgclfVersion: VERSION,
    tfjsVersion,
    created: new Date().toISOString(),
  };
  /** The metadata of the model at the top level: with a validation split, the best epoch's. */
  const topMetadata = (state: FitState, last: EpochMetrics): RunMetadata =>
    val
      ? {
          ...metadata,
          testAccuracy: state.bestTestAccuracy,
          bestEpoch: state.bestEpoch,
          finalTestAccuracy: last.test_accuracy,
        }
      : { ...metadata, testAccuracy: last.test_accuracy };

  let bar: Progress | undefined;
  let state: FitState | undefined = resume;
  const history = await fit(model, optimizer, trainSplit, dataset.test, {
    ...fitOptionsFor(plan, dataset.shape),
    val,
    resume,
    shouldStop: hooks.shouldStop,
    onBatch: (epoch, done, total) => {
      bar ??= hooks.progress?.(total, `epoch ${epoch}/${plan.epochs}`);
      const pending = bar?.update(done);
      if (done === total) {
        bar?.stop();
        bar = undefined;
      }
      return pending;
    },
    onStop: async (s) => {
      bar?.stop();
      bar = undefined;
      state = s;
      await saveCheckpoint(dir, model, optimizer, s);
    },
    onEpoch: async (m, s, best) => {
      state = s;
      hooks.onEpoch?.(m, plan.epochs);
      if (val) {
        if (best) await saveModel(model, dir);
        // final/ is a complete run directory too: evaluate and predict accept it.
        await saveModel(model, path.join(dir, FINAL_DIR));
        await saveMetadata(path.join(dir, FINAL_DIR), { ...metadata, testAccuracy: m.test_accuracy });
      } else {
        await saveModel(model, dir);
      }
      await saveMetrics(dir, s.history);
      await saveCheckpoint(dir, model, optimizer, s);
      await saveMetadata(dir, topMetadata(s, m));
    },
  });
  optimizer.dispose();

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
  const result = { history, dir, backend, data };
  if (hooks.shouldStop?.() && (state?.batch !== 0 || history.length < plan.epochs)) {
    log(`checkpoint saved in ${path.join(dir, CHECKPOINT_DIR)}; continue with: imgclf train --resume ${dir}`);
    return { ...result, interrupted: true };
  }
  const last = history.at(-1);
  if (!state || !last)
    throw new UserError(`${dir}: nothing left to train (the run has ${plan.epochs} epochs)`);
  const top = topMetadata(state, last);
  if (val) {
    const best = history.find((m) => m.epoch === state!.bestEpoch);
    log(
      `best epoch by validation accuracy: ${state.bestEpoch} (val ${best?.val_accuracy?.toFixed(4)}, test ${state.bestTestAccuracy?.toFixed(4)}), kept in ${dir}; last epoch in ${path.join(dir, FINAL_DIR)}`,
    );
  }
  log(`saved ${dir}`);
  // Pictures are drawn from the finished run, never inside the loop. With a validation split
  // the run's model is the best epoch's, so the report evaluates the model saved at the top.
  const reported = val ? (await loadRun(dir)).model : model;
  await writeReport({
    dir,
    model: reported,
    test: dataset.test,
    metadata: top,
    history,
    lang: hooks.lang ?? 'en',
    log,
  });
  if (reported !== model) reported.dispose();
  log(`report ${path.join(dir, 'report.html')}`);
  return {
    ...result,
    interrupted: false,
    bestEpoch: val ? state.bestEpoch : undefined,
    testAccuracy: top.testAccuracy,
  };
}

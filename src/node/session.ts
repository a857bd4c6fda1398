/**
 * One training session: load the data, split it, build (or resume) the model, fit, save the
 * best and the final model after every epoch, and write the report. The CLI calls it; any
 * other shell (a server, a script) can too, because everything it shows goes through hooks.
 *
 *   plan ─▶ loadDataset ─▶ (validation split) ─▶ create | loadCheckpoint ─▶ fit ─▶ run directory
 *                                                                                  └▶ report
 *
 * With a backbone (transfer learning), the backbone is loaded first, the images are loaded at
 * its input shape and replaced by its features (node/backbone/features.ts, cached), and the
 * head trains on those; the run records the backbone and stores the head (node/run/rundir.ts
 * loads them back as one net). A model with no trainable variables (knn) is not fitted: it
 * memorizes the training split and is evaluated once, as one epoch.
 *
 * The training loop itself is `fit` in src/core/train/loop.ts; this module is the policy
 * around it: what is saved where and when.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { version_core as tfjsVersion } from '@tensorflow/tfjs-core';
import { selectBackend } from '../backend/index.js';
import { chooseWorkers, type WorkerChoice } from '../backend/workers/choose.js';
import { startPool } from '../backend/workers/pool.js';
import { type Dataset, type ImageShape, pixelsAsFloat, type Split } from '../core/data/dataset.js';
import { type DataSource as Source, preprocessingFor } from '../core/data/source.js';
import { stratifiedSplit, subset } from '../core/data/split.js';
import { UserError } from '../core/errors.js';
import { create, type Net } from '../core/models/index.js';
import { memorize } from '../core/models/knn.js';
import {
  dataSourceOf,
  fitOptionsFor,
  optimizerFor,
  resolveConfig,
  sizeToData,
  type TrainConfig,
} from '../core/plan.js';
import { RESUMABLE, type ResumableSetting } from '../core/settings.js';
import { DivergedError, type EpochMetrics, evaluate, fit, type FitState } from '../core/train/loop.js';
import { VERSION } from '../core/version.js';
import { type Backbone, backboneNet, loadBackbone } from './backbone/backbone.js';
import { featureDataset } from './backbone/features.js';
import { type DataSource, type LoadedDataset, loadDataset } from './data/load.js';
import { writeReport } from './report/report.js';
import {
  asRunFolder,
  CHECKPOINT_DIR,
  checkpointFiles,
  FINAL_DIR,
  type LoadedCheckpoint,
  loadCheckpoint,
  loadRun,
  METADATA_FILE,
  metadataText,
  METRICS_FILE,
  metricsText,
  modelFiles,
  readMetadata,
  REPORT_FILES,
  RUN_FORMAT,
  type RunMetadata,
} from './run/rundir.js';
import { lockRun } from './run/lock.js';
import { commitSave, holdsRun, type SaveFiles } from './run/save.js';

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
  /** With a backbone: whether the features came from the cache (all, some or none). */
  featureCache?: 'hit' | 'partial' | 'miss';
  /** Seconds spent loading (reading, decoding or parsing) the data. */
  seconds: number;
}

export interface SessionResult {
  history: EpochMetrics[];
  dir: string;
  backend: string;
  /** Training threads used. */
  workers: number;
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

/**
 * What a resume may change in a run's recorded plan (the settings declared `resumable` in
 * core/settings.ts); everything else is kept.
 */
export const RESUME_OVERRIDES = RESUMABLE;
export type ResumeOverrides = Partial<Pick<TrainConfig, ResumableSetting>>;

/**
 * The plan a run directory was trained with, for --resume, with the few settings a resume
 * may change: more epochs, another backend, the data moved to another folder.
 */
export async function planOfRun(dir: string, overrides: ResumeOverrides = {}): Promise<TrainConfig> {
  const meta = await readMetadata(
    dir,
    `${dir} is not a run directory to resume (${METADATA_FILE} is missing)`,
  );
  if (!meta.config) throw new UserError(`${path.join(dir, METADATA_FILE)} records no training plan`);
  const changes = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return resolveConfig({ ...meta.config, ...changes, out: dir });
}

/**
 * The plan's data source, at a backbone's input shape when there is one: an image folder is
 * decoded at that size and channel count; a built-in set or a CSV is resized to it and must
 * have its channels.
 */
function sourceFor(plan: TrainConfig, input?: ImageShape): Source {
  const source = dataSourceOf(plan);
  if (!input) return source;
  const [size, , channels] = input;
  if (source.kind === 'folder') return { ...source, imageSize: size, channels: channels as 1 | 3 };
  if (channels !== 1) {
    throw new UserError(
      `the backbone takes ${input.join('x')} images but ${source.kind === 'idx' ? source.dataset : source.path} is gray; train on an image folder (--data PATH) to give it RGB pictures`,
    );
  }
  return size === 28 && source.kind === 'idx' ? source : { ...source, resize: size };
}

/** Loads the data a plan names, with a decoding progress bar for image folders. */
async function loadPlanData(
  plan: TrainConfig,
  hooks: SessionHooks,
  input?: ImageShape,
): Promise<LoadedDataset> {
  let decoding: Progress | undefined;
  const loaded = await loadDataset({
    source: sourceFor(plan, input),
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

export interface SessionOptions {
  /** Continue the run in this directory from its checkpoint. */
  resume?: string;
  /** Replace a run that `plan.out` already holds (without it, that is an error). */
  force?: boolean;
}

/**
 * Whether a new run may write into `dir`: it is new or empty of runs, or it holds one and
 * `force` says to replace it. Returns true when a run is to be replaced; the replacement
 * happens at the new run's first save, so a run that fails before it keeps the old one.
 */
function claimOut(dir: string, force: boolean | undefined, log: (m: string) => void): boolean {
  if (!holdsRun(dir)) return false;
  if (!force) {
    throw new UserError(
      `${dir} already holds a run; pass --force to replace it, --resume ${dir} to continue it, or another --out`,
    );
  }
  log(`--force: the run in ${dir} is replaced at the first save`);
  return true;
}

/** A checkpoint must fit the run it resumes: the same model, classes and input shape. */
function checkResumable(dir: string, ck: LoadedCheckpoint, plan: TrainConfig, dataset: Dataset): void {
  const { model, classNames, inputShape } = ck.identity;
  const where = path.join(dir, CHECKPOINT_DIR);
  if (model !== undefined && model !== plan.model)
    throw new UserError(
      `${where} holds model '${model}' but the run trains '${plan.model}'; it cannot be resumed`,
    );
  if (classNames !== undefined && classNames.join('\n') !== dataset.classNames.join('\n')) {
    throw new UserError(
      `${where} was trained on ${classNames.length} classes (${classNames.join(', ')}) but the data now has ${dataset.classNames.length} (${dataset.classNames.join(', ')}); it cannot be resumed`,
    );
  }
  if (inputShape !== undefined && inputShape.join('x') !== dataset.shape.join('x')) {
    throw new UserError(
      `${where} takes ${inputShape.join('x')} images but the data is ${dataset.shape.join('x')}; it cannot be resumed`,
    );
  }
  const done = ck.fit.epoch;
  if (ck.fit.stoppedEarly !== undefined) {
    throw new UserError(
      `${dir} stopped early after epoch ${ck.fit.stoppedEarly} (no better validation accuracy for ${plan.patience} epochs); its best epoch ${ck.fit.bestEpoch} is the run's model`,
    );
  }
  if (done >= plan.epochs && ck.fit.batch === 0) {
    throw new UserError(
      `${dir} has finished ${done} epochs; pass --epochs N with N > ${done} to train it further`,
    );
  }
}

/**
 * Trains under `plan` into `plan.out` (default runs/<timestamp>), or continues the run in
 * `resumeDir` from its checkpoint. Every finished epoch is saved, so an interrupted run keeps
 * its last finished epoch; with a validation split the top level holds the best epoch and
 * final/ the last one.
 */
export async function trainSession(
  requested: TrainConfig,
  hooks: SessionHooks = {},
  opts: SessionOptions = {},
): Promise<SessionResult> {
  const log = (m: string) => hooks.log?.(m);
  const resumeDir = opts.resume;
  const dir = resumeDir ?? requested.out ?? defaultOut();
  // One writer per run directory (node/run/lock.ts), from before the run is looked at until
  // the report is written; a second `train` into it stops here with the holder's pid.
  const lock = await lockRun(dir, { create: !resumeDir, log });
  let backbone: Backbone | undefined;
  try {
    const replacing = !resumeDir && claimOut(dir, opts.force, log);
    const backend = await selectBackend(requested.backend);
    if (requested.backbone) {
      backbone = await loadBackbone(
        {
          source: requested.backbone,
          layer: requested.backboneLayer,
          size: requested.backboneSize,
          range: requested.backboneRange,
        },
        log,
      );
    }
    return await trainWith(requested, backbone, hooks, opts, dir, backend, replacing);
  } finally {
    backbone?.dispose();
    await lock.release();
  }
}

/** A resumed transfer run must train on the very backbone its head was trained on. */
async function checkSameBackbone(dir: string, backbone: Backbone | undefined): Promise<void> {
  let recorded: RunMetadata['backbone'];
  try {
    recorded = (await readMetadata(dir)).backbone;
  } catch {
    return; // planOfRun has read it already; loading the checkpoint reports anything else.
  }
  const now = backbone?.record.sha256;
  if (recorded?.sha256 === now) return;
  throw new UserError(
    recorded
      ? `${dir} was trained on backbone ${recorded.source} (sha256 ${recorded.sha256.slice(0, 12)}), which is now ${now ? `sha256 ${now.slice(0, 12)}` : 'not given'}; it cannot be resumed`
      : `${dir} was trained without a backbone; it cannot be resumed with one`,
  );
}

/** The session after the backbone (if any) is loaded. */
async function trainWith(
  requested: TrainConfig,
  backbone: Backbone | undefined,
  hooks: SessionHooks,
  opts: SessionOptions,
  dir: string,
  backend: string,
  replacing: boolean,
): Promise<SessionResult> {
  const log = (m: string) => hooks.log?.(m);
  const resumeDir = opts.resume;
  if (resumeDir) await checkSameBackbone(resumeDir, backbone);
  const loaded = await loadPlanData(requested, hooks, backbone?.record.inputShape);
  const { located, seconds } = loaded;
  /** The images as loaded; `dataset` is what the model trains on (the features, with a backbone). */
  const images = loaded.dataset;
  let dataset = images;
  let featureCache: DataSummary['featureCache'];
  if (backbone) {
    let bar: Progress | undefined;
    const f = await featureDataset(backbone, images, loaded.source, {
      log,
      progress: (total) => (bar = hooks.progress?.(total, 'features', 'images')),
    });
    bar?.stop();
    dataset = f.dataset;
    featureCache = f.cache;
  }
  const [h, w, c] = images.shape;
  const numClasses = dataset.classNames.length;
  // A validation split only where the data has a test split of its own; otherwise --val-split
  // already chose the held-out test split (node/data/load.ts), and selecting the best epoch on
  // it would report an optimistic test accuracy.
  let trainSplit: Split = dataset.train;
  let val: Split | undefined;
  if (requested.valSplit && !loaded.heldOut) {
    ({ train: trainSplit, val } = stratifiedSplit(
      dataset.train,
      dataset.shape,
      numClasses,
      requested.valSplit,
      requested.seed,
    ));
  }
  if (requested.patience && !val) {
    throw new UserError(
      `--patience needs a validation split, but ${dataset.name} has no test split of its own, so --val-split held out its test split; give the data train/ and test/ folders (or a --test-data CSV)`,
    );
  }
  const fresh = resumeDir
    ? undefined
    : create(requested.model, {
        inputShape: dataset.shape,
        numClasses,
        seed: requested.seed,
        options: requested.modelOptions,
      });
  // A model with nothing to train (knn) memorizes the training split instead of fitting.
  const gradientFree = fresh !== undefined && fresh.trainableVariables.length === 0;
  // Batch size and epochs the user left to defaults fit the data's size (core/plan.ts).
  const { plan, note: sizing } = gradientFree
    ? { plan: { ...requested, epochs: 1, defaulted: [] }, note: undefined }
    : sizeToData(requested, trainSplit.count);
  const what = backbone
    ? `a ${plan.model} head on ${backbone.record.features} backbone features of`
    : `${plan.model} on`;
  // Threads: as asked, as recorded (a resume repeats its run's number; runs from before
  // workers trained on one), or chosen from the cores and the model's cost.
  const threads: WorkerChoice =
    gradientFree || backend !== 'wasm'
      ? { workers: 1, reason: gradientFree ? 'nothing to train' : `backend ${backend}` }
      : resumeDir && plan.workers === undefined
        ? { workers: 1, reason: 'as the run was trained' }
        : chooseWorkers(fresh!, plan.batchSize, plan.workers);
  if (plan.workers !== undefined && threads.workers !== plan.workers)
    log(`--workers ${plan.workers} ignored: ${threads.reason}`);
  plan.workers = threads.workers;
  log(
    `training ${what} ${dataset.name} (${trainSplit.count} train${val ? ` / ${val.count} val` : ''} / ${dataset.test.count} test, ${h}x${w}x${c}) ` +
      `from ${located.dir}, backend ${backend}, ${threads.workers} worker${threads.workers === 1 ? '' : 's'} (${threads.reason}), data loaded in ${seconds.toFixed(2)}s` +
      (sizing ? `; ${sizing}` : ''),
  );

  const optimizer = optimizerFor(plan);
  let model: Net;
  let resume: FitState | undefined;
  if (resumeDir) {
    const ck = await loadCheckpoint(resumeDir, plan.model);
    checkResumable(resumeDir, ck, plan, dataset);
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
    model = fresh!;
  }

  const metadata: RunMetadata = {
    format: RUN_FORMAT,
    model: plan.model,
    dataset: dataset.name,
    classNames: dataset.classNames,
    // With a backbone: the backbone's input shape, so predict and serve prepare pictures for it.
    inputShape: images.shape,
    preprocessing: preprocessingFor(loaded.source, images.train, images.shape),
    data: loaded.source,
    // The backbone as found (an absolute path or the URL), so a resume finds it from anywhere.
    config: { ...plan, ...(backbone ? { backbone: backbone.record.source } : {}), out: dir },
    ...(backbone ? { backbone: backbone.record } : {}),
    ...(sizing ? { sizedToData: sizing } : {}),
    backend,
    workers: threads.workers,
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
          ...(state.stoppedEarly !== undefined
            ? { stoppedEarly: { epoch: state.stoppedEarly, patience: plan.patience! } }
            : {}),
        }
      : { ...metadata, testAccuracy: last.test_accuracy };

  const identity = { model: plan.model, classNames: dataset.classNames, inputShape: dataset.shape };
  /** Commits one save; the first one of a --force run replaces the run that was there. */
  const commit = async (files: SaveFiles, epoch: number): Promise<void> => {
    await commitSave(dir, files, { epoch, replace: replacing });
    if (replacing) {
      // The old run's report describes another model.
      for (const name of REPORT_FILES) await rm(path.join(dir, name), { force: true });
      replacing = false;
    }
  };

  /**
   * One epoch's save, as one unit (node/run/save.ts): the model at the top (with a validation
   * split only when the epoch is the best so far, and the last epoch in final/), the metrics,
   * the checkpoint and the metadata.
   */
  const saveEpoch = async (m: EpochMetrics, s: FitState, best: boolean): Promise<void> => {
    const files: SaveFiles = new Map();
    const add = (more: SaveFiles) => more.forEach((data, rel) => files.set(rel, data));
    const current = await modelFiles(model);
    // A memorizing model has nothing to resume: it gets no checkpoint.
    const checkpoint = gradientFree
      ? new Map()
      : await checkpointFiles(model, optimizer, s, identity, current);
    if (!val || best) add(current);
    if (val) {
      // final/ is a complete run directory too: evaluate and predict accept it.
      const last = new Map(current);
      last.set(METADATA_FILE, metadataText({ ...metadata, testAccuracy: m.test_accuracy }));
      add(asRunFolder(FINAL_DIR, last, s.epoch));
    }
    files.set(METRICS_FILE, metricsText(s.history));
    add(checkpoint);
    files.set(METADATA_FILE, metadataText(topMetadata(s, m)));
    await commit(files, s.epoch);
  };

  let bar: Progress | undefined;
  let state: FitState | undefined = resume;
  let history: EpochMetrics[];
  const pool =
    threads.workers > 1
      ? await startPool(model, {
          workers: threads.workers,
          backend,
          plan,
          shape: dataset.shape,
          batchSize: plan.batchSize,
        })
      : undefined;
  try {
    if (gradientFree) {
      ({ history, state } = memorizeAndEvaluate(model, trainSplit, dataset.test, val, dataset.shape));
      hooks.onEpoch?.(history[0], plan.epochs);
      await saveEpoch(history[0], state, val !== undefined);
    } else {
      history = await fit(model, optimizer, trainSplit, dataset.test, {
        ...fitOptionsFor(plan, dataset.shape),
        val,
        resume,
        runner: pool,
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
          await commit(await checkpointFiles(model, optimizer, s, identity), s.epoch);
        },
        onEpoch: async (m, s, best) => {
          state = s;
          hooks.onEpoch?.(m, plan.epochs);
          await saveEpoch(m, s, best);
        },
      });
    }
  } catch (err) {
    if (err instanceof DivergedError) {
      const kept = state ? `${dir} keeps its last good save (epoch ${state.epoch})` : 'nothing was saved';
      throw new UserError(`training stopped: ${err.message}; ${kept}; try a lower --lr (now ${plan.lr})`);
    }
    throw err;
  } finally {
    optimizer.dispose();
    await pool?.close();
  }

  const data: DataSummary = {
    source: loaded.source.kind,
    name: dataset.name,
    classes: dataset.classNames,
    shape: images.shape,
    train: trainSplit.count,
    test: dataset.test.count,
    skipped: loaded.skipped.map((s) => s.path),
    cache: loaded.cache ?? null,
    ...(featureCache ? { featureCache } : {}),
    seconds,
  };
  const result = { history, dir, backend, workers: threads.workers, data };
  if (
    hooks.shouldStop?.() &&
    state?.stoppedEarly === undefined &&
    (state?.batch !== 0 || history.length < plan.epochs)
  ) {
    log(`checkpoint saved in ${path.join(dir, CHECKPOINT_DIR)}; continue with: imgclf train --resume ${dir}`);
    return { ...result, interrupted: true };
  }
  const last = history.at(-1);
  if (!state || !last)
    throw new UserError(`${dir}: nothing left to train (the run has ${plan.epochs} epochs)`);
  const top = topMetadata(state, last);
  if (state.stoppedEarly !== undefined) {
    log(
      `early stop after epoch ${state.stoppedEarly}: no better validation accuracy for ${plan.patience} epochs`,
    );
  }
  if (val) {
    const best = history.find((m) => m.epoch === state!.bestEpoch);
    log(
      `best epoch by validation accuracy: ${state.bestEpoch} (val ${best?.val_accuracy?.toFixed(4)}, test ${state.bestTestAccuracy?.toFixed(4)}), kept in ${dir}; last epoch in ${path.join(dir, FINAL_DIR)}`,
    );
  }
  log(`saved ${dir}`);
  // Pictures are drawn from the finished run, never inside the loop. With a validation split
  // the run's model is the best epoch's, so the report evaluates the model saved at the top.
  // With a backbone the report runs backbone and head on the test pictures, as predict does.
  const reported = val ? (await loadRun(dir)).model : backbone ? backboneNet(backbone, model, false) : model;
  await writeReport({
    dir,
    model: reported,
    test: images.test,
    metadata: top,
    history,
    lang: hooks.lang ?? 'en',
    log,
  });
  if (val) reported.dispose();
  log(`report ${path.join(dir, 'report.html')}`);
  return {
    ...result,
    interrupted: false,
    bestEpoch: val ? state.bestEpoch : undefined,
    testAccuracy: top.testAccuracy,
  };
}

/** Training examples a memorizing model is scored on (evenly spaced): its train metrics. */
const MEMORY_SAMPLE = 2000;

/**
 * The "training" of a model with no trainable variables: it memorizes the training split, then
 * is evaluated once on (a sample of) it, the test split and the validation split; that is its
 * one epoch.
 */
function memorizeAndEvaluate(
  model: Net,
  train: Split,
  test: Split,
  val: Split | undefined,
  shape: ImageShape,
): { history: EpochMetrics[]; state: FitState } {
  const start = performance.now();
  memorize(model, pixelsAsFloat(train.images), train.labels, train.count);
  const seconds = (performance.now() - start) / 1000;
  const every = Math.ceil(train.count / MEMORY_SAMPLE);
  const sample =
    every > 1
      ? subset(
          train,
          shape,
          Array.from({ length: Math.ceil(train.count / every) }, (_, i) => i * every),
        )
      : train;
  const onTrain = evaluate(model, sample, { shape });
  const ev = evaluate(model, test, { shape });
  const v = val ? evaluate(model, val, { shape }) : undefined;
  const m: EpochMetrics = {
    epoch: 1,
    train_loss: onTrain.loss,
    train_accuracy: onTrain.accuracy,
    test_accuracy: ev.accuracy,
    test_loss: ev.loss,
    ...(v ? { val_accuracy: v.accuracy, val_loss: v.loss } : {}),
    seconds,
    eval_seconds: onTrain.seconds + ev.seconds + (v?.seconds ?? 0),
  };
  const state: FitState = {
    epoch: 1,
    batch: 0,
    step: 0,
    epochRng: 0,
    augmentRng: 0,
    sums: { loss: 0, correct: 0, seen: 0, seconds: 0 },
    history: [m],
    bestValAccuracy: v?.accuracy ?? -1,
    bestEpoch: v ? 1 : 0,
    ...(v ? { bestTestAccuracy: ev.accuracy } : {}),
  };
  return { history: [m], state };
}

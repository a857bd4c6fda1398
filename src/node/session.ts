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
import path from 'node:path';
import { selectBackend } from '../backend/index.js';
import { chooseWorkers, type WorkerChoice } from '../backend/workers/choose.js';
import { startPool } from '../backend/workers/pool.js';
import { type Dataset, type ImageShape, type Split } from '../core/data/dataset.js';
import type { DataSource as Source } from '../core/data/source.js';
import { stratifiedSplit } from '../core/data/split.js';
import { UserError } from '../core/errors.js';
import { create, type Net } from '../core/models/index.js';
import { dataSourceOf, resolveConfig, sizeToData, type TrainConfig } from '../core/plan.js';
import { RESUMABLE, type ResumableSetting } from '../core/settings.js';
import {
  DivergedError,
  type EpochMetrics,
  type FitState,
  type KeptEpoch,
  keptEpoch,
} from '../core/train/loop.js';
import { memorizes } from '../core/train/memorize.js';
import { type RunCallback, type RunOptions, type RunResult, trainRun } from '../core/train/run.js';
import { type RunRecord, runMetadata } from '../core/run-format.js';
import { type Backbone, backboneNet, type BackboneRecord, loadBackbone } from './backbone/backbone.js';
import { featureDataset } from './backbone/features.js';
import { type DataSource, type LoadedDataset, loadDataset, sourceEntry } from './data/load.js';
import { writeReport } from './report/report.js';
import {
  asRunFolder,
  CHECKPOINT_DIR,
  checkpointFiles,
  type CheckpointIdentity,
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
  type RunMetadata,
  saveRunFiles,
} from './run/rundir.js';
import { lockRun } from './run/lock.js';
import { holdsRun, type SaveFiles } from './run/save.js';

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
  return input ? sourceEntry(source.kind).atInput(source, input) : source;
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
  if (loaded.summary) hooks.log?.(loaded.summary);
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
          engine: requested.backboneEngine,
          offline: requested.offline,
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

/** The data a session trains on, loaded and split. */
interface SessionData {
  loaded: LoadedDataset;
  /** The images as loaded; `dataset` is what the model trains on (the features, with a backbone). */
  images: Dataset;
  dataset: Dataset;
  featureCache?: DataSummary['featureCache'];
  train: Split;
  val?: Split;
}

/**
 * Loads the plan's data, turns it into backbone features when there is a backbone, and splits
 * off the validation data.
 */
async function sessionData(
  requested: TrainConfig,
  backbone: Backbone | undefined,
  hooks: SessionHooks,
): Promise<SessionData> {
  const loaded = await loadPlanData(requested, hooks, backbone?.record.inputShape);
  const images = loaded.dataset;
  let dataset = images;
  let featureCache: DataSummary['featureCache'];
  if (backbone) {
    let bar: Progress | undefined;
    const f = await featureDataset(backbone, images, loaded.source, {
      log: hooks.log,
      progress: (total) => (bar = hooks.progress?.(total, 'features', 'images')),
    });
    bar?.stop();
    dataset = f.dataset;
    featureCache = f.cache;
  }
  // A validation split only where the data has a test split of its own; otherwise --val-split
  // already chose the held-out test split (node/data/load.ts), and selecting the best epoch on
  // it would report an optimistic test accuracy.
  if (requested.valSplit && !loaded.heldOut) {
    const { train, val } = stratifiedSplit(
      dataset.train,
      dataset.shape,
      dataset.classNames.length,
      requested.valSplit,
      requested.seed,
    );
    return { loaded, images, dataset, featureCache, train, val };
  }
  if (requested.patience) {
    throw new UserError(
      `--patience needs a validation split, but ${dataset.name} has no test split of its own, so --val-split held out its test split; give the data train/ and test/ folders (or a --test-data CSV)`,
    );
  }
  return { loaded, images, dataset, featureCache, train: dataset.train };
}

/** The checkpoint of `dir`, checked against the plan and the data, for trainRun's `resume`. */
async function resumeFrom(
  dir: string,
  plan: TrainConfig,
  dataset: Dataset,
  log: (m: string) => void,
): Promise<{ model: Net; resume: NonNullable<RunOptions['resume']> }> {
  const ck = await loadCheckpoint(dir, plan.model);
  checkResumable(dir, ck, plan, dataset);
  const f = ck.fit;
  log(`resuming ${dir} after epoch ${f.epoch}${f.batch ? ` and ${f.batch} batches of the next` : ''}`);
  return {
    model: ck.net,
    resume: { state: f, optimizer: { name: ck.optimizerName, state: ck.optimizerState } },
  };
}

/** A progress bar per epoch, from the shell's `progress` hook. */
function progressBars(hooks: SessionHooks, epochs: number): RunCallback {
  let bar: Progress | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    onBatch: (epoch, done, total) => {
      bar ??= hooks.progress?.(total, `epoch ${epoch}/${epochs}`);
      const pending = bar?.update(done);
      if (done === total) stop();
      return pending;
    },
    onStop: stop,
  };
}

interface SaverSetup {
  dir: string;
  record: RunRecord<BackboneRecord>;
  plan: TrainConfig;
  /** With a validation split the top level holds the best epoch and final/ the last. */
  hasVal: boolean;
  /** The first save replaces the run that `dir` holds (train --force). */
  replacing: boolean;
  identity: CheckpointIdentity;
  /** The epoch the run directory holds already (a resume's checkpoint), if any. */
  saved?: number;
}

/**
 * Saves the run after every epoch, as one unit (node/run/save.ts): the model at the top (with
 * a validation split only when the epoch is the best so far, and the last epoch in final/), the
 * metrics, the checkpoint and the metadata; on an interrupt, a checkpoint to resume from.
 * `saved()` is the last epoch saved.
 */
function runSaver(setup: SaverSetup): RunCallback & { saved(): number | undefined } {
  const { dir, record, plan, hasVal, identity } = setup;
  let replacing = setup.replacing;
  let saved = setup.saved;
  const commit = async (files: SaveFiles, epoch: number): Promise<void> => {
    await saveRunFiles(dir, files, { epoch, replace: replacing });
    replacing = false;
    saved = epoch;
  };
  return {
    saved: () => saved,
    onEpoch: async (m, s, best, run) => {
      const files: SaveFiles = new Map();
      const add = (more: SaveFiles) => more.forEach((data, rel) => files.set(rel, data));
      const current = await modelFiles(run.model);
      if (!hasVal || best) add(current);
      if (hasVal) {
        // final/ is a complete run directory too: evaluate and predict accept it.
        const last = new Map(current);
        last.set(METADATA_FILE, metadataText(runMetadata(record, { kept: lastEpoch(m) })));
        add(asRunFolder(FINAL_DIR, last, s.epoch));
      }
      files.set(METRICS_FILE, metricsText(s.history));
      // A memorizing model has nothing to resume: it gets no checkpoint.
      if (run.optimizer) add(await checkpointFiles(run.model, run.optimizer, s, identity, current));
      files.set(METADATA_FILE, metadataText(topMetadata(record, plan, s, m)));
      await commit(files, s.epoch);
    },
    onStop: async (s, run) => {
      if (run.optimizer) await commit(await checkpointFiles(run.model, run.optimizer, s, identity), s.epoch);
    },
  };
}

/** The metadata of the model at the top level: the kept epoch's (keptEpoch). */
function topMetadata(
  record: RunRecord<BackboneRecord>,
  plan: TrainConfig,
  state: FitState,
  last: EpochMetrics,
): RunMetadata {
  return runMetadata(record, {
    kept: keptEpoch(state),
    finalTestAccuracy: last.test_accuracy,
    stoppedEarly:
      state.stoppedEarly !== undefined ? { epoch: state.stoppedEarly, patience: plan.patience! } : undefined,
  });
}

/** An epoch as the one a run keeps (final/ keeps the last one). */
const lastEpoch = (m: EpochMetrics): KeptEpoch => ({
  epoch: m.epoch,
  testAccuracy: m.test_accuracy,
  byValidation: false,
});

/**
 * Training threads: as asked, as recorded (a resume repeats its run's number; runs from before
 * workers trained on one), or chosen from the cores and the model's cost.
 */
function chooseThreads(
  plan: TrainConfig,
  fresh: Net | undefined,
  backend: string,
  resuming: boolean,
): WorkerChoice {
  if (fresh && memorizes(fresh)) return { workers: 1, reason: 'nothing to train' };
  if (backend !== 'wasm') return { workers: 1, reason: `backend ${backend}` };
  if (resuming && plan.workers === undefined) return { workers: 1, reason: 'as the run was trained' };
  return chooseWorkers(fresh!, plan.batchSize, plan.workers);
}

/** What `train --json` reports about the data. */
function dataSummary(data: SessionData): DataSummary {
  const { loaded, images, dataset } = data;
  return {
    source: loaded.source.kind,
    name: dataset.name,
    classes: dataset.classNames,
    shape: images.shape,
    train: data.train.count,
    test: dataset.test.count,
    skipped: loaded.skipped.map((s) => s.path),
    cache: loaded.cache ?? null,
    ...(data.featureCache ? { featureCache: data.featureCache } : {}),
    seconds: loaded.seconds,
  };
}

/**
 * After the last epoch: says which epoch the run keeps, and draws the report from the finished
 * run, never inside the loop. With a validation split the run's model is the best epoch's, so
 * the report evaluates the model saved at the top; with a backbone it runs backbone and head
 * on the test pictures, as predict does. Returns the top level's metadata.
 */
async function finishRun(a: {
  dir: string;
  run: RunResult;
  record: RunRecord<BackboneRecord>;
  plan: TrainConfig;
  data: SessionData;
  model: Net;
  backbone?: Backbone;
  hooks: SessionHooks;
}): Promise<RunMetadata> {
  const { dir, run, plan, data, hooks } = a;
  const log = (m: string) => hooks.log?.(m);
  const { history, state } = run;
  const last = history.at(-1);
  if (!state || !last)
    throw new UserError(`${dir}: nothing left to train (the run has ${plan.epochs} epochs)`);
  const top = topMetadata(a.record, plan, state, last);
  if (state.stoppedEarly !== undefined) {
    log(
      `early stop after epoch ${state.stoppedEarly}: no better validation accuracy for ${plan.patience} epochs`,
    );
  }
  if (data.val) {
    const best = history.find((m) => m.epoch === run.kept.epoch);
    log(
      `best epoch by validation accuracy: ${run.kept.epoch} (val ${best?.val_accuracy?.toFixed(4)}, test ${run.kept.testAccuracy?.toFixed(4)}), kept in ${dir}; last epoch in ${path.join(dir, FINAL_DIR)}`,
    );
  }
  log(`saved ${dir}`);
  const reported = data.val
    ? (await loadRun(dir)).model
    : a.backbone
      ? backboneNet(a.backbone, a.model, false)
      : a.model;
  await writeReport({
    dir,
    model: reported,
    test: data.images.test,
    metadata: top,
    history,
    lang: hooks.lang ?? 'en',
    log,
  });
  if (data.val) reported.dispose();
  log(`report ${path.join(dir, 'report.html')}`);
  return top;
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
  const data = await sessionData(requested, backbone, hooks);
  const { loaded, images, dataset, val } = data;
  const fresh = resumeDir
    ? undefined
    : create(requested.model, {
        inputShape: dataset.shape,
        numClasses: dataset.classNames.length,
        seed: requested.seed,
        options: requested.modelOptions,
      });
  // A model with nothing to train (knn) memorizes the training split instead of fitting.
  const gradientFree = fresh !== undefined && memorizes(fresh);
  // Batch size and epochs the user left to defaults fit the data's size (core/plan.ts).
  const { plan, note: sizing } = gradientFree
    ? { plan: { ...requested, epochs: 1, defaulted: [] }, note: undefined }
    : sizeToData(requested, data.train.count);
  const threads = chooseThreads(plan, fresh, backend, resumeDir !== undefined);
  if (plan.workers !== undefined && threads.workers !== plan.workers)
    log(`--workers ${plan.workers} ignored: ${threads.reason}`);
  plan.workers = threads.workers;
  const what = backbone
    ? `a ${plan.model} head on ${backbone.record.features} backbone features of`
    : `${plan.model} on`;
  const [h, w, c] = images.shape;
  log(
    `training ${what} ${dataset.name} (${data.train.count} train${val ? ` / ${val.count} val` : ''} / ${dataset.test.count} test, ${h}x${w}x${c}) ` +
      `from ${loaded.located.dir}, backend ${backend}, ${threads.workers} worker${threads.workers === 1 ? '' : 's'} (${threads.reason}), data loaded in ${loaded.seconds.toFixed(2)}s` +
      (sizing ? `; ${sizing}` : ''),
  );
  const { model, resume } = resumeDir ? await resumeFrom(resumeDir, plan, dataset, log) : { model: fresh! };

  const record = {
    model: plan.model,
    dataset: dataset.name,
    classNames: dataset.classNames,
    // With a backbone: the backbone's input shape, so predict and serve prepare pictures for it.
    inputShape: images.shape,
    preprocessing: sourceEntry(loaded.source.kind).preprocessing(loaded.source, images.train, images.shape),
    data: loaded.source,
    // The backbone as found (an absolute path or the URL), so a resume finds it from anywhere.
    config: { ...plan, ...(backbone ? { backbone: backbone.record.source } : {}), out: dir },
    ...(backbone ? { backbone: backbone.record } : {}),
    ...(sizing ? { sizedToData: sizing } : {}),
    backend,
    workers: threads.workers,
    created: new Date().toISOString(),
  };
  const identity = { model: plan.model, classNames: dataset.classNames, inputShape: dataset.shape };
  const saver = runSaver({
    dir,
    record,
    plan,
    hasVal: val !== undefined,
    replacing,
    identity,
    saved: resume?.state.epoch,
  });
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
  let run: RunResult;
  try {
    run = await trainRun(
      model,
      plan,
      { train: data.train, test: dataset.test, val, shape: dataset.shape },
      [
        { shouldStop: hooks.shouldStop },
        progressBars(hooks, plan.epochs),
        { onEpoch: (m) => hooks.onEpoch?.(m, plan.epochs) },
        saver,
      ],
      { resume, runner: pool },
    );
  } catch (err) {
    if (err instanceof DivergedError) {
      const epoch = saver.saved();
      const kept =
        epoch !== undefined ? `${dir} keeps its last good save (epoch ${epoch})` : 'nothing was saved';
      throw new UserError(`training stopped: ${err.message}; ${kept}; try a lower --lr (now ${plan.lr})`);
    }
    throw err;
  } finally {
    await pool?.close();
  }

  const result = { history: run.history, dir, backend, workers: threads.workers, data: dataSummary(data) };
  if (run.interrupted) {
    log(`checkpoint saved in ${path.join(dir, CHECKPOINT_DIR)}; continue with: imgclf train --resume ${dir}`);
    return { ...result, interrupted: true };
  }
  const top = await finishRun({ dir, run, record, plan, data, model, backbone, hooks });
  return {
    ...result,
    interrupted: false,
    bestEpoch: val ? run.kept.epoch : undefined,
    testAccuracy: top.testAccuracy,
  };
}

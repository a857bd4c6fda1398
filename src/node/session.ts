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
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { selectBackend } from '../backend/index.js';
import { chooseWorkers, type WorkerChoice } from '../backend/workers/choose.js';
import { startPool } from '../backend/workers/pool.js';
import { type Dataset, type ImageShape, type Split } from '../core/data/dataset.js';
import type { DataSource as Source } from '../core/data/source.js';
import { stratifiedSplit } from '../core/data/split.js';
import { UserError } from '../core/errors.js';
import { create, type Net } from '../core/models/index.js';
import {
  dataSourceOf,
  fineTuneLayers,
  fineTuneRates,
  resolveConfig,
  sizeToData,
  type TrainConfig,
} from '../core/plan.js';
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
import { type FineTuneRecord, type RunRecord, runMetadata } from '../core/run-format.js';
import { type Backbone, backboneNet, type BackboneRecord, loadBackbone } from './backbone/backbone.js';
import { featureDataset } from './backbone/features.js';
import {
  type FineTuneChoice,
  fineTuneChoice,
  fineTunedNet,
  fineTuneModel,
  headLayerCount,
  layersModelOf,
} from './backbone/fine-tune.js';
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
  /** Fine-tuning (--fine-tune): what the second phase unfroze, its epochs and rates. */
  fineTune?: FineTuneSummary;
}

/**
 * A new run's directory when no --out is given: `runs/<UTC time to the second>`, or with -2, -3,
 * ... when a run started in the same second took that name. The name is claimed by creating the
 * folder, which only one process can do, so two runs started at once never share one.
 */
export function defaultOut(root = 'runs'): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
  try {
    mkdirSync(root, { recursive: true });
  } catch {
    return path.join(root, stamp); // the session's own checks report what is wrong with it
  }
  for (let i = 1; ; i++) {
    const dir = path.join(root, i === 1 ? stamp : `${stamp}-${i}`);
    try {
      mkdirSync(dir);
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return dir;
    }
  }
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

/**
 * A checkpoint must fit the run it resumes: the same model, classes and input shape.
 * `finished` is what to say when its last epoch is done (null: a finished, or early-stopped,
 * first phase of fine-tuning goes on to the second).
 */
function checkResumable(
  dir: string,
  ck: LoadedCheckpoint,
  plan: TrainConfig,
  dataset: Dataset,
  finished: { epochs: number; say: string } | null = {
    epochs: plan.epochs,
    say: `pass --epochs N with N > ${ck.fit.epoch} to train it further`,
  },
): void {
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
  // A fine-tuning run's first phase may stop early: the second goes on from its best head.
  if (ck.fit.stoppedEarly !== undefined && finished) {
    throw new UserError(
      `${dir} stopped early after epoch ${ck.fit.stoppedEarly} (no better validation accuracy for ${plan.patience} epochs); its best epoch ${ck.fit.bestEpoch} is the run's model`,
    );
  }
  if (finished && done >= finished.epochs && ck.fit.batch === 0)
    throw new UserError(`${dir} has finished ${done} epochs; ${finished.say}`);
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
    // A backbone that cannot be fine-tuned, or a wrong layer count, fails before the head trains.
    const layers = fineTuneLayers(requested);
    const choice =
      backbone && layers !== undefined
        ? await fineTuneChoice(backbone, layers, requested.fineTuneBn ?? false)
        : undefined;
    return await trainWith(requested, backbone, hooks, opts, dir, backend, replacing, choice);
  } finally {
    backbone?.dispose();
    await lock.release();
  }
}

/** A resumed transfer run must train on the very backbone its head was trained on. */
async function checkSameBackbone(dir: string, backbone: Backbone | undefined): Promise<void> {
  let recorded: RunMetadata['backbone'];
  try {
    const meta = await readMetadata(dir);
    recorded = meta.backbone ?? meta.fineTuned?.backbone;
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
  /** Fine-tuning: the images of `train` and `val` (the same rows), for the second phase. */
  imageTrain?: Split;
  imageVal?: Split;
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
  // Fine-tuning trains on the images too: the same split of them (it depends on the labels
  // and the seed only).
  const fineTunes = requested.fineTune !== undefined && dataset !== images;
  if (requested.valSplit && !loaded.heldOut) {
    const split = (d: Dataset) =>
      stratifiedSplit(d.train, d.shape, d.classNames.length, requested.valSplit!, requested.seed);
    const { train, val } = split(dataset);
    const both = fineTunes ? split(images) : undefined;
    return {
      loaded,
      images,
      dataset,
      featureCache,
      train,
      val,
      ...(both ? { imageTrain: both.train, imageVal: both.val } : {}),
    };
  }
  if (requested.patience) {
    throw new UserError(
      `--patience needs a validation split, but ${dataset.name} has no test split of its own, so --val-split held out its test split; give the data train/ and test/ folders (or a --test-data CSV)`,
    );
  }
  return {
    loaded,
    images,
    dataset,
    featureCache,
    train: dataset.train,
    ...(fineTunes ? { imageTrain: images.train } : {}),
  };
}

/** Where a resumed run stands. */
interface Resumed {
  model: Net;
  resume: NonNullable<RunOptions['resume']>;
  /**
   * Fine-tuning: the checkpoint is of the second phase (the whole model, on images), whose
   * first phase trained the head for `headEpochs`.
   */
  fineTuning?: { headEpochs: number };
}

/**
 * The checkpoint of `dir`, checked against the plan and the data, for trainRun's `resume`. A
 * fine-tuning run's checkpoint is of its first phase (the head, on features: `dataset`) or of
 * its second (backbone and head, on the images: `images`).
 */
async function resumeFrom(
  dir: string,
  plan: TrainConfig,
  dataset: Dataset,
  images: Dataset,
  log: (m: string) => void,
): Promise<Resumed> {
  const ck = await loadCheckpoint(dir, plan.model);
  const f = ck.fit;
  const fineTunes = plan.fineTune !== undefined;
  const secondPhase = fineTunes && ck.identity.inputShape?.join('x') === images.shape.join('x');
  let fineTuning: Resumed['fineTuning'];
  if (secondPhase) {
    const headEpochs = f.history.filter((m) => m.phase === 'head').length;
    const tuned = f.epoch - headEpochs;
    checkResumable(dir, ck, plan, images, {
      epochs: headEpochs + plan.fineTuneEpochs!,
      say: `its last ${tuned} fine-tuned its backbone; pass --fine-tune-epochs N with N > ${tuned} to fine-tune it further`,
    });
    if (plan.epochs !== headEpochs)
      log(
        `--epochs ${plan.epochs} ignored: it counts the head's epochs, and ${dir} is past them (${headEpochs})`,
      );
    fineTuning = { headEpochs };
  } else {
    if (fineTunes) checkResumable(dir, ck, plan, dataset, null);
    else checkResumable(dir, ck, plan, dataset);
  }
  log(
    `resuming ${dir} after epoch ${f.epoch}${f.batch ? ` and ${f.batch} batches of the next` : ''}` +
      (secondPhase ? ' (fine-tuning)' : ''),
  );
  return {
    model: ck.net,
    resume: { state: f, optimizer: { name: ck.optimizerName, state: ck.optimizerState } },
    ...(fineTuning ? { fineTuning } : {}),
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

/** What `train --json` and the log say of a fine-tuning run's second phase: the run's record of it, less the backbone. */
export type FineTuneSummary = Omit<FineTuneRecord, 'backbone'>;

/** The fine-tuning line of the plan, as the log prints it after the training line. */
function fineTuneLine(f: FineTuneSummary, head: string): string {
  const n = f.unfrozen.length;
  const count = (k: number, noun: string) => `${k} ${noun}${k === 1 ? '' : 's'}`;
  // Rates as the eye reads them: 0.00015, not 0.00015000000000000001.
  const lr = (x: number) => String(+x.toPrecision(4));
  const which = f.layers === 'all' ? `all ${n} weighted layers` : `the last ${count(n, 'weighted layer')}`;
  const rates =
    n === 1
      ? `the backbone layer at lr ${lr(f.lr.last)}`
      : `the backbone layers at lr ${lr(f.lr.earliest)} (earliest) to ${lr(f.lr.last)} (last)`;
  return (
    `fine-tune: after ${count(f.headEpochs, 'epoch')} of the ${head} head on features, ${which} of the backbone (${f.unfrozen.join(', ')}) ` +
    `train with it on the images for ${count(f.epochs, 'epoch')}: the head at lr ${lr(f.lr.head)}, ${rates}; ` +
    `batch-norm statistics ${f.bn ? 'train (--fine-tune-bn)' : 'frozen'}`
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
  choice?: FineTuneChoice,
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
  const resumed = resumeDir ? await resumeFrom(resumeDir, plan, dataset, images, log) : undefined;
  // A resume in the second phase of fine-tuning keeps the head's epochs it had.
  if (resumed?.fineTuning) plan.epochs = resumed.fineTuning.headEpochs;
  const inSecondPhase = resumed?.fineTuning !== undefined;
  const threads = inSecondPhase
    ? { workers: 1, reason: 'fine-tuning trains on this thread' }
    : chooseThreads(plan, fresh, backend, resumeDir !== undefined);
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
  const fineTune: FineTuneSummary | undefined =
    choice && plan.fineTune !== undefined
      ? {
          layers: fineTuneLayers(plan)!,
          unfrozen: choice.unfrozen,
          headEpochs: plan.epochs,
          epochs: plan.fineTuneEpochs!,
          lr: fineTuneRates(plan),
          bn: plan.fineTuneBn ?? false,
        }
      : undefined;
  if (fineTune) log(fineTuneLine(fineTune, plan.model));
  // Every epoch line counts the run's epochs: with fine-tuning, both phases'.
  const epochs = plan.epochs + (fineTune?.epochs ?? 0);

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
  const shown = [
    { shouldStop: hooks.shouldStop },
    progressBars(hooks, epochs),
    { onEpoch: (m: EpochMetrics) => hooks.onEpoch?.(m, epochs) },
  ];
  const result = { dir, backend, workers: threads.workers, data: dataSummary(data) };

  let model: Net;
  let run: RunResult;
  if (inSecondPhase) {
    model = resumed!.model;
    run = { history: [], kept: keptEpoch({ history: [], bestEpoch: 0 }), interrupted: false };
  } else {
    model = resumed?.model ?? fresh!;
    const resume = resumed?.resume;
    const headDone =
      fineTune !== undefined &&
      resume !== undefined &&
      (resume.state.epoch >= plan.epochs || resume.state.stoppedEarly !== undefined);
    if (headDone) {
      // The first phase finished before the run stopped: the second starts from its head.
      const state = resume.state;
      run = { history: state.history, state, kept: keptEpoch(state), interrupted: false };
      resume.optimizer.state.slots.forEach((t) => t.dispose());
    } else {
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
      try {
        run = await trainRun(
          model,
          plan,
          { train: data.train, test: dataset.test, val, shape: dataset.shape },
          [...shown, saver],
          {
            resume,
            runner: pool,
            ...(fineTune ? { phase: { name: 'head', start: 0, before: [] } } : {}),
          },
        );
      } catch (err) {
        throw divergedAsUserError(err, dir, saver.saved(), plan.lr);
      } finally {
        await pool?.close();
      }
      replacing = false;
      if (run.interrupted) return interruptedRun(run, result, dir, log);
    }
  }

  let reported: { run: RunResult; record: RunRecord<BackboneRecord>; plan: TrainConfig; model: Net } = {
    run,
    record,
    plan,
    model,
  };
  if (fineTune && backbone) {
    // Early stopping may have ended the first phase before its last epoch.
    if (!inSecondPhase) fineTune.headEpochs = run.history.length;
    const tuned = await fineTunePhase({
      dir,
      plan,
      backbone,
      head: model,
      resumed: inSecondPhase ? resumed : undefined,
      summary: fineTune,
      record,
      data,
      callbacks: shown,
      before: run.history,
      replacing,
    });
    if (tuned.run.interrupted) return interruptedRun(tuned.run, result, dir, log);
    reported = tuned;
  }
  const top = await finishRun({
    dir,
    run: reported.run,
    record: reported.record,
    plan: reported.plan,
    data,
    model: reported.model,
    backbone: fineTune ? undefined : backbone,
    hooks,
  });
  return {
    ...result,
    history: reported.run.history,
    interrupted: false,
    bestEpoch: val ? reported.run.kept.epoch : undefined,
    testAccuracy: top.testAccuracy,
    ...(fineTune ? { fineTune } : {}),
  };
}

/** A diverged training as the one line the user sees; anything else as it is. */
function divergedAsUserError(err: unknown, dir: string, epoch: number | undefined, lr: number): unknown {
  if (!(err instanceof DivergedError)) return err;
  const kept = epoch !== undefined ? `${dir} keeps its last good save (epoch ${epoch})` : 'nothing was saved';
  return new UserError(`training stopped: ${err.message}; ${kept}; try a lower --lr (now ${lr})`);
}

/** The result of a run an interrupt ended, with the line that says how to continue it. */
function interruptedRun(
  run: RunResult,
  result: Omit<SessionResult, 'history' | 'interrupted'>,
  dir: string,
  log: (m: string) => void,
): SessionResult {
  log(`checkpoint saved in ${path.join(dir, CHECKPOINT_DIR)}; continue with: imgclf train --resume ${dir}`);
  return { ...result, history: run.history, interrupted: true };
}

/**
 * The second phase of fine-tuning: backbone and head as one model (node/backbone/fine-tune.ts),
 * the chosen layers unfrozen, trained on the images through trainRun at the discriminative
 * rates, continuing the run's epochs and saves. The run directory then holds the whole model;
 * its metadata says where it came from (`fineTuned`) instead of naming a backbone to load.
 */
async function fineTunePhase(a: {
  dir: string;
  plan: TrainConfig;
  backbone: Backbone;
  /** The head the first phase trained (disposed here once copied into the model). */
  head: Net;
  /** A checkpoint of this phase to continue from. */
  resumed?: Resumed;
  summary: FineTuneSummary;
  record: RunRecord<BackboneRecord>;
  data: SessionData;
  callbacks: RunCallback[];
  before: EpochMetrics[];
  replacing: boolean;
}): Promise<{ run: RunResult; record: RunRecord<BackboneRecord>; plan: TrainConfig; model: Net }> {
  const { dir, plan, backbone, summary, data } = a;
  let layers: LayersModel;
  let headLayers: number;
  if (a.resumed) {
    layers = await layersModelOf(a.head);
    // The head's layers are the model's last ones: as many as a fresh head of the plan has.
    const probe = create(plan.model, {
      inputShape: data.dataset.shape,
      numClasses: data.dataset.classNames.length,
      seed: plan.seed,
      options: plan.modelOptions,
    });
    headLayers = await headLayerCount(probe);
    probe.dispose();
  } else {
    ({ model: layers, headLayers } = await fineTuneModel(backbone, a.head, summary.layers));
  }
  a.head.dispose();
  const tuned = fineTunedNet(plan.model, layers, summary.bn, headLayers);
  // The loop's plan for this phase: the head's rate (the factors scale it per layer), the
  // epochs counted from the run's first, steps on this thread and unfused (fused-step.ts only
  // handles softmax on pixels, and one rate).
  const phasePlan: TrainConfig = {
    ...plan,
    epochs: summary.headEpochs + summary.epochs,
    lr: summary.lr.head,
    fused: false,
    workers: 1,
  };
  const record: RunRecord<BackboneRecord> = {
    ...a.record,
    backbone: undefined,
    fineTuned: {
      backbone: backbone.record,
      layers: summary.layers,
      unfrozen: tuned.unfrozen,
      headEpochs: summary.headEpochs,
      epochs: summary.epochs,
      lr: summary.lr,
      bn: summary.bn,
    },
  };
  const { images } = data;
  const saver = runSaver({
    dir,
    record,
    plan,
    hasVal: data.val !== undefined,
    replacing: a.replacing,
    identity: { model: plan.model, classNames: images.classNames, inputShape: images.shape },
    saved: a.resumed?.resume.state.epoch ?? a.before.at(-1)?.epoch,
  });
  let run: RunResult;
  try {
    run = await trainRun(
      tuned.net,
      phasePlan,
      { train: data.imageTrain!, test: images.test, val: data.imageVal, shape: images.shape },
      [...a.callbacks, saver],
      {
        resume: a.resumed?.resume,
        phase: { name: 'fine-tune', start: summary.headEpochs, before: a.before },
        rateFactors: tuned.rateFactors,
      },
    );
  } catch (err) {
    throw divergedAsUserError(err, dir, saver.saved(), phasePlan.lr);
  }
  return { run, record, plan: phasePlan, model: tuned.net };
}

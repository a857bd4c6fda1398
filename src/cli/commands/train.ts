/** `imgclf train`: train a registered model and write a run directory. */
import type { Command } from 'commander';
import type { BackendName } from '../../core/backends.js';
import type { Lang } from '../../core/data/classes.js';
import { UserError } from '../../core/errors.js';
import { BACKBONE_RANGES, HEADS, modelDefaults, resolveConfig, type TrainConfig } from '../../core/plan.js';
import type { EpochMetrics } from '../../core/train/loop.js';
import {
  planOfRun,
  RESUME_OVERRIDES,
  type ResumeOverrides,
  type SessionResult,
  trainSession,
} from '../../node/session.js';
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
  if (opts.knnK !== undefined) o.k = opts.knnK;
  if (opts.batchNorm !== undefined) o.batchNorm = opts.batchNorm;
  if (opts.pool !== undefined) {
    if (!['max', 'avg'].includes(String(opts.pool)))
      throw new UserError(`--pool must be max or avg (got '${String(opts.pool)}')`);
    o.pool = opts.pool;
  }
  return o;
}

/** The plan the train command's flags ask for (`--resume` excepted). */
export function planFromFlags(opts: Record<string, unknown>, lang: Lang): TrainConfig {
  const plan = resolveConfig({
    // Unset means the plan's default (softmax); with --backbone, --model names the head.
    model: opts.model as string | undefined,
    backbone: opts.backbone as string | undefined,
    head: opts.head as TrainConfig['head'],
    backboneLayer: opts.backboneLayer as string | undefined,
    backboneSize: opts.backboneSize as number | undefined,
    backboneRange: opts.backboneRange as TrainConfig['backboneRange'],
    epochs: opts.epochs as number | undefined,
    batchSize: opts.batchSize as number | undefined,
    lr: opts.lr as number | undefined,
    optimizer: opts.optimizer as string | undefined,
    seed: opts.seed as number | undefined,
    backend: opts.backend as BackendName | undefined,
    workers: opts.workers as number | undefined,
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
    lang,
    schedule: opts.schedule as string | undefined,
    warmup: opts.warmup as number | undefined,
    momentum: opts.momentum as number | undefined,
    nesterov: opts.nesterov as boolean | undefined,
    weightDecay: opts.weightDecay as number | undefined,
    labelSmoothing: opts.labelSmoothing as number | undefined,
    valSplit: opts.valSplit as number | undefined,
    patience: opts.patience as number | undefined,
    augment: opts.augment as boolean | undefined,
    modelOptions: modelOptionsFrom(opts),
  });
  if (opts.knnK !== undefined && plan.model !== 'knn')
    throw new UserError(`--knn-k goes with --head knn (or --model knn), not ${plan.model}`);
  return plan;
}

/** The option names of the flags a resume may apply (node/session.ts RESUME_OVERRIDES). */
const RESUME_FLAGS: Record<(typeof RESUME_OVERRIDES)[number], string> = {
  epochs: '--epochs',
  backend: '--backend',
  dataDir: '--data-dir',
};

/**
 * A resumed run keeps its recorded plan. Of the flags given with --resume, the few a resume may
 * change are applied and the others are named as ignored, so nothing is silently dropped.
 */
function resumeOverrides(opts: Record<string, unknown>, command: Command, out: Output): ResumeOverrides {
  const given = Object.keys(opts).filter((k) => k !== 'resume' && command.getOptionValueSource(k) === 'cli');
  const applied = given.filter((k): k is keyof typeof RESUME_FLAGS => k in RESUME_FLAGS);
  const ignored = given.filter((k) => !(k in RESUME_FLAGS) && k !== 'force');
  const flag = (k: string) => command.options.find((o) => o.attributeName() === k)?.long ?? k;
  const shown = (k: string) => `${flag(k)}${opts[k] === true ? '' : ` ${String(opts[k])}`}`;
  if (applied.length) out.line(`resume: applying ${applied.map(shown).join(', ')}`);
  if (ignored.length)
    out.line(
      `resume: ignoring ${ignored.map(shown).join(', ')} (a resumed run keeps the plan it was started with)`,
    );
  return Object.fromEntries(applied.map((k) => [k, opts[k]])) as ResumeOverrides;
}

/**
 * Ctrl-C: the session finishes the current step, writes a checkpoint and returns; a second
 * Ctrl-C exits at once.
 */
function stopOnSigint(out: Output): { shouldStop: () => boolean; release: () => void } {
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    out.line('interrupted: saving a checkpoint (Ctrl-C again to quit without it)');
  };
  process.on('SIGINT', onSigint);
  return { shouldStop: () => stop, release: () => process.off('SIGINT', onSigint) };
}

/**
 * The flags that make a plan (core/plan.ts): model, recipe, data. `train` and `lr-find` both
 * take them, so the same flags mean the same thing in both.
 */
export function withPlanOptions(command: Command): Command {
  // Help shows the plan's own defaults (core/plan.ts), never a copy of them.
  const seed = modelDefaults('softmax');
  const fromPlan = (what: string) => `(default: the model's; ${what} for softmax)`;
  return command
    .option('--model <name>', 'model name (see `imgclf models`; default softmax)')
    .option(
      '--epochs <n>',
      `passes over the training set ${fromPlan(String(seed.epochs))}`,
      numberArg('--epochs', true),
    )
    .option(
      '--batch-size <n>',
      `examples per minibatch ${fromPlan(String(seed.batchSize))}`,
      numberArg('--batch-size', true),
    )
    .option('--lr <x>', `learning rate ${fromPlan(String(seed.lr))}`, numberArg('--lr'))
    .option('--optimizer <name>', `sgd, adam, adamw or own ${fromPlan(seed.optimizer)}`)
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
    .option(
      '--patience <epochs>',
      'early stopping: stop after this many epochs without a better validation accuracy (needs --val-split)',
      numberArg('--patience', true),
    )
    .option('--augment', "random crop + flip on each batch (default: the model's; on for cnn)")
    .option('--no-augment', 'turn batch augmentation off')
    .option('--hidden <sizes>', 'mlp hidden sizes, e.g. 256,128')
    .option('--widths <filters>', 'cnn filters per resolution (default 32,64)')
    .option('--batch-norm', 'cnn: batch normalization after every convolution')
    .option('--no-batch-norm', 'cnn: no batch normalization')
    .option('--dropout <p>', 'mlp/cnn dropout rate', numberArg('--dropout'))
    .option('--activation <name>', 'mlp/lenet activation: relu or sigmoid')
    .option('--pool <name>', 'lenet pooling: max or avg')
    .option(
      '--seed <n>',
      'seed for weight init, data order and augmentation (default 0)',
      numberArg('--seed', true),
    )
    .option('--backend <name>', 'auto (default), wasm, cpu or tensorflow')
    .option(
      '--workers <n>',
      'training threads, each on 1/N of every batch (default: the cores, for models big enough to gain)',
      numberArg('--workers', true),
    )
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
    .option('--resize <n>', 'resize images to N x N (bilinear) before training', numberArg('--resize', true));
}

export function registerTrain(program: Command, globals: () => GlobalOptions): void {
  withPlanOptions(
    program
      .command('train')
      .description(
        'train a model on Fashion-MNIST, another built-in set, or your own images, and write a run directory',
      ),
  )
    .option(
      '--resume <dir>',
      'continue an interrupted run from its checkpoint (with --epochs: train a finished run further)',
    )
    .option('--force', 'replace the run that --out already holds')
    .option(
      '--backbone <model>',
      'transfer learning: a TensorFlow.js layers or graph model (a model.json, a folder holding one such as an imgclf run directory or a Teachable Machine export, or a URL); a head trains on its cached features (docs/own-images.md)',
    )
    .option(
      '--head <name>',
      `with --backbone: the head trained on its features: ${HEADS.join(', ')} (default softmax; --model means the same)`,
    )
    .option(
      '--backbone-layer <name>',
      'with --backbone: feature layer (layers models; default the input of the last Dense layer) or node (graph models; default the output)',
    )
    .option(
      '--backbone-size <n>',
      "with --backbone: its input size N x N (default: the model's, or its family's: 224 for graph models)",
      numberArg('--backbone-size', true),
    )
    .option(
      '--backbone-range <range>',
      `with --backbone: input range it expects, ${BACKBONE_RANGES.join(' or ')} (default: its family's: -1,1 for Teachable Machine, else 0,1)`,
    )
    .option('--knn-k <k>', 'knn: neighbours that vote (default 5)', numberArg('--knn-k', true))
    .option('--out <dir>', 'run directory (default runs/<timestamp>)')
    .action(async (opts: Record<string, unknown>, command: Command) => {
      const g = globals();
      const out = new Output(g);
      const resumeDir = opts.resume as string | undefined;
      const cfg = resumeDir
        ? await planOfRun(resumeDir, resumeOverrides(opts, command, out))
        : planFromFlags(opts, out.lang);
      const sigint = stopOnSigint(out);
      let result: SessionResult;
      try {
        result = await trainSession(
          cfg,
          {
            log: (m) => out.line(m),
            progress: (total, label, unit) => out.progress(total, label, unit),
            onEpoch: (m, epochs) => out.line(epochLine(m, epochs, out.lang)),
            shouldStop: sigint.shouldStop,
            lang: out.lang,
          },
          { resume: resumeDir, force: opts.force as boolean | undefined },
        );
      } finally {
        sigint.release();
      }
      const { history, dir, backend, workers, data, interrupted, bestEpoch, testAccuracy } = result;
      if (interrupted) process.exitCode = 130;
      out.json({
        model: cfg.model,
        ...(cfg.backbone ? { backbone: cfg.backbone } : {}),
        backend,
        workers,
        epochs: history.map((m) => ({
          epoch: m.epoch,
          train_loss: m.train_loss,
          train_accuracy: m.train_accuracy,
          test_accuracy: m.test_accuracy,
          seconds: m.seconds,
        })),
        // The kept epoch's (core/train/loop.ts keptEpoch), as metadata.json and evaluate say.
        test_accuracy: testAccuracy ?? history.at(-1)?.test_accuracy ?? null,
        ...(bestEpoch !== undefined
          ? { best_epoch: bestEpoch, final_test_accuracy: history.at(-1)?.test_accuracy ?? null }
          : {}),
        interrupted,
        out: dir,
        data,
        // The process's peak resident memory: what a big folder costs, from the kernel's count.
        peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      });
    });
}

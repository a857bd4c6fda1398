/** `imgclf train`: train a registered model and write a run directory. */
import { type Command, Option } from 'commander';
import type { Lang } from '../../core/data/classes.js';
import { orList, parseText } from '../../core/declare.js';
import { UserError } from '../../core/errors.js';
import { checkOptions, list, optionDecl, type OptionDecl, optionHelp } from '../../core/models/index.js';
import { resolveConfig, type TrainConfig } from '../../core/plan.js';
import {
  RESUMABLE,
  type ResumableSetting,
  type SettingDecl,
  type SettingName,
  SETTING_DECLS,
  SETTING_NAMES,
  settingFlag,
  settingHelp,
} from '../../core/settings.js';
import type { EpochMetrics } from '../../core/train/loop.js';
import { planOfRun, type ResumeOverrides, type SessionResult, trainSession } from '../../node/session.js';
import { type GlobalOptions, Output } from '../output.js';

/**
 * The per-epoch line: the seed's figures plus test accuracy and time; with fine-tuning, which
 * phase the epoch was ("head" on features, "fine-tune" backbone and head on images).
 */
export function epochLine(m: EpochMetrics, epochs: number, lang: Lang): string {
  const secs = `${m.seconds.toFixed(1)}s`;
  if (lang === 'zh') {
    const phase = m.phase === undefined ? '' : m.phase === 'head' ? '(头部)' : '(微调)';
    return `第${m.epoch}次训练${phase}平均损失为${m.train_loss.toFixed(4)},平均分类准确度${m.train_accuracy.toFixed(4)},测试准确度${m.test_accuracy.toFixed(4)} (${secs})`;
  }
  const val = m.val_accuracy !== undefined ? `  val acc ${m.val_accuracy.toFixed(4)}` : '';
  const phase = m.phase !== undefined ? `  ${m.phase}` : '';
  return `epoch ${m.epoch}/${epochs}${phase}  loss ${m.train_loss.toFixed(4)}  train acc ${m.train_accuracy.toFixed(4)}${val}  test acc ${m.test_accuracy.toFixed(4)}  ${secs}`;
}

/** A model option that has a flag of its own (`--hidden`), with the models that take it. */
interface ModelFlag {
  /** The option's key in `modelOptions` (`k` for `--knn-k`). */
  key: string;
  /** commander's flags, e.g. `--hidden <sizes>`. */
  flags: string;
  /** The flag's long name, e.g. `--hidden`. */
  long: string;
  /** The name commander stores its value under (`knnK`). */
  attribute: string;
  decl: OptionDecl;
  /** The models that declare this option with this flag. */
  models: string[];
  /** Each model's help for it. */
  helps: string[];
}

/** The flags the registered models declare for their options (core/models/*.ts `options`). */
function modelFlags(): ModelFlag[] {
  const byFlag = new Map<string, ModelFlag>();
  for (const entry of list()) {
    for (const [key, decl] of Object.entries(entry.options)) {
      if (decl.flag === undefined) continue;
      const option = new Option(decl.flag);
      const known = byFlag.get(decl.flag);
      if (known) {
        known.models.push(entry.name);
        known.helps.push(`${entry.name}: ${optionHelp(decl)}`);
      } else {
        byFlag.set(decl.flag, {
          key,
          flags: decl.flag,
          long: option.long ?? decl.flag,
          attribute: option.attributeName(),
          decl,
          models: [entry.name],
          helps: [`${entry.name}: ${optionHelp(decl)}`],
        });
      }
    }
  }
  return [...byFlag.values()];
}

/**
 * The model options the flags ask for, checked by the model's registry entry: an option of
 * another model, an unknown `--model-option` name or a value out of range fails with one line
 * naming the flag.
 */
function modelOptionsFrom(opts: Record<string, unknown>, model: string): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  const labels = new Map<string, string>();
  for (const f of modelFlags()) {
    const value = opts[f.attribute];
    if (value === undefined) continue;
    if (!f.models.includes(model))
      throw new UserError(`${f.long} goes with ${orList(f.models)}, not ${model}`);
    options[f.key] = value;
    labels.set(f.key, f.long);
  }
  const pairs: unknown = opts.modelOption ?? [];
  for (const pair of Array.isArray(pairs) ? pairs.map(String) : []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UserError(`--model-option expects name=value, got '${pair}'`);
    const key = pair.slice(0, eq);
    const label = `--model-option ${key}`;
    options[key] = parseText(optionDecl(model, key), pair.slice(eq + 1), label);
    labels.set(key, label);
  }
  checkOptions(model, options, (key) => labels.get(key) ?? key);
  return options;
}

/** The plan the train command's flags ask for (`--resume` excepted). */
export function planFromFlags(opts: Record<string, unknown>, lang: Lang): TrainConfig {
  // commander stores each setting's flag under the setting's own name (core/settings.ts).
  const choices: Record<string, unknown> = { lang };
  for (const name of SETTING_NAMES) {
    if (name !== 'lang' && opts[name] !== undefined) choices[name] = opts[name];
  }
  const plan = resolveConfig(choices);
  return { ...plan, modelOptions: modelOptionsFrom(opts, plan.model) };
}

/**
 * A resumed run keeps its recorded plan. Of the flags given with --resume, the few a resume may
 * change (core/settings.ts `resumable`) are applied and the others are named as ignored, so
 * nothing is silently dropped.
 */
function resumeOverrides(opts: Record<string, unknown>, command: Command, out: Output): ResumeOverrides {
  const given = Object.keys(opts).filter((k) => k !== 'resume' && command.getOptionValueSource(k) === 'cli');
  const isResumable = (k: string): k is ResumableSetting => (RESUMABLE as readonly string[]).includes(k);
  const applied = given.filter(isResumable);
  const ignored = given.filter((k) => !isResumable(k) && k !== 'force');
  const flag = (k: string) => command.options.find((o) => o.attributeName() === k)?.long ?? k;
  const shown = (k: string) => `${flag(k)}${opts[k] === true ? '' : ` ${String(opts[k])}`}`;
  if (applied.length) out.line(`resume: applying ${applied.map(shown).join(', ')}`);
  if (ignored.length)
    out.line(
      `resume: ignoring ${ignored.map(shown).join(', ')} (a resumed run keeps the plan it was started with)`,
    );
  // The values are as commander parsed them; planOfRun checks them with the rest of the plan.
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
  return {
    shouldStop: () => stop,
    // Once interrupted, the handler stays: a second Ctrl-C while the checkpoint's line is
    // printed or the process winds down still quits with 130 and leaves no lock behind.
    release: () => {
      if (!stop) process.off('SIGINT', onSigint);
    },
  };
}

/** Adds the flag of setting `name` to `command`, parsed and described from its declaration. */
function addSetting(command: Command, name: SettingName): void {
  const decl = SETTING_DECLS[name];
  const flag = settingFlag(name);
  const help = settingHelp(name);
  if (decl.arg === undefined) {
    command.option(flag, help);
    if (decl.negation) command.option(`--no-${flag.slice(2)}`, decl.negation);
  } else {
    command.option(`${flag} <${decl.arg}>`, help, (text: string) => parseText(decl, text, flag));
  }
}

/** Adds every setting whose flag belongs to `where` (core/settings.ts `cli`). */
function addSettings(command: Command, where: SettingDecl['cli']): Command {
  for (const name of SETTING_NAMES) if (SETTING_DECLS[name].cli === where) addSetting(command, name);
  return command;
}

/**
 * The flags that make a plan (core/settings.ts, core/plan.ts): model, recipe, data, and the
 * model options the registered models declare. `train` and `lr-find` both take them, so the
 * same flags mean the same thing in both.
 */
export function withPlanOptions(command: Command): Command {
  addSettings(command, 'plan');
  for (const f of modelFlags()) {
    const help = f.helps.join('; ');
    if (f.decl.type === 'boolean') {
      command.option(f.flags, help);
      command.option(`--no-${f.long.slice(2)}`, `${f.models.join(', ')}: not ${f.decl.help}`);
    } else {
      command.option(f.flags, help, (text: string) => parseText(f.decl, text, f.long));
    }
  }
  return command.option(
    '--model-option <name=value>',
    'set any option the model declares (see `imgclf models`), e.g. --model-option convs=2; repeatable',
    (pair: string, previous: string[] = []) => [...previous, pair],
  );
}

export function registerTrain(program: Command, globals: () => GlobalOptions): void {
  const train = withPlanOptions(
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
    .option('--force', 'replace the run that --out already holds');
  addSettings(train, 'train').action(async (opts: Record<string, unknown>, command: Command) => {
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
    const { history, dir, backend, workers, data, interrupted, bestEpoch, testAccuracy, fineTune } = result;
    if (interrupted) process.exitCode = 130;
    out.json({
      model: cfg.model,
      ...(cfg.backbone ? { backbone: cfg.backbone } : {}),
      // The plan of the second phase: what it unfroze, its epochs and rates.
      ...(fineTune
        ? {
            fine_tune: {
              layers: fineTune.layers,
              unfrozen: fineTune.unfrozen,
              head_epochs: fineTune.headEpochs,
              epochs: fineTune.epochs,
              lr: fineTune.lr,
              bn: fineTune.bn,
            },
          }
        : {}),
      backend,
      workers,
      epochs: history.map((m) => ({
        epoch: m.epoch,
        train_loss: m.train_loss,
        train_accuracy: m.train_accuracy,
        test_accuracy: m.test_accuracy,
        seconds: m.seconds,
        ...(m.phase ? { phase: m.phase } : {}),
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

/**
 * Settings and model options are declared once (core/settings.ts, each model's `options`):
 * the flags, the plan's keys, the resume rules and the checks all follow the declaration, and
 * a misspelt model option fails with one line everywhere it can be given.
 */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { planFromFlags } from '../src/cli/commands/train.js';
import { buildProgram } from '../src/cli/main.js';
import { createModel } from '../src/core/api.js';
import { checkValue } from '../src/core/declare.js';
import { UserError } from '../src/core/errors.js';
import { create, list } from '../src/core/models/index.js';
import { GLOBAL_DEFAULTS, modelDefaults, resolveConfig } from '../src/core/plan.js';
import {
  RESUMABLE,
  SETTING_DECLS,
  SETTING_NAMES,
  settingFlag,
  TRAIN_CHOICE_NAMES,
} from '../src/core/settings.js';
import { RESUME_OVERRIDES } from '../src/node/session.js';
import { train } from '../src/node/api.js';
import { LOOP_FIELDS } from './fixtures/plan-fields.js';
import { cli, expectCleanError } from './helpers.js';

function command(name: string): Command {
  const found = buildProgram().commands.find((c) => c.name() === name);
  if (!found) throw new Error(`no ${name} command`);
  return found;
}

/** Parses `args` as the CLI would and returns the error it fails with. */
async function cliError(args: string[]): Promise<Error> {
  const program = buildProgram();
  try {
    await program.parseAsync(['node', 'imgclf', ...args]);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`${args.join(' ')} did not fail`);
}

const SHAPE = [28, 28, 1] as [number, number, number];
const CNN_TAKES = "it takes widths, convs, batchNorm, dropout; did you mean 'dropout'?";

describe('a setting is declared in one place', () => {
  it('train --help lists the flag of every declared setting (and lr-find those of the plan)', () => {
    const trainHelp = command('train').helpInformation();
    const lrFindHelp = command('lr-find').helpInformation();
    for (const name of SETTING_NAMES) {
      const decl = SETTING_DECLS[name];
      if (decl.cli === 'global') continue;
      expect(trainHelp).toContain(settingFlag(name));
      if (decl.cli === 'plan') expect(lrFindHelp).toContain(settingFlag(name));
    }
    for (const entry of list()) {
      for (const option of Object.values(entry.options))
        if (option.flag) expect(trainHelp).toContain(option.flag.split(' ')[0]);
    }
  });

  it("each flag hands back its value under the setting's own name", () => {
    const train = command('train');
    for (const name of SETTING_NAMES) {
      if (SETTING_DECLS[name].cli === 'global') continue;
      const option = train.options.find((o) => o.long === settingFlag(name));
      expect(option?.attributeName(), settingFlag(name)).toBe(name);
    }
  });

  it('the plan rejects an unknown key, naming the nearest known one', () => {
    expect(() => resolveConfig({ epocs: 3 })).toThrow(
      /^unknown config key 'epocs'; did you mean 'epochs'\?$/,
    );
    expect(() => resolveConfig({ batchsize: 3 })).toThrow(/did you mean 'batchSize'\?/);
    // Nothing close: the known keys are listed instead.
    expect(() => resolveConfig({ zzzzzzzz: 1 })).toThrow(/known keys: model, epochs, /);
  });

  it('resume may change exactly the settings declared resumable', () => {
    const resumable = SETTING_NAMES.filter((name) => SETTING_DECLS[name].resumable);
    expect([...RESUMABLE]).toEqual(resumable);
    expect([...RESUME_OVERRIDES]).toEqual(resumable);
    expect(resumable).toEqual(['epochs', 'backend', 'dataDir', 'fineTuneEpochs']);
  });

  it("fit takes the loop's and the optimizer's settings", () => {
    expect([...TRAIN_CHOICE_NAMES].sort()).toEqual([...LOOP_FIELDS, 'patience'].sort());
  });

  it('defaults are the declared ones and pass their own checks, the models’ too', () => {
    for (const [name, value] of Object.entries(GLOBAL_DEFAULTS))
      expect(value).toEqual(SETTING_DECLS[name as keyof typeof SETTING_DECLS].default);
    for (const name of SETTING_NAMES) {
      const d = SETTING_DECLS[name];
      if (d.default !== undefined) checkValue(d, d.default, settingFlag(name));
    }
    for (const entry of list()) {
      for (const [name, value] of Object.entries(modelDefaults(entry.name)))
        checkValue(SETTING_DECLS[name as keyof typeof SETTING_DECLS], value, name);
      for (const [key, option] of Object.entries(entry.options)) checkValue(option, option.default, key);
    }
  });

  it('the CLI keeps its messages, now from the declarations', async () => {
    expect((await cliError(['train', '--epochs', 'many'])).message).toBe(
      "--epochs expects a whole number, got 'many'",
    );
    expect((await cliError(['train', '--lr', '-1'])).message).toMatch(/^--lr must be a positive number/);
    expect((await cliError(['train', '--resize', '2'])).message).toMatch(
      /^--resize must be a whole number from 4 to 512/,
    );
    expect((await cliError(['train', '--warmup', '-1'])).message).toBe(
      '--warmup must be >= 0 epochs (got -1)',
    );
    expect((await cliError(['train', '--val-split', '1'])).message).toBe(
      '--val-split must be a fraction above 0 and at most 0.9 (got 1)',
    );
    expect((await cliError(['train', '--backend', 'gpu'])).message).toBe(
      "unknown backend 'gpu'; choose one of: auto, wasm, cpu, tensorflow",
    );
    expect((await cliError(['train', '--model', 'mlp', '--hidden', '256,x'])).message).toBe(
      "--hidden expects sizes like 256 or 256,128, got '256,x'",
    );
  });
});

describe('model options are declared by the model and checked by the registry', () => {
  it('create() rejects a misspelt option with one line naming the nearest', () => {
    const spec = { inputShape: SHAPE, numClasses: 10, seed: 0, options: { dropuot: 0.5 } };
    expect(() => create('cnn', spec)).toThrow(UserError);
    expect(() => create('cnn', spec)).toThrow(`unknown option 'dropuot' for model cnn; ${CNN_TAKES}`);
    expect(() => create('softmax', { ...spec, options: { k: 3 } })).toThrow(
      "unknown option 'k' for model softmax; it takes none",
    );
  });

  it('create() rejects a value out of range', () => {
    const spec = { inputShape: SHAPE, numClasses: 10, seed: 0 };
    expect(() => create('mlp', { ...spec, options: { dropout: 1.5 } })).toThrow(
      "mlp option 'dropout' must be in [0, 1) (got 1.5)",
    );
    expect(() => create('mlp', { ...spec, options: { hidden: [0] } })).toThrow(
      "mlp option 'hidden' must be a list of whole numbers from 1 to 65536 (got 0)",
    );
    expect(() => create('knn', { ...spec, options: { k: 0 } })).toThrow(
      /knn option 'k' must be a whole number from 1 to 1000/,
    );
  });

  it('the library: createModel and train fail the same way, before any data is loaded', async () => {
    expect(() =>
      createModel('cnn', { inputShape: SHAPE, numClasses: 10, options: { dropuot: 0.5 } }),
    ).toThrow(`unknown option 'dropuot' for model cnn; ${CNN_TAKES}`);
    await expect(train({ model: 'cnn', modelOptions: { dropuot: 0.5 } })).rejects.toThrow(
      `unknown option 'dropuot' for model cnn; ${CNN_TAKES}`,
    );
  });

  it('the CLI: flags of another model and --model-option names are checked by the registry', () => {
    expect(() => planFromFlags({ model: 'cnn', hidden: [64] }, 'en')).toThrow(
      '--hidden goes with mlp, not cnn',
    );
    expect(() => planFromFlags({ model: 'mlp', dropout: 1 }, 'en')).toThrow(
      '--dropout must be in [0, 1) (got 1)',
    );
    expect(() => planFromFlags({ model: 'softmax', knnK: 3 }, 'en')).toThrow(
      '--knn-k goes with knn, not softmax',
    );
    expect(
      planFromFlags({ model: 'cnn', modelOption: ['convs=2', 'batchNorm=true'] }, 'en').modelOptions,
    ).toEqual({
      convs: 2,
      batchNorm: true,
    });
    expect(() => planFromFlags({ model: 'cnn', modelOption: ['convs=0'] }, 'en')).toThrow(
      '--model-option convs must be a whole number from 1 to 8 (got 0)',
    );
  });

  it('the CLI: a misspelt --model-option is one line, exit 2, no stack', () => {
    expectCleanError(
      cli(['train', '--model', 'cnn', '--model-option', 'dropuot=0.5']),
      new RegExp(`unknown option 'dropuot' for model cnn; ${CNN_TAKES.replace(/[?]/g, '\\?')}`),
    );
  });
});

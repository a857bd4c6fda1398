/**
 * The options of every command that reads a run directory: `--run DIR` (with `--model DIR`,
 * its older name, still accepted), `--backend` and `--data-dir`.
 */
import type { Command } from 'commander';
import type { BackendName } from '../core/backends.js';
import { UserError } from '../core/errors.js';
import { settingHelp } from '../core/settings.js';

export interface RunOptions {
  run?: string;
  /** The older name of --run. */
  model?: string;
  backend?: BackendName;
  dataDir?: string;
}

/** Adds --run (alias --model), --backend and --data-dir. */
export function withRunOptions(command: Command, dataDirHelp = 'folder with the dataset files'): Command {
  return command
    .option('--run <dir>', 'run directory written by `imgclf train`')
    .option('--model <dir>', 'same as --run (its older name)')
    .option('--backend <name>', settingHelp('backend'))
    .option('--data-dir <dir>', dataDirHelp);
}

/** The run directory the options name; one of --run and --model is required. */
export function runDirOf(opts: RunOptions): string {
  if (opts.run && opts.model && opts.run !== opts.model)
    throw new UserError(`--run ${opts.run} and --model ${opts.model} disagree; give one run directory`);
  const dir = opts.run ?? opts.model;
  if (!dir) throw new UserError("which run? give --run DIR (a run directory written by 'imgclf train')");
  return dir;
}

#!/usr/bin/env node
/**
 * The imgclf command line. Each command lives in commands/; this file wires them up and turns
 * errors into one line: exit 2 for bad input (UserError) and for a full disk or a missing
 * permission, 1 for anything else, with the stack trace only under --verbose.
 */
import { Command, CommanderError } from 'commander';
import { UserError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { diskErrorReason } from '../node/fs.js';
import { registerData } from './commands/data.js';
import { registerEvaluate } from './commands/evaluate.js';
import { registerExport } from './commands/export.js';
import { registerLrFind } from './commands/lr-find.js';
import { registerModels } from './commands/models.js';
import { registerPredict } from './commands/predict.js';
import { registerServe } from './commands/serve.js';
import { registerReport } from './commands/report.js';
import { registerTrain } from './commands/train.js';
import type { GlobalOptions } from './output.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('imgclf')
    .description('Train, evaluate and use image classifiers: softmax regression to CNNs, in TypeScript.')
    .version(VERSION)
    .option('--json', 'print one JSON object as the last line of stdout')
    .option('--lang <lang>', 'language of class names and messages: en or zh', 'en')
    .option('--verbose', 'show stack traces on errors')
    .showHelpAfterError()
    .exitOverride();
  const globals = (): GlobalOptions => {
    const o = program.opts<GlobalOptions>();
    if (o.lang !== 'en' && o.lang !== 'zh') throw new UserError(`--lang must be en or zh (got ${o.lang})`);
    return o;
  };
  registerTrain(program, globals);
  registerEvaluate(program, globals);
  registerPredict(program, globals);
  registerData(program, globals);
  registerModels(program, globals);
  registerServe(program, globals);
  registerReport(program, globals);
  registerLrFind(program, globals);
  registerExport(program, globals);
  // Subcommands inherit exitOverride only when set before they are added.
  for (const c of program.commands) c.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv);
    // A command may set an exit code without failing (train after Ctrl-C: 130).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (help, version, or a usage error).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`imgclf: error: ${err.message}\n`);
      if (verbose) process.stderr.write(`${err.stack}\n`);
      return 2;
    }
    // A full disk or a permission is the machine's state, not a bug: one line, exit 2. Saves
    // of a run say more themselves (node/run/save.ts); this covers every other write.
    const disk = diskErrorReason(err);
    if (disk) {
      process.stderr.write(
        `imgclf: error: cannot write: ${disk}; files are replaced whole, so what was saved before is kept; free some space (or fix the permissions) and run again\n`,
      );
      if (verbose) process.stderr.write(`${(err as Error).stack}\n`);
      return 2;
    }
    const e = err as Error;
    process.stderr.write(
      `imgclf: unexpected error: ${e?.message ?? String(err)}${verbose ? '' : ' (run with --verbose for details)'}\n`,
    );
    if (verbose) process.stderr.write(`${e?.stack}\n`);
    return 1;
  }
}

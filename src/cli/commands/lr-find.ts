/** `imgclf lr-find`: the learning-rate range test, with a picture and a suggested --lr. */
import type { Command } from 'commander';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { runLrFind } from '../../node/lr-find.js';
import { type GlobalOptions, numberArg, Output } from '../output.js';
import { planFromFlags, withPlanOptions } from './train.js';

export function registerLrFind(program: Command, globals: () => GlobalOptions): void {
  withPlanOptions(
    program
      .command('lr-find')
      .description(
        'learning-rate range test: train briefly while the rate grows, plot the loss, suggest an --lr (the training flags pick the model, optimizer and data; epochs and schedules do not apply)',
      ),
  )
    .option('--start-lr <x>', 'first rate of the sweep', numberArg('--start-lr'), 1e-6)
    .option('--end-lr <x>', 'last rate of the sweep', numberArg('--end-lr'), 10)
    .option('--steps <n>', 'optimizer steps of the sweep', numberArg('--steps', true), 200)
    .option('--out <dir>', 'folder for lr-find.png, .svg and .json', 'runs/lr-find')
    .action(async (opts: Record<string, unknown>) => {
      const out = new Output(globals());
      const { startLr, endLr, steps } = opts as { startLr: number; endLr: number; steps: number };
      if (!(startLr > 0 && endLr > startLr))
        throw new UserError(
          `--start-lr and --end-lr must satisfy 0 < start < end (got ${startLr}, ${endLr})`,
        );
      if (steps < 10) throw new UserError(`--steps must be at least 10 (got ${steps})`);
      const plan = planFromFlags(opts, out.lang);
      const dir = opts.out as string;
      const r = await runLrFind(plan, dir, { startLr, endLr, steps }, (m) => out.line(m));
      const fmt = (x: number) => x.toPrecision(2);
      out.line(
        `${plan.model} with ${plan.optimizer}, batch ${r.batchSize}, ${r.lrs.length} steps from ${fmt(r.lrs[0])} to ${fmt(r.lrs.at(-1)!)}` +
          (r.diverged ? ' (stopped where the loss blew up)' : ''),
      );
      out.line(
        `suggested --lr ${fmt(r.suggested)}: where the loss falls fastest (lowest loss at ${fmt(r.minimum)}).`,
      );
      out.line(
        'This is a suggestion from one short sweep, not a measurement of the best rate: try it, and a few times smaller.',
      );
      out.line(`picture ${path.join(dir, 'lr-find.png')}`);
      out.json({
        suggested_lr: r.suggested,
        minimum_lr: r.minimum,
        diverged: r.diverged,
        steps: r.lrs.length,
        batch_size: r.batchSize,
        files: r.files,
      });
    });
}

/** `imgclf models`: the registered models with parameter counts. */
import type { Command } from 'commander';
import { selectBackend } from '../../backend/index.js';
import { describeOptions, list } from '../../core/models/index.js';
import { modelDefaults } from '../../core/plan.js';
import { type GlobalOptions, Output, table } from '../output.js';

export function registerModels(program: Command, globals: () => GlobalOptions): void {
  program
    .command('models')
    .description('list the models `imgclf train --model` accepts')
    .action(async () => {
      const out = new Output(globals());
      await selectBackend('auto');
      const rows = list().map((e) => {
        const m = e.create({ inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
        const params = m.countParams();
        m.dispose();
        return {
          name: e.name,
          params,
          description: e.description,
          memorizes: e.memorizes ?? false,
          defaults: modelDefaults(e.name),
          options: describeOptions(e.name),
        };
      });
      out.line(
        table(
          rows.map((r) => [
            r.name,
            r.params,
            r.memorizes
              ? 'memorizes the training set'
              : `${r.defaults.optimizer} lr ${r.defaults.lr}, ${r.defaults.epochs} epochs`,
            r.description,
          ]),
          ['model', 'params (28x28x1, 10 classes)', 'defaults', 'description'],
        ),
      );
      // What `--model-option name=value` (and `createModel`'s options) each model takes.
      for (const r of rows) {
        if (r.options.length) out.line(`\n${r.name} options:\n${r.options.map((o) => `  ${o}`).join('\n')}`);
      }
      out.json({ models: rows });
    });
}

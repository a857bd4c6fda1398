/** `imgclf report`: (re)draw a run's pictures and report.html from its run directory. */
import type { Command } from 'commander';
import type { BackendName } from '../../backend/index.js';
import { writeReport } from '../../report/report.js';
import { type GlobalOptions, Output } from '../output.js';
import { loadRunWithData } from './evaluate.js';

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  program
    .command('report')
    .description('draw curves, confusion matrix, prediction pictures and report.html for a run')
    .requiredOption('--model <dir>', 'run directory written by `imgclf train`')
    .option('--backend <name>', 'auto, wasm, cpu or tensorflow', 'auto')
    .option('--data-dir <dir>', 'folder with the dataset files')
    .action(async (opts: { model: string; backend: BackendName; dataDir?: string }) => {
      const out = new Output(globals());
      const { run, dataset } = await loadRunWithData(opts.model, opts.backend, opts.dataDir);
      const r = await writeReport({
        dir: opts.model,
        model: run.model,
        test: dataset.test,
        metadata: run.metadata,
        history: run.metrics,
        lang: out.lang,
        log: (m) => out.line(m),
      });
      for (const f of r.files) out.line(`wrote ${f}`);
      out.line(`test accuracy ${r.accuracy.toFixed(4)}, report in ${r.seconds.toFixed(1)}s`);
      out.json({ files: r.files, test_accuracy: r.accuracy });
    });
}

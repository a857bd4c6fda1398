/** `imgclf report`: (re)draw a run's pictures and report.html from its run directory. */
import type { Command } from 'commander';
import { selectBackend } from '../../backend/index.js';
import { writeReport } from '../../node/report/report.js';
import { loadRunWithData } from '../../node/run/data.js';
import { type GlobalOptions, Output } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(
    program
      .command('report')
      .description('draw curves, confusion matrix, prediction pictures and report.html for a run'),
  ).action(async (opts: RunOptions) => {
    const out = new Output(globals());
    const dir = runDirOf(opts);
    await selectBackend(opts.backend);
    const { run, dataset } = await loadRunWithData(dir, opts.dataDir);
    const r = await writeReport({
      dir,
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

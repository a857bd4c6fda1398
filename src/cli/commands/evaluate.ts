/**
 * `imgclf evaluate`: test accuracy, per-class precision/recall/F1, the confusion matrix and the
 * most confident mistakes, on the run's own test split or on any labelled folder or CSV
 * (`--data`); `--out DIR` writes report.html and its pictures there. The run directory is only
 * read.
 */
import type { Command } from 'commander';
import path from 'node:path';
import { selectBackend } from '../../backend/index.js';
import { displayName } from '../../core/data/classes.js';
import type { Split } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import { evaluate } from '../../core/train/loop.js';
import { confusionMatrix, perClassMetrics } from '../../core/train/metrics.js';
import { confidentMistakes, writeReport } from '../../node/report/report.js';
import { loadLabelledData, loadRunWithData } from '../../node/run/data.js';
import { type LoadedRun, loadRun } from '../../node/run/rundir.js';
import { type GlobalOptions, Output, table, withRunLog } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';

/** Mistakes listed on the terminal (report.html draws its own). */
const SHOWN_MISTAKES = 10;

type EvaluateOptions = RunOptions & { data?: string; out?: string };

export function registerEvaluate(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(
    program
      .command('evaluate')
      .description('evaluate a trained run on its test set, or on any labelled folder or CSV (--data)'),
  )
    .option(
      '--data <path>',
      "labelled data to score instead of the run's test set: a folder of class folders (its test/ when it has train/ and test/) or a CSV; its classes must be the run's",
    )
    .option('--out <dir>', 'write report.html and its pictures here (the run directory is left as it is)')
    .action(async (opts: EvaluateOptions) => {
      const out = new Output(globals());
      const dir = runDirOf(opts);
      if (opts.out !== undefined && path.resolve(opts.out) === path.resolve(dir))
        throw new UserError(
          `--out ${opts.out} is the run directory; evaluate leaves it as it is, give another folder`,
        );
      await selectBackend(opts.backend);
      let run: LoadedRun;
      let test: Split;
      let dataName: string | undefined;
      if (opts.data !== undefined) {
        run = await withRunLog((log) => loadRun(dir, log));
        const data = await loadLabelledData(run.metadata, opts.data, (m) => out.line(m));
        test = data.split;
        dataName = data.where;
      } else {
        const loaded = await withRunLog((log) => loadRunWithData(dir, opts.dataDir, log));
        run = loaded.run;
        test = loaded.dataset.test;
      }
      if (test.count === 0) throw new UserError(`${dataName ?? dir}: no readable images to score`);
      const names = run.metadata.classNames;
      const r = evaluate(run.model, test, { shape: run.metadata.inputShape, withProbabilities: true });
      const confusion = confusionMatrix(r.predicted, test.labels, names.length);
      const perClass = perClassMetrics(confusion);
      const shown = names.map((n) => displayName(n, out.lang));
      const mistakes = confidentMistakes(
        test.labels,
        r.predicted,
        r.probabilities!,
        names.length,
        SHOWN_MISTAKES,
      ).map((i) => ({
        index: i,
        file: test.files?.[i] ?? null,
        true: names[test.labels[i]],
        predicted: names[r.predicted[i]],
        probability: r.probabilities![i * names.length + r.predicted[i]],
      }));
      out.line(
        `${out.lang === 'zh' ? '测试准确度' : 'test accuracy'} ${r.accuracy.toFixed(4)} (${test.count} images${dataName ? ` of ${dataName}` : ''}, ${r.seconds.toFixed(2)}s)`,
      );
      out.line();
      out.line(
        table(
          perClass.map((m, i) => [
            shown[i],
            m.precision.toFixed(3),
            m.recall.toFixed(3),
            m.f1.toFixed(3),
            m.support,
          ]),
          ['class', 'precision', 'recall', 'f1', 'support'],
        ),
      );
      out.line();
      out.line('confusion matrix (rows: true class, columns: predicted)');
      out.line(
        table(
          confusion.map((row, i) => [shown[i], ...row]),
          ['', ...names.map((_, i) => String(i))],
        ),
      );
      if (mistakes.length) {
        out.line();
        out.line('most confident mistakes');
        out.line(
          table(
            mistakes.map((m) => [
              m.file ?? `#${m.index}`,
              displayName(m.true, out.lang),
              displayName(m.predicted, out.lang),
              `${(m.probability * 100).toFixed(1)}%`,
            ]),
            ['image', 'true', 'predicted', 'confidence'],
          ),
        );
      }
      let files: string[] | undefined;
      if (opts.out !== undefined) {
        const report = await writeReport({
          dir: opts.out,
          model: run.model,
          test,
          metadata: run.metadata,
          history: run.metrics,
          lang: out.lang,
          log: (m) => out.line(m),
          evaluation: r,
          dataName,
        });
        files = report.files;
        out.line();
        for (const f of files) out.line(`wrote ${f}`);
      }
      out.json({
        test_accuracy: r.accuracy,
        count: test.count,
        data: dataName ?? null,
        per_class: perClass.map((m, i) => ({
          class: names[i],
          precision: m.precision,
          recall: m.recall,
          f1: m.f1,
        })),
        confusion,
        mistakes,
        ...(files ? { files } : {}),
      });
    });
}

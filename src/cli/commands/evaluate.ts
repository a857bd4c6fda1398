/** `imgclf evaluate`: test accuracy, per-class precision/recall/F1 and the confusion matrix. */
import type { Command } from 'commander';
import { selectBackend } from '../../backend/index.js';
import { displayName } from '../../core/data/classes.js';
import { loadRunWithData } from '../../node/run/data.js';
import { evaluate } from '../../core/train/loop.js';
import { confusionMatrix, perClassMetrics } from '../../core/train/metrics.js';
import { type GlobalOptions, withRunLog, Output, table } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';

export function registerEvaluate(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(program.command('evaluate').description('evaluate a trained run on the test set')).action(
    async (opts: RunOptions) => {
      const out = new Output(globals());
      await selectBackend(opts.backend);
      const { run, dataset } = await withRunLog((log) => loadRunWithData(runDirOf(opts), opts.dataDir, log));
      const names = run.metadata.classNames;
      const r = evaluate(run.model, dataset.test, { shape: run.metadata.inputShape });
      const confusion = confusionMatrix(r.predicted, dataset.test.labels, names.length);
      const perClass = perClassMetrics(confusion);
      const shown = names.map((n) => displayName(n, out.lang));
      out.line(
        `${out.lang === 'zh' ? '测试准确度' : 'test accuracy'} ${r.accuracy.toFixed(4)} (${dataset.test.count} images, ${r.seconds.toFixed(2)}s)`,
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
      out.json({
        test_accuracy: r.accuracy,
        per_class: perClass.map((m, i) => ({
          class: names[i],
          precision: m.precision,
          recall: m.recall,
          f1: m.f1,
        })),
        confusion,
      });
    },
  );
}

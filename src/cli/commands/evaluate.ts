/** `imgclf evaluate`: test accuracy, per-class precision/recall/F1 and the confusion matrix. */
import type { Command } from 'commander';
import { selectBackend, type BackendName } from '../../backend/index.js';
import { displayName } from '../../core/data/classes.js';
import { idxSource, loadDataset } from '../../node/data/load.js';
import { UserError } from '../../core/errors.js';
import { type LoadedRun, loadRun } from '../../node/run/rundir.js';
import { evaluate } from '../../core/train/loop.js';
import { confusionMatrix, perClassMetrics } from '../../core/train/metrics.js';
import { type GlobalOptions, Output, table } from '../output.js';

/**
 * Loads a run and the dataset it was trained on, shaped as the run expects: the data source
 * recorded in its metadata (an image folder, a CSV, or a built-in set; runs from before sources
 * were recorded name a built-in set). `dataDir` overrides a built-in set's folder.
 */
export async function loadRunWithData(dir: string, backend: BackendName, dataDir?: string) {
  await selectBackend(backend);
  const run: LoadedRun = await loadRun(dir);
  const cfg = run.metadata.config as { dataDir?: string; resize?: number };
  let source = run.metadata.data ?? idxSource(run.metadata.dataset, cfg.dataDir, cfg.resize);
  if (dataDir && source.kind === 'idx') source = { ...source, dataDir };
  const { dataset } = await loadDataset({ source });
  const names = run.metadata.classNames;
  if (dataset.classNames.join('\n') !== names.join('\n')) {
    throw new UserError(
      `the data at ${source.kind === 'idx' ? source.dataset : source.path} now has classes ` +
        `${dataset.classNames.join(', ')} but the run was trained on ${names.join(', ')}`,
    );
  }
  if (dataset.shape.join('x') !== run.metadata.inputShape.join('x')) {
    throw new UserError(
      `the data is ${dataset.shape.join('x')} but the run expects ${run.metadata.inputShape.join('x')}`,
    );
  }
  return { run, dataset };
}

/** The options of every command that reads a run directory (and its data). */
export interface RunOptions {
  model: string;
  backend: BackendName;
  dataDir?: string;
}

/** Adds --model, --backend and --data-dir, shared by evaluate, predict and report. */
export function withRunOptions(command: Command): Command {
  return command
    .requiredOption('--model <dir>', 'run directory written by `imgclf train`')
    .option('--backend <name>', 'auto, wasm, cpu or tensorflow', 'auto')
    .option('--data-dir <dir>', 'folder with the dataset files');
}

export function registerEvaluate(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(program.command('evaluate').description('evaluate a trained run on the test set')).action(
    async (opts: RunOptions) => {
      const out = new Output(globals());
      const { run, dataset } = await loadRunWithData(opts.model, opts.backend, opts.dataDir);
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

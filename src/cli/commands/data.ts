/** `imgclf data fetch|info`: get a built-in IDX dataset (Fashion-MNIST by default) and show what is there. */
import type { Command } from 'commander';
import { displayName } from '../../core/data/classes.js';
import { classCounts } from '../../core/data/dataset.js';
import { idxSpec, loadIdxDataset } from '../../node/data/datasets.js';
import { type GlobalOptions, Output, table } from '../output.js';

export function registerData(program: Command, globals: () => GlobalOptions): void {
  const data = program
    .command('data')
    .description('download and inspect the built-in datasets (fashion-mnist, mnist, kmnist)');
  const fetchAndReport = async (opts: { dataDir?: string; dataset: string }, detailed: boolean) => {
    const out = new Output(globals());
    const { dataset, located, files } = await loadIdxDataset(idxSpec(opts.dataset), {
      dataDir: opts.dataDir,
      log: (m) => out.line(m),
    });
    out.line(`${dataset.name} in ${located.dir} (${located.origin})`);
    out.line(
      `  train ${dataset.train.count} images, test ${dataset.test.count} images, ${dataset.shape.join('x')} each`,
    );
    for (const f of files) {
      const status = f.verified
        ? 'verified'
        : f.method === 'none'
          ? 'UNVERIFIABLE (no .gz)'
          : 'CHECKSUM MISMATCH';
      out.line(`  ${status}  ${f.path}`);
    }
    const trainCounts = classCounts(dataset.train.labels, dataset.classNames.length);
    const testCounts = classCounts(dataset.test.labels, dataset.classNames.length);
    if (detailed) {
      out.line();
      out.line(
        table(
          dataset.classNames.map((n, i) => [i, displayName(n, out.lang), trainCounts[i], testCounts[i]]),
          ['label', 'class', 'train', 'test'],
        ),
      );
    }
    out.json({
      dataset: dataset.name,
      dir: located.dir,
      origin: located.origin,
      train: dataset.train.count,
      test: dataset.test.count,
      shape: dataset.shape,
      verified: files.every((f) => f.verified),
      files: files.map((f) => ({ name: f.name, path: f.path, verified: f.verified, sha256: f.sha256 })),
      classes: dataset.classNames.map((name, i) => ({ name, train: trainCounts[i], test: testCounts[i] })),
    });
  };
  data
    .command('fetch')
    .description('find a dataset locally or download it into the user cache, and verify it')
    .option('--dataset <name>', 'fashion-mnist, mnist or kmnist', 'fashion-mnist')
    .option('--data-dir <dir>', 'use this folder instead of searching')
    .action((opts: { dataDir?: string; dataset: string }) => fetchAndReport(opts, false));
  data
    .command('info')
    .description('where the files are, counts, class balance, and whether they are verified')
    .option('--dataset <name>', 'fashion-mnist, mnist or kmnist', 'fashion-mnist')
    .option('--data-dir <dir>', 'use this folder instead of searching')
    .action((opts: { dataDir?: string; dataset: string }) => fetchAndReport(opts, true));
}

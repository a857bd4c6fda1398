/**
 * `imgclf predict --results-file F PATH...`: batch prediction over files, folders, globs, lists
 * or stdin into a CSV or JSONL file, resumable and shardable (node/predict/ does the work; this
 * file parses the flags and shows progress).
 */
import { UserError } from '../../core/errors.js';
import { createEngine, ENGINES, type EngineName } from '../../node/export/engine.js';
import { predictBatches } from '../../node/predict/batch.js';
import { expandPaths, inShard, parseShard, type Shard, shardFromEnv } from '../../node/predict/paths.js';
import { appendRows, closeResults, openResults } from '../../node/predict/results.js';
import type { LoadedRun } from '../../node/run/rundir.js';
import type { Output } from '../output.js';

/** Top-k written per row unless --top-k says otherwise (capped at the class count). */
export const RESULTS_TOP_K = 5;

export interface BatchFlags {
  resultsFile: string;
  topK?: number;
  batchSize: number;
  shard?: string;
  shards?: number;
  engine: string;
}

/** The engine --engine names, checked. */
export function engineName(name: string): EngineName {
  if (!(ENGINES as readonly string[]).includes(name))
    throw new UserError(`--engine must be one of ${ENGINES.join(', ')} (got '${name}')`);
  return name as EngineName;
}

/** The shard --shard K/N or --shards N (index from the scheduler) asks for, if any. */
export function shardOf(flags: { shard?: string; shards?: number }): Shard | undefined {
  if (flags.shard !== undefined && flags.shards !== undefined)
    throw new UserError('give --shard K/N or --shards N, not both');
  if (flags.shard !== undefined) return parseShard(flags.shard);
  if (flags.shards !== undefined) return shardFromEnv(flags.shards);
  return undefined;
}

export async function predictToFile(
  run: LoadedRun,
  args: string[],
  flags: BatchFlags,
  out: Output,
): Promise<void> {
  if (args.length === 0)
    throw new UserError('--results-file needs images: give files, folders, globs, @list.txt or - (stdin)');
  if (!(flags.batchSize >= 1))
    throw new UserError(`--batch-size must be at least 1 (got ${flags.batchSize})`);
  const shard = shardOf(flags);
  const names = run.metadata.classNames;
  const k = Math.min(flags.topK ?? RESULTS_TOP_K, names.length);
  const engine = await createEngine(engineName(flags.engine), run);
  const results = await openResults(flags.resultsFile, k);
  if (results.cut > 0)
    out.line(
      `${flags.resultsFile}: removed an unfinished last line (${results.cut} bytes) left by a stopped run`,
    );

  // The total for the bar and its ETA: one walk that only counts, unless stdin is the input
  // (it can be read once only).
  let total: number | undefined;
  if (!args.includes('-')) {
    total = 0;
    for await (const _ of inShard(expandPaths(args), shard)) total++;
  }
  const bar = out.rateProgress(total, 'predicting', 'images');
  const start = performance.now();
  let predicted = 0;
  const rate = () => predicted / Math.max((performance.now() - start) / 1000, 1e-9);
  try {
    const counts = await predictBatches({
      engine,
      metadata: run.metadata,
      paths: inShard(expandPaths(args), shard),
      isDone: (p) => results.resume.done(p),
      batchSize: flags.batchSize,
      topK: k,
      async onBatch(rows, c) {
        await appendRows(results, rows, k);
        predicted = c.rows;
        bar.update(c.rows + c.skipped, rate());
        // --json: a progress line per batch on stderr (stdout keeps its one JSON object).
        if (out.opts.json)
          process.stderr.write(
            JSON.stringify({
              progress: {
                done: c.rows + c.skipped,
                total: total ?? null,
                rows: c.rows,
                images_per_second: Number(rate().toFixed(1)),
                rss_mb: Math.round(process.memoryUsage.rss() / 2 ** 20),
              },
            }) + '\n',
          );
      },
    });
    bar.stop();
    const seconds = (performance.now() - start) / 1000;
    const where = shard ? ` (shard ${shard.index}/${shard.count})` : '';
    out.line(
      `wrote ${counts.rows} rows to ${flags.resultsFile}${where}: ${counts.rows - counts.errors} predicted, ` +
        `${counts.errors} unreadable, ${counts.skipped} already there; ${seconds.toFixed(1)} s, ` +
        `${rate().toFixed(1)} images/s on ${engine.name}`,
    );
    out.json({
      results_file: flags.resultsFile,
      format: results.format,
      rows: counts.rows,
      errors: counts.errors,
      skipped: counts.skipped,
      cut_bytes: results.cut,
      shard: shard ?? null,
      engine: engine.name,
      seconds,
      images_per_second: rate(),
      // maxRSS is in kilobytes.
      peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    });
  } finally {
    bar.stop();
    await closeResults(results);
    await engine.dispose();
  }
}

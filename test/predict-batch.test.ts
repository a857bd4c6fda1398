/**
 * Batch prediction and scoring at scale, through the CLI as a user runs it: `predict
 * --results-file` over a folder (nested, with a corrupt file and a non-image) into CSV and
 * JSONL, a killed job resumed, shards (N = 1, 2, 3 at once, merged), @list and stdin, the ONNX engine, bounded memory over
 * 2000 images; `evaluate --data` on a labelled folder with its report in --out.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { csvParseRows } from 'd3-dsv';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { BIN, cli, cliCwd, expectCleanError, tempDir } from './helpers.js';

let work = '';
let run = '';
let library = '';
let env: Record<string, string> = {};
/** The rows a full run over `library` gives: 200 + 8 nested images and the corrupt file. */
const ROWS = 209;

const rowsOf = (file: string): { path: string; label?: string; error?: string }[] =>
  file.endsWith('.csv')
    ? csvParseRows(readFileSync(file, 'utf8'))
        .slice(1)
        .map((r) => ({ path: r[0], label: r[1] || undefined, error: r.at(-1) || undefined }))
    : readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { path: string; label?: string; error?: string });

const pathsOf = (file: string) => rowsOf(file).map((r) => r.path);

/** Code-unit order, as `LC_ALL=C sort` orders lines. */
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * `imgclf predict --run RUN LIBRARY --results-file FILE ...extra` as its own process, not
 * waited for, so that shards run side by side as a scheduler runs them; resolves with FILE.
 */
function cliAsync(extra: string[], file: string, extraEnv: Record<string, string> = {}): Promise<string> {
  const child = spawn(
    process.execPath,
    [BIN, 'predict', '--run', run, library, '--results-file', file, ...extra],
    { cwd: cliCwd(), env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0 ? resolve(file) : reject(new Error(`${extra.join(' ')}: exit ${code}: ${stderr}`)),
    ),
  );
}

/** Every file of a folder with its SHA-256: the run directory must stay as it was. */
function digest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

beforeAll(async () => {
  work = tempDir();
  env = { XDG_CACHE_HOME: path.join(work, 'cache') };
  // A labelled folder with train/ and test/, for a tiny run and for evaluate --data.
  const data = path.join(work, 'data');
  await writeShapesFolder(path.join(data, 'train'), { perClass: 24, seed: 5, minSize: 20, maxSize: 32 });
  await writeShapesFolder(path.join(data, 'test'), { perClass: 8, seed: 6, minSize: 20, maxSize: 32 });
  run = path.join(work, 'run');
  const r = cli(
    [
      'train',
      '--data',
      data,
      '--channels',
      '1',
      '--image-size',
      '16',
      '--epochs',
      '6',
      '--out',
      run,
      '--json',
    ],
    env,
  );
  expect(r.code, r.stderr).toBe(0);
  // The library to predict: 200 images, 8 more two folders down, a corrupt PNG, a text file.
  library = path.join(work, 'library');
  const files = await writeShapesFolder(library, { perClass: 50, seed: 9, minSize: 16, maxSize: 28 });
  await writeShapesFolder(path.join(library, 'nested', 'deeper'), { perClass: 2, seed: 10, minSize: 16 });
  const png = readFileSync(files.find((f) => f.endsWith('.png'))!);
  writeFileSync(path.join(library, 'circle', 'corrupt.png'), png.subarray(0, png.length >> 1));
  writeFileSync(path.join(library, 'notes.txt'), 'not an image\n');
}, 300_000);

describe('predict --results-file', () => {
  it('writes one CSV row per image, nested ones too, the corrupt file as an error row', () => {
    const file = path.join(work, 'all.csv');
    const r = cli(['predict', '--run', run, library, '--results-file', file, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ rows: ROWS, errors: 1, skipped: 0, format: 'csv' });
    const header = readFileSync(file, 'utf8').split('\n')[0];
    expect(header).toBe(
      'path,label,probability,top1_label,top1_probability,top2_label,top2_probability,top3_label,top3_probability,top4_label,top4_probability,error',
    );
    const rows = rowsOf(file);
    expect(rows).toHaveLength(ROWS);
    const bad = rows.filter((x) => x.error);
    expect(bad.map((x) => path.basename(x.path))).toEqual(['corrupt.png']);
    expect(bad[0].error).toMatch(/cannot decode the image/);
    expect(rows.some((x) => x.path.includes(path.join('nested', 'deeper')))).toBe(true);
    expect(rows.some((x) => x.path.endsWith('notes.txt'))).toBe(false);
    // The stable order: sorted by the path relative to the folder.
    const rel = rows.map((x) => path.relative(library, x.path).split(path.sep).join('/'));
    expect(rel).toEqual([...rel].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  });

  it('writes JSONL with the same rows, and a rerun skips them all', () => {
    const file = path.join(work, 'all.jsonl');
    const r = cli(['predict', '--run', run, library, '--results-file', file, '--top-k', '2', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const rows = rowsOf(file) as { path: string; label?: string; top?: unknown[]; error?: string }[];
    expect(rows).toHaveLength(ROWS);
    expect(rows.find((x) => !x.error)!.top).toHaveLength(2);
    expect(rows.map((x) => x.label)).toEqual(rowsOf(path.join(work, 'all.csv')).map((x) => x.label));
    const again = cli(
      ['predict', '--run', run, library, '--results-file', file, '--top-k', '2', '--json'],
      env,
    );
    expect(again.json).toMatchObject({ rows: 0, skipped: ROWS });
    expect(rowsOf(file)).toHaveLength(ROWS);
  });

  it('a killed job, resumed, loses and repeats no row (a cut-short last line is removed)', async () => {
    const file = path.join(work, 'killed.csv');
    const child = spawn(
      process.execPath,
      [BIN, 'predict', '--run', run, library, '--results-file', file, '--batch-size', '4'],
      { cwd: cliCwd(), env: { ...process.env, ...env }, stdio: 'ignore' },
    );
    const lines = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').length : 0);
    while (lines() < 40 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const before = rowsOf(file).length;
    expect(before).toBeGreaterThan(30);
    expect(before).toBeLessThan(ROWS);
    // What a kill in the middle of a write leaves: part of a row, no newline.
    appendFileSync(file, `${path.join(library, 'square', 'square-1')}`);
    const r = cli(
      ['predict', '--run', run, library, '--results-file', file, '--batch-size', '4', '--json'],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed an unfinished last line/);
    expect(r.json).toMatchObject({ skipped: before, rows: ROWS - before });
    const paths = pathsOf(file);
    expect(new Set(paths).size).toBe(paths.length);
    expect(paths).toEqual(pathsOf(path.join(work, 'all.csv')));
  });

  it('--shard K/N for N = 1, 2, 3, run as N processes at once: disjoint, complete, merged equal to one run', async () => {
    const whole = path.join(work, 'all.csv');
    const all = new Set(pathsOf(whole));
    expect(all.size).toBe(ROWS);
    for (const n of [1, 2, 3]) {
      const dir = path.join(work, `shards-${n}`);
      mkdirSync(dir);
      const ks = Array.from({ length: n }, (_, k) => k);
      const byFlag = await Promise.all(
        ks.map((k) => cliAsync(['--shard', `${k}/${n}`], path.join(dir, `part-${k}.csv`))),
      );
      const shards = byFlag.map((file) => pathsOf(file));
      // Disjoint and complete: as many rows as the whole, and every path of it.
      expect(shards.flat()).toHaveLength(all.size);
      expect(new Set(shards.flat())).toEqual(all);
      // Position K mod N of the walk: each share is every N-th row of the whole, in order.
      const order = pathsOf(whole);
      ks.forEach((k) => expect(shards[k]).toEqual(order.filter((_, i) => i % n === k)));

      // --shards N with the index from the scheduler gives the same shares: a Kubernetes
      // Indexed Job counts from 0, a Slurm array from its own first id (here 1).
      const fromK8s = await Promise.all(
        ks.map((k) =>
          cliAsync(['--shards', String(n)], path.join(dir, `k8s-${k}.csv`), {
            JOB_COMPLETION_INDEX: String(k),
          }),
        ),
      );
      const fromSlurm = await Promise.all(
        ks.map((k) =>
          cliAsync(['--shards', String(n)], path.join(dir, `slurm-${k}.csv`), {
            SLURM_ARRAY_TASK_ID: String(k + 1),
            SLURM_ARRAY_TASK_MIN: '1',
          }),
        ),
      );
      ks.forEach((k) => {
        expect(pathsOf(fromK8s[k])).toEqual(shards[k]);
        expect(pathsOf(fromSlurm[k])).toEqual(shards[k]);
      });

      // The merge docs/deploy.md gives: one header, every part's rows, sorted by path.
      const merged = path.join(dir, 'merged.csv');
      const sh = spawnSync(
        'sh',
        ['-c', '{ head -n 1 part-0.csv; tail -q -n +2 part-*.csv | LC_ALL=C sort; } > merged.csv'],
        { cwd: dir, encoding: 'utf8' },
      );
      expect(sh.status, sh.stderr).toBe(0);
      const [mergedHeader, ...mergedRows] = readFileSync(merged, 'utf8').trimEnd().split('\n');
      const [wholeHeader, ...wholeRows] = readFileSync(whole, 'utf8').trimEnd().split('\n');
      expect(mergedHeader).toBe(wholeHeader);
      // The same rows, labels and probabilities included, whatever batches they were in. An
      // error row keeps its path and kind only: libvips words one damaged PNG differently from
      // run to run ('libpng read error' or 'Warning treated as error ...').
      const comparable = (line: string) =>
        line.endsWith(',')
          ? line
          : line.replace(/,cannot decode the image \(.*\)$/, ',cannot decode the image');
      expect(mergedRows.map(comparable)).toEqual([...wholeRows].sort(byCodeUnits).map(comparable));
      expect(new Set(mergedRows.map(comparable))).toEqual(new Set(wholeRows.map(comparable)));
      expect(mergedRows.filter((l) => !l.endsWith(','))).toHaveLength(1);
    }
  }, 300_000);

  it('refuses a shard index out of range, and --shards without a scheduler index', () => {
    const file = path.join(work, 'k8s-bad.jsonl');
    expectCleanError(
      cli(['predict', '--run', run, library, '--results-file', file, '--shard', '3/3'], env),
      /--shard: the shard index must be 0 to 2 \(got 3\)/,
    );
    expectCleanError(
      cli(['predict', '--run', run, library, '--results-file', file, '--shards', '3'], {
        ...env,
        JOB_COMPLETION_INDEX: '',
        SLURM_ARRAY_TASK_ID: '',
      }),
      /--shards N takes the shard index from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID/,
    );
  });

  it('reads paths from @list.txt and from stdin', () => {
    const some = pathsOf(path.join(work, 'all.csv')).slice(10, 17);
    const list = path.join(work, 'list.txt');
    writeFileSync(list, some.join('\n') + '\n');
    const fromList = path.join(work, 'list.csv');
    const r = cli(['predict', '--run', run, `@${list}`, '--results-file', fromList], env);
    expect(r.code, r.stderr).toBe(0);
    expect(pathsOf(fromList)).toEqual(some);
    const fromStdin = path.join(work, 'stdin.jsonl');
    const s = spawnSync(process.execPath, [BIN, 'predict', '--run', run, '-', '--results-file', fromStdin], {
      cwd: cliCwd(),
      env: { ...process.env, ...env },
      input: some.join('\r\n'),
      encoding: 'utf8',
    });
    expect(s.status, s.stderr).toBe(0);
    expect(pathsOf(fromStdin)).toEqual(some);
  });

  it('--engine onnx gives the same top-1 labels as tfjs', () => {
    const file = path.join(work, 'onnx.jsonl');
    const r = cli(
      ['predict', '--run', run, library, '--results-file', file, '--engine', 'onnx', '--json'],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.engine).toBe('onnx');
    expect(rowsOf(file).map((x) => x.label)).toEqual(rowsOf(path.join(work, 'all.csv')).map((x) => x.label));
  });

  it('refuses other results formats and an unknown engine in one line', () => {
    expectCleanError(
      cli(['predict', '--run', run, library, '--results-file', path.join(work, 'r.parquet')], env),
      /Parquet results are not supported; write \.csv or \.jsonl/,
    );
    expectCleanError(
      cli(
        ['predict', '--run', run, library, '--results-file', path.join(work, 'r.csv'), '--engine', 'trt'],
        env,
      ),
      /--engine must be one of tfjs, onnx/,
    );
  });

  it('keeps memory bounded over 2000+ images', async () => {
    const many = path.join(work, 'many');
    await writeShapesFolder(many, { perClass: 520, seed: 11, minSize: 12, maxSize: 16 });
    const file = path.join(work, 'many.jsonl');
    const r = cli(['predict', '--run', run, many, '--results-file', file, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.rows).toBe(2080);
    const progress = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{"progress"'))
      .map((l) => (JSON.parse(l) as { progress: { done: number; rss_mb: number } }).progress);
    // From the middle on: V8 lets the heap settle higher on Node 26 than on Node 20 (here
    // 8000 images peaked at 282 MB against 156 MB, flat after the first 2600 on both), so the
    // first images' growth says nothing of a leak; the second half's does.
    const atHalf = progress.find((p) => p.done >= 1040)!.rss_mb;
    const last = progress.at(-1)!.rss_mb;
    console.log(`RSS ${atHalf} MB at 1040 images, ${last} MB at 2080, peak ${r.json!.peak_rss_mb} MB`);
    expect(last - atHalf).toBeLessThan(64);
    expect(r.json!.peak_rss_mb as number).toBeLessThan(768);
  }, 300_000);
});

describe('evaluate --data', () => {
  it('scores a labelled folder as the run scores its own test split, report in --out, the run untouched', () => {
    const before = digest(run);
    const own = cli(['evaluate', '--run', run, '--json'], env);
    expect(own.code, own.stderr).toBe(0);
    const out = path.join(work, 'eval-report');
    const r = cli(
      ['evaluate', '--run', run, '--data', path.join(work, 'data', 'test'), '--out', out, '--json'],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.test_accuracy).toBe(own.json!.test_accuracy);
    expect(r.json!.count).toBe(32);
    expect(statSync(path.join(out, 'report.html')).size).toBeGreaterThan(1000);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain(path.join(work, 'data', 'test'));
    // A folder with train/ and test/ is scored on its test/.
    const split = cli(['evaluate', '--run', run, '--data', path.join(work, 'data'), '--json'], env);
    expect(split.json!.test_accuracy).toBe(own.json!.test_accuracy);
    const mistakes = r.json!.mistakes as { file: string | null }[];
    for (const m of mistakes) expect(m.file).toMatch(/\.(png|jpe?g|webp|gif)$/);
    expect(digest(run)).toEqual(before);
  });

  it('refuses data with classes the run lacks in one line, exit 2', async () => {
    const other = path.join(work, 'other');
    await writeShapesFolder(path.join(other, 'circle'), { perClass: 2, classes: ['circle'] });
    await writeShapesFolder(path.join(other, 'hexagon'), { perClass: 2, classes: ['square'] });
    expectCleanError(
      cli(['evaluate', '--run', run, '--data', other], env),
      /has classes the run was not trained on: hexagon \(the run's classes: circle, cross, square, triangle\)/,
    );
  });
});

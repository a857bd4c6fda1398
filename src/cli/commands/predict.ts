/**
 * `imgclf predict`: classify test images (as the seed's prediction step) or image files, printed
 * to the terminal; with --results-file, any number of images into a CSV or JSONL file
 * (predict-batch.ts).
 */
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { selectBackend } from '../../backend/index.js';
import { displayName } from '../../core/data/classes.js';
import { imageSize, pixelsAsFloat } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import { predictProbabilities, topK } from '../../core/predict.js';
import { createEngine } from '../../node/export/engine.js';
import { prepareImage } from '../../node/image.js';
import { DEFAULT_BATCH_SIZE } from '../../node/predict/batch.js';
import { expandPaths } from '../../node/predict/paths.js';
import { type ShownTestImage, writeFilePicture, writeTestGrid } from '../../node/report/annotate.js';
import { loadRunWithData } from '../../node/run/data.js';
import { loadRun } from '../../node/run/rundir.js';
import { type GlobalOptions, withRunLog, numberArg, Output } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';
import { type BatchFlags, engineName, predictToFile, RESULTS_TOP_K } from './predict-batch.js';

/** Classes shown per file on the terminal unless --top-k says otherwise. */
const TERMINAL_TOP_K = 3;

type PredictOptions = RunOptions &
  Partial<BatchFlags> & { batchSize: number; engine: string; count: number; out?: string };

export interface Prediction {
  file: string | null;
  index: number | null;
  true: string | null;
  label: string;
  probabilities: number[];
}

/** A 28x28 grayscale image as terminal block art (two pixel rows per line). */
export function asciiImage(pixels: ArrayLike<number>, width: number, height: number): string[] {
  const ramp = ' .:-=+*#%@';
  const lines: string[] = [];
  for (let y = 0; y < height; y += 2) {
    let line = '';
    for (let x = 0; x < width; x++) {
      const v = (pixels[y * width + x] + (y + 1 < height ? pixels[(y + 1) * width + x] : 0)) / 2;
      line += ramp[Math.min(ramp.length - 1, Math.floor(v * ramp.length))];
    }
    lines.push(line);
  }
  return lines;
}

export function registerPredict(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(
    program
      .command('predict')
      .description(
        'classify image files, folders or lists (into a CSV/JSONL file with --results-file), or show the first test images with true and predicted labels',
      )
      .argument(
        '[paths...]',
        'image files, folders (walked for images), quoted globs, @list.txt (a path per line) or - (paths on stdin)',
      ),
  )
    .option(
      '--top-k <k>',
      `how many classes to give per image (default ${TERMINAL_TOP_K} on the terminal, ${RESULTS_TOP_K} in a results file)`,
      numberArg('--top-k', true),
    )
    .option('-n, --count <n>', 'test images to show when no files are given', numberArg('--count', true), 6)
    .option('--out <dir>', 'also write an annotated picture per image (a grid for test images) here')
    .option(
      '--results-file <file>',
      'write one row per image to this .csv or .jsonl file; a rerun resumes it, skipping the images already there',
    )
    .option(
      '--batch-size <n>',
      'images per batch with --results-file',
      numberArg('--batch-size', true),
      DEFAULT_BATCH_SIZE,
    )
    .option('--shard <K/N>', 'with --results-file: only every image at position K mod N (K from 0)')
    .option(
      '--shards <N>',
      'as --shard, with K from JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID (Slurm)',
      numberArg('--shards', true),
    )
    .option(
      '--engine <name>',
      'what runs the model: tfjs (the run itself) or onnx (its ONNX export on ONNX Runtime)',
      'tfjs',
    )
    .action(async (files: string[], opts: PredictOptions) => {
      const out = new Output(globals());
      const lang = out.lang;
      if (opts.topK !== undefined && opts.topK < 1)
        throw new UserError(`--top-k must be at least 1 (got ${opts.topK})`);
      const dir = runDirOf(opts);
      engineName(opts.engine);
      await selectBackend(opts.backend);
      if (opts.resultsFile !== undefined) {
        if (opts.out !== undefined)
          throw new UserError('--out draws a picture per image; it does not go with --results-file');
        const batch = { ...opts, resultsFile: opts.resultsFile };
        return predictToFile(await withRunLog((log) => loadRun(dir, log)), files, batch, out);
      }
      if (opts.shard !== undefined || opts.shards !== undefined)
        throw new UserError('--shard and --shards split the work of a --results-file; give one');
      const predictions: Prediction[] = [];
      const pictures: string[] = [];
      if (files.length === 0) {
        const { run, dataset } = await withRunLog((log) => loadRunWithData(dir, opts.dataDir, log));
        const shape = run.metadata.inputShape;
        const n = Math.min(opts.count, dataset.test.count);
        const row = imageSize(shape);
        const probs = predictProbabilities(
          run.model,
          pixelsAsFloat(dataset.test.images, 0, n * row),
          n,
          shape,
        );
        const names = run.metadata.classNames;
        const shown: ShownTestImage[] = [];
        for (let i = 0; i < n; i++) {
          const label = names[topK(probs[i], 1)[0]];
          const truth = names[dataset.test.labels[i]];
          predictions.push({
            file: null,
            index: i,
            true: truth,
            label,
            probabilities: Array.from(probs[i]),
          });
          const mark = label === truth ? 'ok' : 'WRONG';
          const art =
            shape[2] === 1
              ? asciiImage(pixelsAsFloat(dataset.test.images, i * row, row), shape[1], shape[0])
              : [];
          out.line(
            `#${i}  ${lang === 'zh' ? '真实' : 'true'}: ${displayName(truth, lang)}  ${lang === 'zh' ? '预测' : 'predicted'}: ${displayName(label, lang)}  ${mark}`,
          );
          for (const l of art) out.line('    ' + l);
          const pixels = pixelsAsFloat(dataset.test.images, i * row, row);
          shown.push({ pixels, truth: displayName(truth, lang), label: displayName(label, lang) });
        }
        if (opts.out) pictures.push(await writeTestGrid(opts.out, shown, shape, lang));
      } else {
        const run = await withRunLog((log) => loadRun(dir, log));
        const shape = run.metadata.inputShape;
        const names = run.metadata.classNames;
        const engine = await createEngine(engineName(opts.engine), run);
        const taken = new Set<string>();
        // Folders, globs and lists are expanded as for a results file, one line per image.
        for await (const file of expandPaths(files)) {
          let bytes: Buffer;
          try {
            bytes = await readFile(file);
          } catch {
            throw new UserError(`${file}: cannot read the file (does it exist?)`);
          }
          const { input, inverted } = await prepareImage(bytes, shape, run.metadata.preprocessing, file);
          const [p] = await engine.probabilities(input, 1);
          const top = topK(p, Math.min(opts.topK ?? TERMINAL_TOP_K, names.length));
          predictions.push({
            file,
            index: null,
            true: null,
            label: names[top[0]],
            probabilities: Array.from(p),
          });
          const ranked = top
            .map((i) => `${displayName(names[i], lang)} ${(p[i] * 100).toFixed(1)}%`)
            .join(', ');
          out.line(`${file}: ${ranked}${inverted ? '  (inverted: light background)' : ''}`);
          if (opts.out) {
            const t = top.map((i) => ({ label: displayName(names[i], lang), probability: p[i] }));
            const a = { bytes, name: file, input, shape, inverted, top: t, lang };
            pictures.push(await writeFilePicture(opts.out, taken, a));
          }
        }
        await engine.dispose();
      }
      for (const f of pictures) out.line(`wrote ${f}`);
      out.json(opts.out ? { predictions, pictures } : { predictions });
    });
}

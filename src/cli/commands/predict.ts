/** `imgclf predict`: classify test images (as the seed's prediction step) or image files. */
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { selectBackend } from '../../backend/index.js';
import { displayName } from '../../core/data/classes.js';
import { imageSize, pixelsAsFloat } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import { predictProbabilities, topK } from '../../core/predict.js';
import { prepareImage } from '../../node/image.js';
import { type ShownTestImage, writeFilePicture, writeTestGrid } from '../../node/report/annotate.js';
import { loadRunWithData } from '../../node/run/data.js';
import { loadRun } from '../../node/run/rundir.js';
import { type GlobalOptions, withRunLog, numberArg, Output } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';

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
      .description('classify image files, or show the first test images with true and predicted labels')
      .argument('[files...]', 'PNG or JPEG files (any size, colour or gray)'),
  )
    .option('--top-k <k>', 'how many classes to show per image', numberArg('--top-k', true), 3)
    .option('-n, --count <n>', 'test images to show when no files are given', numberArg('--count', true), 6)
    .option('--out <dir>', 'also write an annotated picture per image (a grid for test images) here')
    .action(async (files: string[], opts: RunOptions & { topK: number; count: number; out?: string }) => {
      const out = new Output(globals());
      const lang = out.lang;
      if (opts.topK < 1) throw new UserError(`--top-k must be at least 1 (got ${opts.topK})`);
      const dir = runDirOf(opts);
      await selectBackend(opts.backend);
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
        const taken = new Set<string>();
        for (const file of files) {
          let bytes: Buffer;
          try {
            bytes = await readFile(file);
          } catch {
            throw new UserError(`${file}: cannot read the file (does it exist?)`);
          }
          const { input, inverted } = await prepareImage(bytes, shape, run.metadata.preprocessing, file);
          const [p] = predictProbabilities(run.model, input, 1, shape);
          const top = topK(p, Math.min(opts.topK, names.length));
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
      }
      for (const f of pictures) out.line(`wrote ${f}`);
      out.json(opts.out ? { predictions, pictures } : { predictions });
    });
}

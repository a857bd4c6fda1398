/**
 * The run report: pictures and one HTML page made from a finished run (its history, metadata
 * and model) and one evaluation pass over the test set. `imgclf train` calls this after the
 * last epoch and `imgclf report` calls it on an existing run directory.
 *
 *   curves.png / curves.svg   train loss, train accuracy, test accuracy per epoch
 *   confusion.png             confusion matrix heatmap with class names
 *   predictions.png           the first test images, true / predicted under each, wrong ones framed red
 *   mistakes.png              the most confident mistakes
 *   report.html               all of the above, per-class metrics, timings and config, self-contained
 */
import type { Net } from '../../core/models/net.js';
import path from 'node:path';
import { displayName, type Lang } from '../../core/data/classes.js';
import { imageSize, pixelsAsFloat, type Split } from '../../core/data/dataset.js';
import type { RunMetadata } from '../run/rundir.js';
import { type EpochMetrics, type EvalResult, evaluate } from '../../core/train/loop.js';
import { confusionMatrix, perClassMetrics } from '../../core/train/metrics.js';
import { writeFileAtomic } from '../fs.js';
import { VERSION } from '../../core/version.js';
import { confusionSpec, curvesSpec } from './charts.js';
import { type GridItem, imageGrid } from './grid.js';
import { reportHtml } from './html.js';
import { FONT_FAMILY, hasCjkFont, renderVegaLite, svgToPng } from './render.js';
import { type Strings, strings } from './text.js';

/** Charts are rasterized at twice their CSS size so they stay sharp on high-density screens. */
export const CHART_SCALE = 2;
/** How many of the first test images predictions.png shows (the seed shows the first few). */
export const PREDICTION_COUNT = 24;
export const MISTAKE_COUNT = 16;

export const REPORT_FILES = [
  'curves.png',
  'curves.svg',
  'confusion.png',
  'predictions.png',
  'mistakes.png',
  'report.html',
] as const;

export interface ReportInput {
  dir: string;
  model: Net;
  test: Split;
  metadata: RunMetadata;
  history: EpochMetrics[];
  lang: Lang;
  log?: (message: string) => void;
  /** The pass over `test` when the caller made it already (with probabilities): not run twice. */
  evaluation?: EvalResult & { probabilities?: Float32Array };
  /** What `test` is when it is not the run's own test split (evaluate --data): the report says so. */
  dataName?: string;
}

export interface ReportResult {
  files: string[];
  accuracy: number;
  /** Seconds for the whole report, evaluation included. */
  seconds: number;
}

/** A file name that fits under a tile: long ones keep their end, where the number usually is. */
export function shortName(name: string, max = 22): string {
  return name.length <= max ? name : `…${name.slice(name.length - (max - 1))}`;
}

/** Test images with their true and predicted labels under each; wrong ones framed. */
export function predictionItems(
  indices: number[],
  test: Split,
  predicted: Int32Array,
  probabilities: Float32Array | undefined,
  labels: string[],
  t: Strings,
  rowSize: number,
  withProbability: boolean,
): GridItem[] {
  const k = labels.length;
  return indices.map((i) => {
    const truth = test.labels[i];
    const pred = predicted[i];
    const wrong = truth !== pred;
    const p = probabilities ? probabilities[i * k + pred] : undefined;
    const pct = withProbability && p !== undefined ? ` ${(p * 100).toFixed(0)}%` : '';
    const file = test.files?.[i];
    return {
      pixels: pixelsAsFloat(test.images, i * rowSize, rowSize),
      marked: wrong,
      captions: [
        { text: `${t.trueShort}: ${labels[truth]}`, color: '#222' },
        { text: `${t.predShort}: ${labels[pred]}${pct}`, color: wrong ? '#d62728' : '#2a8a2a', bold: wrong },
        // Folders: the file's name, so a mistake can be found (and fixed, when mislabelled).
        ...(file ? [{ text: shortName(path.basename(file)), color: '#555' }] : []),
      ],
    };
  });
}

/** How many of the most confused pairs the report lists. */
export const CONFUSED_PAIRS = 10;

/** The off-diagonal cells of a confusion matrix, largest first: which classes get mixed up. */
export function confusedPairs(
  confusion: number[][],
  labels: string[],
  count: number,
): { truth: string; predicted: string; count: number; share: number }[] {
  const cells: { truth: string; predicted: string; count: number; share: number }[] = [];
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((n, j) => {
      if (i !== j && n > 0)
        cells.push({ truth: labels[i], predicted: labels[j], count: n, share: n / total });
    });
  });
  return cells.sort((a, b) => b.count - a.count || b.share - a.share).slice(0, count);
}

/** Indices of wrong predictions, most confident first. */
export function confidentMistakes(
  labels: Uint8Array,
  predicted: Int32Array,
  probabilities: Float32Array,
  numClasses: number,
  count: number,
): number[] {
  const wrong: number[] = [];
  for (let i = 0; i < labels.length; i++) if (labels[i] !== predicted[i]) wrong.push(i);
  const conf = (i: number) => probabilities[i * numClasses + predicted[i]];
  return wrong.sort((a, b) => conf(b) - conf(a) || a - b).slice(0, count);
}

export async function writeReport(input: ReportInput): Promise<ReportResult> {
  const start = performance.now();
  const { dir, metadata, history, test, lang } = input;
  const t = strings(lang);
  const shape = metadata.inputShape;
  const rowSize = imageSize(shape);
  const k = metadata.classNames.length;
  const labels = metadata.classNames.map((n) => displayName(n, lang));
  if (lang === 'zh' && !hasCjkFont())
    input.log?.('warning: no CJK font found; Chinese labels may not render (apt-get install fonts-noto-cjk)');

  const given = input.evaluation?.probabilities ? input.evaluation : undefined;
  const ev = given ?? evaluate(input.model, test, { shape, withProbabilities: true });
  const probabilities = ev.probabilities!;
  const confusion = confusionMatrix(ev.predicted, test.labels, k);
  const perClass = perClassMetrics(confusion);

  const curves = await renderVegaLite(
    curvesSpec(history, t, FONT_FAMILY, { best: metadata.bestEpoch, stoppedEarly: metadata.stoppedEarly }),
  );
  const curvesPng = await svgToPng(curves.svg, CHART_SCALE);
  const conf = await renderVegaLite(confusionSpec(confusion, labels, t, FONT_FAMILY));
  const confPng = await svgToPng(conf.svg, CHART_SCALE);

  const first = Array.from({ length: Math.min(PREDICTION_COUNT, test.count) }, (_, i) => i);
  const correct = first.filter((i) => ev.predicted[i] === test.labels[i]).length;
  const predictions = await imageGrid(
    predictionItems(first, test, ev.predicted, probabilities, labels, t, rowSize, false),
    { shape, title: t.predictionsTitle(first.length, correct) },
  );
  const mistakeIdx = confidentMistakes(test.labels, ev.predicted, probabilities, k, MISTAKE_COUNT);
  const mistakes = mistakeIdx.length
    ? await imageGrid(
        predictionItems(mistakeIdx, test, ev.predicted, probabilities, labels, t, rowSize, true),
        { shape, title: t.mistakesTitle(mistakeIdx.length) },
      )
    : null;

  // Folders: name each mistake's file, and link it relative to the report.
  const mistakeRows = mistakeIdx.map((i) => {
    const file = test.files?.[i];
    const pred = ev.predicted[i];
    return {
      index: i,
      file: file ? path.basename(file) : undefined,
      href: file ? encodeURI(path.relative(dir, file).split(path.sep).join('/')) : undefined,
      truth: labels[test.labels[i]],
      predicted: labels[pred],
      confidence: probabilities[i * k + pred],
    };
  });
  const html = reportHtml({
    dataName: input.dataName,
    confusedPairs: confusedPairs(confusion, labels, CONFUSED_PAIRS),
    mistakeRows,
    lang,
    t,
    metadata,
    history,
    labels,
    accuracy: ev.accuracy,
    loss: ev.loss,
    testCount: test.count,
    evalSeconds: ev.seconds,
    perClass,
    pictures: {
      curves: { png: curvesPng, width: curves.width, alt: t.curvesTitle },
      confusion: { png: confPng, width: conf.width, alt: t.confusionTitle },
      predictions: { png: predictions.png, width: predictions.layout.width, alt: t.predictions },
      mistakes: mistakes ? { png: mistakes.png, width: mistakes.layout.width, alt: t.mistakes } : null,
    },
    version: VERSION,
  });

  const files: [string, string | Buffer][] = [
    ['curves.png', curvesPng],
    ['curves.svg', curves.svg],
    ['confusion.png', confPng],
    ['predictions.png', predictions.png],
  ];
  // With no mistakes there is nothing to draw; an empty grid says so.
  files.push(['mistakes.png', mistakes?.png ?? (await imageGrid([], { shape, title: t.noMistakes })).png]);
  files.push(['report.html', html]);
  for (const [name, data] of files) await writeFileAtomic(path.join(dir, name), data);
  return {
    files: files.map(([name]) => path.join(dir, name)),
    accuracy: ev.accuracy,
    seconds: (performance.now() - start) / 1000,
  };
}

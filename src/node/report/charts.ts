/**
 * Vega-Lite specs for the report's charts, built from plain numbers (history, confusion
 * matrix, probabilities). No I/O here: the same specs can be rendered in a browser.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { EpochMetrics } from '../../core/train/loop.js';
import type { Strings } from './text.js';

/** Shared look: readable font sizes at 100%, the report's font stack. */
export function chartConfig(font: string) {
  return {
    font,
    view: { stroke: '#888' },
    axis: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal' as const, gridColor: '#e4e4e4' },
    legend: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal' as const },
    title: { fontSize: 15, subtitleFontSize: 12, anchor: 'start' as const, subtitleColor: '#555' },
  };
}

/**
 * Train loss, train accuracy and test accuracy per epoch on one axis, as d2l's Animator draws
 * them (its legend: train loss, train acc, test acc).
 */
/**
 * d2l's Animator picture: loss and accuracies per epoch. `best`, when given, marks the epoch
 * the run kept (the best by validation accuracy), with a note when early stopping ended it.
 */
export function curvesSpec(
  history: EpochMetrics[],
  t: Strings,
  font: string,
  marks: { best?: number; stoppedEarly?: { epoch: number; patience: number } } = {},
): TopLevelSpec {
  const series = [t.trainLoss, t.trainAcc, t.testAcc];
  const values = history.flatMap((m) => [
    { epoch: m.epoch, series: t.trainLoss, value: m.train_loss },
    { epoch: m.epoch, series: t.trainAcc, value: m.train_accuracy },
    { epoch: m.epoch, series: t.testAcc, value: m.test_accuracy },
  ]);
  const last = Math.max(1, ...history.map((m) => m.epoch));
  // d2l's x range is [1, epochs]; a one-epoch run is centred instead of drawn on the frame.
  const domain = last === 1 ? [0.5, 1.5] : [1, last];
  const lines = {
    data: { values },
    mark: { type: 'line' as const, point: { filled: true, size: 50 }, strokeWidth: 2.5 },
    encoding: {
      x: {
        field: 'epoch',
        type: 'quantitative',
        title: t.epoch,
        scale: { domain, nice: false },
        axis: { tickMinStep: 1, format: 'd' },
      },
      y: { field: 'value', type: 'quantitative', title: t.value, scale: { zero: false } },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        sort: series,
        // d2l's line colours and styles: blue solid, magenta dashed, green dash-dot.
        scale: { domain: series, range: ['#1f77b4', '#c03bc0', '#2ca02c'] },
        legend: {
          orient: 'bottom',
          direction: 'horizontal',
          symbolType: 'stroke',
          symbolStrokeWidth: 2.5,
          symbolSize: 500,
        },
      },
      strokeDash: {
        field: 'series',
        type: 'nominal',
        sort: series,
        // Same field, title and sort as colour, so Vega-Lite merges both into one legend.
        title: null,
        scale: {
          domain: series,
          range: [
            [1, 0],
            [8, 4],
            [8, 3, 2, 3],
          ],
        },
      },
    },
  };
  const head = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: marks.stoppedEarly
      ? {
          text: t.curvesTitle,
          subtitle: t.stoppedEarly(marks.stoppedEarly.epoch, marks.stoppedEarly.patience),
        }
      : { text: t.curvesTitle },
    width: 480,
    height: 300,
    config: chartConfig(font),
  };
  if (marks.best === undefined) return { ...head, ...lines } as TopLevelSpec;
  // A dashed rule at the kept epoch, labelled, over the curves.
  const rule = {
    data: { values: [{ epoch: marks.best, label: `${t.keptEpoch}: ${marks.best}` }] },
    layer: [
      {
        mark: { type: 'rule' as const, strokeDash: [4, 4], color: '#555555' },
        encoding: { x: { field: 'epoch', type: 'quantitative' as const } },
      },
      {
        mark: { type: 'text' as const, align: 'left' as const, dx: 4, dy: -130, color: '#555555' },
        encoding: { x: { field: 'epoch', type: 'quantitative' as const }, text: { field: 'label' } },
      },
    ],
  };
  return { ...head, layer: [lines, rule] } as TopLevelSpec;
}

/** Confusion heatmap: colour is the share of the true class (row), text is the count. */
export function confusionSpec(
  confusion: number[][],
  labels: string[],
  t: Strings,
  font: string,
): TopLevelSpec {
  const total = confusion.flat().reduce((a, b) => a + b, 0);
  const values = confusion.flatMap((row, i) => {
    const rowSum = row.reduce((a, b) => a + b, 0) || 1;
    return row.map((count, j) => ({
      true: labels[i],
      predicted: labels[j],
      count,
      share: count / rowSum,
    }));
  });
  const cell = Math.max(34, Math.min(56, Math.floor(520 / Math.max(labels.length, 1))));
  const side = cell * labels.length;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: t.confusionTitle, subtitle: t.confusionSubtitle(total) },
    width: side,
    height: side,
    data: { values },
    encoding: {
      x: {
        field: 'predicted',
        type: 'nominal',
        sort: labels,
        title: t.predictedClass,
        axis: { labelAngle: -40, orient: 'bottom' },
      },
      y: { field: 'true', type: 'nominal', sort: labels, title: t.trueClass },
    },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 1 },
        encoding: {
          color: {
            field: 'share',
            type: 'quantitative',
            title: t.share,
            scale: { scheme: 'blues', domain: [0, 1] },
            legend: { format: '.0%', gradientLength: Math.min(side, 240) },
          },
        },
      },
      {
        mark: { type: 'text', fontSize: labels.length > 12 ? 9 : 12 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.share > 0.5', value: 'white' }, value: '#222' },
          opacity: { condition: { test: 'datum.count === 0', value: 0.35 }, value: 1 },
        },
      },
    ],
    config: chartConfig(font),
  };
}

/** Horizontal bars of the top classes for one image. */
export function probabilitySpec(
  top: { label: string; probability: number }[],
  t: Strings,
  font: string,
): TopLevelSpec {
  const order = top.map((p) => p.label);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 220,
    height: Math.max(60, 26 * top.length),
    data: { values: top.map((p, i) => ({ ...p, rank: i })) },
    encoding: {
      y: { field: 'label', type: 'nominal', sort: order, title: null },
      x: {
        field: 'probability',
        type: 'quantitative',
        title: t.probability,
        scale: { domain: [0, 1] },
        axis: { format: '.0%', values: [0, 0.25, 0.5, 0.75, 1] },
      },
    },
    layer: [
      {
        mark: { type: 'bar', height: 16 },
        encoding: {
          color: { condition: { test: 'datum.rank === 0', value: '#1f77b4' }, value: '#9ecae1' },
        },
      },
      {
        mark: { type: 'text', align: 'left', dx: 4, fontSize: 12 },
        encoding: { text: { field: 'probability', type: 'quantitative', format: '.1%' } },
      },
    ],
    config: chartConfig(font),
  };
}

/**
 * The learning-rate range test (core/train/lr-find.ts): loss against learning rate on a log
 * axis, the smoothed curve over the per-batch points, and a rule at the suggested rate.
 */
export function lrFindSpec(
  r: { lrs: number[]; losses: number[]; smoothed: number[]; suggested: number },
  t: Strings,
  font: string,
): TopLevelSpec {
  const finite = (v: number) => (Number.isFinite(v) ? v : null);
  const values = r.lrs.flatMap((lr, i) => [
    { lr, series: t.rawLoss, loss: finite(r.losses[i]) },
    { lr, series: t.smoothedLoss, loss: finite(r.smoothed[i]) },
  ]);
  // The y range follows the smoothed curve up to a little above its start, so the blow-up at
  // the end does not flatten the interesting part.
  const top = Math.min(Math.max(...r.smoothed.filter(Number.isFinite)), (r.smoothed[0] ?? 1) * 1.5);
  const low = Math.min(...r.smoothed.filter(Number.isFinite), ...r.losses.filter(Number.isFinite));
  const x = {
    field: 'lr',
    type: 'quantitative' as const,
    title: t.learningRate,
    scale: { type: 'log' as const },
    axis: { format: '.0e' },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: t.lrFindTitle, subtitle: `${t.suggested}: ${r.suggested.toPrecision(2)}` },
    width: 480,
    height: 300,
    layer: [
      {
        data: { values },
        transform: [{ filter: 'datum.loss !== null' }],
        mark: { type: 'line', strokeWidth: 2, clip: true },
        encoding: {
          x,
          y: {
            field: 'loss',
            type: 'quantitative',
            title: t.loss,
            scale: { domain: [low * 0.95, top], nice: false },
          },
          color: {
            field: 'series',
            type: 'nominal',
            title: null,
            scale: { domain: [t.rawLoss, t.smoothedLoss], range: ['#c6dbef', '#1f77b4'] },
            legend: { orient: 'bottom', direction: 'horizontal' },
          },
        },
      },
      {
        data: { values: [{ lr: r.suggested, label: `${t.suggested}: ${r.suggested.toPrecision(2)}` }] },
        layer: [
          { mark: { type: 'rule', strokeDash: [4, 4], color: '#d62728' }, encoding: { x } },
          {
            mark: { type: 'text', align: 'left', dx: 4, dy: -130, color: '#d62728' },
            encoding: { x, text: { field: 'label' } },
          },
        ],
      },
    ],
    config: chartConfig(font),
  } as TopLevelSpec;
}

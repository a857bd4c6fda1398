/**
 * report.html: one self-contained page. Every picture is inlined as a data: URL and the page
 * carries a Content-Security-Policy that forbids loading anything else, so it opens the same
 * offline, from an e-mail attachment or a CI artifact.
 */
import type { Lang } from '../../core/data/classes.js';
import type { RunMetadata } from '../run/rundir.js';
import type { EpochMetrics } from '../../core/train/loop.js';
import type { ClassMetrics } from '../../core/train/metrics.js';
import { FONT_FAMILY } from './render.js';
import type { Strings } from './text.js';

export interface Picture {
  png: Buffer;
  /** Displayed width in CSS pixels (charts are rendered at 2x for sharp screens). */
  width: number;
  alt: string;
}

export interface PageInput {
  lang: Lang;
  t: Strings;
  metadata: RunMetadata;
  history: EpochMetrics[];
  /** Class names as displayed. */
  labels: string[];
  accuracy: number;
  loss: number;
  testCount: number;
  evalSeconds: number;
  perClass: ClassMetrics[];
  pictures: { curves: Picture; confusion: Picture; predictions: Picture; mistakes: Picture | null };
  /** Off-diagonal cells of the confusion matrix, largest first. */
  confusedPairs: { truth: string; predicted: string; count: number; share: number }[];
  /** The mistakes drawn in mistakes.png, in order, with their files when the data has them. */
  mistakeRows: {
    index: number;
    file?: string;
    href?: string;
    truth: string;
    predicted: string;
    confidence: number;
  }[];
  version: string;
  /** The data scored, when not the run's own test split (evaluate --data). */
  dataName?: string;
}

export function escapeHtml(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&#39;', '"': '&quot;' })[c]!,
  );
}

function img(p: Picture): string {
  return `<img src="data:image/png;base64,${p.png.toString('base64')}" width="${Math.round(p.width)}" alt="${escapeHtml(p.alt)}">`;
}

function tableHtml(header: string[], rows: (string | number)[][], numeric: boolean[] = []): string {
  const cell = (v: string | number, i: number, tag: string) =>
    `<${tag}${numeric[i] ? ' class="num"' : ''}>${escapeHtml(String(v))}</${tag}>`;
  return (
    `<table><thead><tr>${header.map((h, i) => cell(h, i, 'th')).join('')}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${r.map((v, i) => cell(v, i, 'td')).join('')}</tr>`).join('') +
    '</tbody></table>'
  );
}

/** The mistakes as a table; a file name links to the image (relative to report.html). */
function mistakesTable(p: PageInput): string {
  const { t } = p;
  const rows = p.mistakeRows.map((m, i) => {
    const name = m.file
      ? m.href
        ? `<a href="${escapeHtml(m.href)}">${escapeHtml(m.file)}</a>`
        : escapeHtml(m.file)
      : `#${m.index}`;
    return `<tr><td class="num">${i + 1}</td><td>${name}</td><td>${escapeHtml(m.truth)}</td><td>${escapeHtml(m.predicted)}</td><td class="num">${(m.confidence * 100).toFixed(1)}%</td></tr>`;
  });
  const head = [
    '#',
    p.mistakeRows.some((m) => m.file) ? t.file : t.testIndex,
    t.truth,
    t.predictedAs,
    t.confidence,
  ];
  return `<table><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function section(id: string, title: string, body: string): string {
  return `<section id="${id}"><h2>${escapeHtml(title)}</h2>\n${body}\n</section>`;
}

const f4 = (x: number) => x.toFixed(4);
const f3 = (x: number) => x.toFixed(3);
const s2 = (x: number) => x.toFixed(2);

export function reportHtml(p: PageInput): string {
  const { t, metadata: meta, history } = p;
  const cfg = meta.config ?? {};
  const trainSeconds = history.reduce((a, m) => a + m.seconds, 0);
  const evalSeconds = history.reduce((a, m) => a + (m.eval_seconds ?? 0), 0);
  const data = p.dataName ?? meta.dataset;
  const title = `${t.reportTitle}: ${meta.model} · ${data}`;
  const summary = tableHtml(
    [t.setting, t.valueCol],
    [
      [t.testAccuracy, f4(p.accuracy)],
      [t.testLoss, f4(p.loss)],
      [t.model, meta.model],
      [t.dataset, `${data} (${p.testCount} ${t.images}, ${meta.inputShape.join('×')})`],
      [t.epochs, String(history.length)],
      ...(meta.fineTuned
        ? [
            [
              t.fineTuned(meta.fineTuned.unfrozen.length, meta.fineTuned.backbone.source),
              meta.fineTuned.unfrozen.join(', '),
            ],
          ]
        : []),
      ...(meta.bestEpoch !== undefined ? [[t.bestEpoch, String(meta.bestEpoch)]] : []),
      ...(meta.stoppedEarly
        ? [[t.stoppedEarly(meta.stoppedEarly.epoch, meta.stoppedEarly.patience), '']]
        : []),
      [t.backend, meta.backend],
      [t.created, meta.created],
    ],
  );
  // A fine-tuning run's epochs say their phase: the head alone, or backbone and head.
  const epochCell = (m: EpochMetrics): string | number =>
    m.phase === undefined ? m.epoch : `${m.epoch} (${m.phase === 'head' ? t.phaseHead : t.phaseFineTune})`;
  const curves =
    '<div class="row">' +
    img(p.pictures.curves) +
    tableHtml(
      [t.epoch, t.trainLoss, t.trainAcc, t.testAcc, t.testLoss],
      history.map((m) => [
        epochCell(m),
        f4(m.train_loss),
        f4(m.train_accuracy),
        f4(m.test_accuracy),
        f4(m.test_loss),
      ]),
      [true, true, true, true, true],
    ) +
    '</div>';
  const perClass = tableHtml(
    [t.klass, t.precision, t.recall, t.f1, t.support],
    p.perClass.map((m, i) => [p.labels[i], f3(m.precision), f3(m.recall), f3(m.f1), m.support]),
    [false, true, true, true, true],
  );
  const timings =
    tableHtml(
      [t.epoch, t.trainSeconds, t.evalSeconds],
      [
        ...history.map((m) => [epochCell(m), s2(m.seconds), s2(m.eval_seconds ?? 0)]),
        [t.total, s2(trainSeconds), s2(evalSeconds)],
      ],
      [true, true, true],
    ) +
    `<p>${escapeHtml(t.reportEval)}: ${p.testCount} ${escapeHtml(t.images)}, ${s2(p.evalSeconds)} s ` +
    `(${Math.round(p.testCount / Math.max(p.evalSeconds, 1e-9))} ${escapeHtml(t.imagesPerSecond)})</p>`;
  const configRows: (string | number)[][] = Object.entries(cfg)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
  configRows.push(
    ['inputShape', JSON.stringify(meta.inputShape)],
    ['preprocessing', JSON.stringify(meta.preprocessing)],
    [t.versions, `imgclf ${meta.imgclfVersion}, tfjs ${meta.tfjsVersion}`],
  );
  const body = [
    `<h1>${escapeHtml(title)}</h1>`,
    section('summary', t.summary, summary),
    section('curves', t.curves, curves),
    section('confusion', t.confusion, img(p.pictures.confusion)),
    section(
      'confused-pairs',
      t.confusedPairs,
      p.confusedPairs.length
        ? tableHtml(
            [t.truth, t.predictedAs, t.count, t.shareOfClass],
            p.confusedPairs.map((c) => [c.truth, c.predicted, c.count, `${(c.share * 100).toFixed(1)}%`]),
            [false, false, true, true],
          )
        : `<p>${escapeHtml(t.noConfusion)}</p>`,
    ),
    section('per-class', t.perClass, perClass),
    section('predictions', t.predictions, img(p.pictures.predictions)),
    section(
      'mistakes',
      t.mistakes,
      p.pictures.mistakes
        ? img(p.pictures.mistakes) + mistakesTable(p)
        : `<p>${escapeHtml(t.noMistakes)}</p>`,
    ),
    section('timings', t.timings, timings),
    section('config', t.config, tableHtml([t.setting, t.valueCol], configRows)),
    `<footer>${escapeHtml(t.generated)} imgclf ${escapeHtml(p.version)}</footer>`,
  ].join('\n');
  return `<!doctype html>
<html lang="${p.lang === 'zh' ? 'zh-CN' : 'en'}">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: ${FONT_FAMILY}; margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #222; line-height: 1.4; }
h1 { font-size: 24px; margin-bottom: 8px; }
h2 { font-size: 19px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
.row { display: flex; flex-wrap: wrap; gap: 8px 32px; align-items: flex-start; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f4f4f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { margin-top: 32px; color: #777; font-size: 13px; }
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

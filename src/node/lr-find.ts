/**
 * `imgclf lr-find`: the learning-rate range test (core/train/lr-find.ts) on the data and
 * model a plan names, drawn as a picture like the report's, with the suggestion.
 */
import path from 'node:path';
import { selectBackend } from '../backend/index.js';
import { create } from '../core/models/index.js';
import { dataSourceOf, fitOptionsFor, optimizerFor, sizeToData, type TrainConfig } from '../core/plan.js';
import { lrFind, type LrFindResult } from '../core/train/lr-find.js';
import { loadDataset } from './data/load.js';
import { writeFileAtomic } from './fs.js';
import { lrFindSpec } from './report/charts.js';
import { FONT_FAMILY, renderVegaLite, svgToPng } from './report/render.js';
import { strings } from './report/text.js';

export interface LrFindRun extends LrFindResult {
  /** The pictures and the figures, written into the output folder. */
  files: string[];
  batchSize: number;
  trainCount: number;
}

/** Runs the range test for `plan` and writes lr-find.png, .svg and .json into `out`. */
export async function runLrFind(
  plan: TrainConfig,
  out: string,
  sweep: { startLr?: number; endLr?: number; steps?: number } = {},
  log?: (message: string) => void,
): Promise<LrFindRun> {
  await selectBackend(plan.backend);
  const { dataset } = await loadDataset({ source: dataSourceOf(plan), strict: plan.strict, log });
  // The batch size training would use on this data, so the suggestion fits that training.
  const sized = sizeToData(plan, dataset.train.count).plan;
  const net = create(sized.model, {
    inputShape: dataset.shape,
    numClasses: dataset.classNames.length,
    seed: sized.seed,
    options: sized.modelOptions,
  });
  const optimizer = optimizerFor(sized);
  const recipe = fitOptionsFor(sized, dataset.shape);
  let result: LrFindResult;
  try {
    result = await lrFind(net, optimizer, dataset.train, {
      shape: dataset.shape,
      batchSize: sized.batchSize,
      seed: sized.seed,
      labelSmoothing: recipe.labelSmoothing,
      augment: recipe.augment,
      ...sweep,
    });
  } finally {
    optimizer.dispose();
    net.dispose();
  }
  const lang = plan.lang ?? 'en';
  const chart = await renderVegaLite(lrFindSpec(result, strings(lang), FONT_FAMILY));
  const files = ['lr-find.svg', 'lr-find.png', 'lr-find.json'].map((f) => path.join(out, f));
  await writeFileAtomic(files[0], chart.svg);
  await writeFileAtomic(files[1], await svgToPng(chart.svg, 2));
  await writeFileAtomic(
    files[2],
    JSON.stringify(
      { model: sized.model, optimizer: sized.optimizer, batchSize: sized.batchSize, ...result },
      null,
      1,
    ) + '\n',
  );
  return { ...result, files, batchSize: sized.batchSize, trainCount: dataset.train.count };
}

/**
 * Training in the page, through the library's public API (imgclf/core) as any browser user
 * would: the data comes from the server as IDX files (`splitFromIdx`), and the model is built
 * by `createModel` and trained by `fit`, the library's one run function, under the plan the
 * CLI would use (`pagePlan` resolves the user's choices as `imgclf train` resolves its flags),
 * so the page trains each model with its own recipe (optimizer, weight decay, schedule, label
 * smoothing, augmentation). Only the UI hooks are new here. Your own classes (own-classes.ts)
 * train through `trainInPage` too, on the pictures collected in the page, with
 * `pagePlan({ ..., images })`. Nothing at the top level touches the DOM, so Node can import
 * this.
 */
import {
  createModel,
  type EpochMetrics,
  evaluate,
  fit,
  type ImageShape,
  type Model,
  type ResizeMode,
  resolvePlan,
  type Split,
  splitFromIdx,
  trainChoicesOf,
  type TrainConfig,
} from 'imgclf/core';
import { apiFetch } from './api.js';

/** What the page lets the user choose; undefined (a field left empty) means the model's default. */
export interface PageChoice {
  model: string;
  epochs?: number;
  lr?: number;
  batchSize?: number;
  seed?: number;
  /**
   * Model options (hidden sizes, dropout, ...), as the model declares them; an unknown one or
   * a value out of range fails with one line, as `createModel` and the CLI do.
   */
  options?: Record<string, unknown>;
  /** Training on images collected in the page (your own classes) rather than the server's data. */
  images?: PageImages;
  /**
   * A head (`model`: softmax, mlp or knn) on this backbone's features (its source as the run
   * records it): the plan of `imgclf train --backbone SOURCE --data data`, whose images come
   * at the backbone's input size, so the image size and channels are not the plan's.
   */
  backbone?: string;
}

/**
 * Images collected in the page, as an image folder would be read: the plan is that of
 * `imgclf train --data data --data-kind folder --image-size N --channels C --resize-mode M
 * --hold-out F`, and a downloaded run keeps the images in `data/` (PAGE_DATA_DIR) of its run
 * directory.
 */
export interface PageImages {
  imageSize: number;
  channels: 1 | 3;
  resizeMode: ResizeMode;
  /** The stratified fraction held out as the test split. */
  heldOut: number;
}

/** Where a run trained on the page's own images keeps them, relative to its run directory. */
export const PAGE_DATA_DIR = 'data';

/** The plan for the page's choices: the same as `imgclf train` with the same flags. */
export function pagePlan(choice: PageChoice): TrainConfig {
  const images = choice.images;
  return resolvePlan({
    model: choice.model,
    epochs: choice.epochs,
    lr: choice.lr,
    batchSize: choice.batchSize,
    seed: choice.seed,
    backend: 'auto',
    modelOptions: choice.options,
    ...(images
      ? {
          data: PAGE_DATA_DIR,
          dataKind: 'folder',
          ...(choice.backbone === undefined
            ? { imageSize: images.imageSize, channels: images.channels }
            : { backbone: choice.backbone }),
          resizeMode: images.resizeMode,
          holdOut: images.heldOut,
        }
      : {}),
  });
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const res = await apiFetch(url);
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { message?: string };
    throw new Error(body.message ?? `${url}: HTTP ${res.status}`);
  }
  return new Uint8Array(await res.arrayBuffer());
}

/** Downloads the first `limit` examples of a split (pixels as bytes; `fit` scales them). */
export async function loadSplit(split: 'train' | 'test', limit: number, numClasses: number): Promise<Split> {
  const [images, labels] = await Promise.all([
    fetchBytes(`/api/data/${split}/images?limit=${limit}`),
    fetchBytes(`/api/data/${split}/labels?limit=${limit}`),
  ]);
  return splitFromIdx(images, labels, numClasses, split).split;
}

export interface TrainRequest {
  /** The resolved plan (`pagePlan`): model, recipe and seed. */
  plan: TrainConfig;
  shape: ImageShape;
  numClasses: number;
  train: Split;
  test: Split;
  /** Every this many batches, the probe is evaluated for the live curves. */
  probeEvery: number;
  onProgress: (epoch: number, done: number, total: number) => void;
  onProbe: (x: number, loss: number, accuracy: number) => void;
  onEpoch: (m: EpochMetrics) => void;
  shouldStop: () => boolean;
}

/** Lets the browser paint and handle clicks (the stop button) between training steps. */
function yieldToUi(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A fixed sample of the training split; its loss is the live curve (the loop sums its own once per epoch). */
function probeOf(train: Split, shape: ImageShape, n: number): Split {
  const count = Math.min(n, train.count);
  const row = shape[0] * shape[1] * shape[2];
  return { images: train.images.subarray(0, count * row), labels: train.labels.subarray(0, count), count };
}

/** Trains a new model by `req.plan`; a stop ends it after the current batch, the model kept as it is. */
export async function trainInPage(req: TrainRequest): Promise<{ model: Model; history: EpochMetrics[] }> {
  const { plan } = req;
  const model = createModel(plan.model, {
    inputShape: req.shape,
    numClasses: req.numClasses,
    seed: plan.seed,
    options: plan.modelOptions,
  });
  const probe = probeOf(req.train, req.shape, 1000);
  try {
    const history = await fit(model, req.train, req.test, {
      // Every setting of the plan, given: fit resolves them to this same plan (nothing is
      // left for it to size to the data), so it trains exactly as the plan shown says.
      ...trainChoicesOf(plan),
      shouldStop: req.shouldStop,
      onBatch: async (epoch, done, total) => {
        req.onProgress(epoch, done, total);
        if (done % req.probeEvery === 0 || done === total) {
          const r = await evaluate(model, probe);
          req.onProbe(epoch - 1 + done / total, r.loss, r.accuracy);
        }
        await yieldToUi();
      },
      onEpoch: (m) => req.onEpoch(m),
    });
    return { model, history };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

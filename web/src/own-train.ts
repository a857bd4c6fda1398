/**
 * Your own classes, the part without a DOM (Node imports it in tests): checking class names,
 * ordering classes as an image folder orders them, building the dataset from the prepared
 * images, the plan (`pagePlan` + `sizeToData`, as `imgclf train --data` resolves it) and the
 * run metadata a model trained here carries.
 *
 * Images are taken as `imgclf train --data DIR --image-size 32 --channels 3 --resize-mode fill
 * --hold-out 0.2` would take a folder of them: RGB, stretched to 32x32 (or 64x64), scaled to
 * [0, 1], with a stratified fifth held out as the test split.
 */
import {
  type EpochMetrics,
  folderPreprocessing,
  heldOutSplit,
  type ImageShape,
  imageSize,
  listModels,
  pixelsAsBytes,
  runMetadata,
  type RunMetadataBase,
  sizeToData,
  type Split,
  type TrainConfig,
} from 'imgclf/core';
import type { BackboneRecord, PageBackbone } from './backbone.js';
import { PAGE_DATA_DIR, type PageImages, pagePlan } from './train.js';

/**
 * Image sizes the page offers. 32x32 RGB (CIFAR-10's size) is the default: webcam and photo
 * classes differ mostly in colour and coarse shape, which 32x32 keeps, and the CNN trains
 * about 4x faster than at 64x64 on the few hundred images a page collects. 64x64 is there for
 * finer detail (small objects, text), at 4x the cost and with more images needed.
 */
export const OWN_SIZES = [32, 64] as const;
export const OWN_DEFAULT_SIZE = 32;
/** The models the page offers for your own classes; the CNN is the one that learns shapes. */
export const OWN_MODELS = ['cnn', 'mlp', 'softmax'] as const;
/** The heads the page offers on a backbone's features: those `imgclf train --backbone` trains. */
export const OWN_HEADS = ['softmax', 'mlp', 'knn'] as const;
/** A stratified fifth is held out: with 10 images a class, 2 of each are tested. */
export const OWN_HELD_OUT = 0.2;
/** Every class needs one image to train on and one to test on. */
export const MIN_IMAGES_PER_CLASS = 2;
/** As many classes as a model (and an image folder) takes. */
export const MAX_OWN_CLASSES = 256;

/** How the page's own images are taken, as an image folder of them would be. */
export function ownImages(imageSize: number): PageImages {
  return { imageSize, channels: 3, resizeMode: 'fill', heldOut: OWN_HELD_OUT };
}

/** The images at a backbone's input shape (as `imgclf train --backbone` loads a folder). */
export function backboneImages(record: Pick<BackboneRecord, 'inputShape'>): PageImages {
  const [side, , channels] = record.inputShape;
  return { imageSize: side, channels: channels === 1 ? 1 : 3, resizeMode: 'fill', heldOut: OWN_HELD_OUT };
}

export function ownShape(images: PageImages): ImageShape {
  return [images.imageSize, images.imageSize, images.channels];
}

/**
 * What the classifier trains on: the pixels themselves (from scratch, `PIXELS`), or a
 * backbone's feature vectors (`backboneFeatures`), on which a head (softmax, mlp or knn,
 * core/plan.ts HEADS) trains, and the run's metadata records the backbone as `imgclf train
 * --backbone` does (`backbone`).
 */
export interface Features {
  readonly kind: 'pixels' | 'backbone';
  /** The shape of one example as the model sees it, for images of `input` shape. */
  shape(input: ImageShape): ImageShape;
  /** The model's inputs for prepared images (train and test alike). */
  apply(images: Split, input: ImageShape): Promise<Split>;
}

/** Training from scratch: the model takes the prepared pixels. */
export const PIXELS: Features = {
  kind: 'pixels',
  shape: (input) => input,
  apply: async (images) => images,
};

/** Images per backbone call while features are computed (and between two progress reports). */
const FEATURE_CHUNK = 16;

/**
 * Transfer learning: each prepared image (at the backbone's input shape) becomes its feature
 * vector, a [1, 1, D] "image" as the Node side's feature cache stores it (node/backbone/features.ts).
 */
export function backboneFeatures(
  backbone: Pick<PageBackbone, 'record' | 'features'>,
  onProgress?: (done: number, total: number) => void,
): Features {
  const dim = backbone.record.features;
  return {
    kind: 'backbone',
    shape: () => [1, 1, dim],
    apply: async (images, input) => {
      const row = imageSize(input);
      const out = new Float32Array(images.count * dim);
      for (let i = 0; i < images.count; i += FEATURE_CHUNK) {
        const n = Math.min(FEATURE_CHUNK, images.count - i);
        // Pixels in [0, 1], as imgclf gives every backbone its images.
        const x = new Float32Array(n * row);
        const bytes = pixelsAsBytes(images.images, i * row, n * row);
        for (let k = 0; k < x.length; k++) x[k] = bytes[k] / 255;
        out.set(await backbone.features(x, n), i * dim);
        onProgress?.(i + n, images.count);
      }
      return { images: out, labels: images.labels, count: images.count };
    },
  };
}

export type ClassNameProblem = 'empty' | 'duplicate' | 'badName';

/**
 * Why `name` cannot name a class, or undefined. A downloaded run keeps each class's images in
 * a folder of that name (data/train/NAME), so names must be usable as folder names everywhere.
 */
export function classNameProblem(name: string, others: string[]): ClassNameProblem | undefined {
  const n = name.trim();
  if (n === '') return 'empty';
  // eslint-disable-next-line no-control-regex
  if (/[/\\:*?"<>|\u0000-\u001f]/.test(n) || n.startsWith('.') || n.endsWith('.') || n.length > 100)
    return 'badName';
  if (others.some((o) => o.trim() === n)) return 'duplicate';
  return undefined;
}

/** Code-unit order, as `imgclf train --data` orders class folders (node/data/folder.ts). */
export function folderOrder(names: string[]): string[] {
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** One prepared image: H * W * C bytes (0..255), and its class index. */
export interface LabelledImage {
  label: number;
  pixels: Uint8Array;
}

/** All images as one split, kept as bytes as the folder loader keeps them. */
export function splitOf(images: LabelledImage[], shape: ImageShape): Split {
  const row = imageSize(shape);
  const out = new Uint8Array(images.length * row);
  const labels = new Uint8Array(images.length);
  images.forEach((img, i) => {
    if (img.pixels.length !== row) throw new Error(`image ${i} has ${img.pixels.length} values, not ${row}`);
    out.set(img.pixels, i * row);
    labels[i] = img.label;
  });
  return { images: out, labels, count: images.length };
}

/** Image `i` of a split as bytes 0..255 (a view when the split holds bytes). */
export function rowBytes(split: Split, shape: ImageShape, i: number): Uint8Array {
  const row = imageSize(shape);
  return pixelsAsBytes(split.images, i * row, row);
}

/**
 * Training and held-out test split: `fraction` of each class, stratified, seeded, as
 * `imgclf train --data` holds out part of a flat folder (the core's rule).
 */
export { heldOutSplit };

/** The plan for the page's own images, sized to the training set as the CLI sizes it. */
export function ownPlan(
  choice: { model: string; epochs?: number; seed?: number; backbone?: string },
  images: PageImages,
  trainCount: number,
): { plan: TrainConfig; note?: string } {
  const plan = pagePlan({ ...choice, images });
  // A model that memorizes (the knn head) takes one pass, as `imgclf train` and `fit` take it.
  if (listModels().find((m) => m.name === plan.model)?.memorizes)
    return { plan: { ...plan, epochs: 1, defaulted: [] } };
  return sizeToData(plan, trainCount);
}

/** The run directory's metadata.json, as the page writes it: the CLI's format (imgclf/core). */
export type PageRunMetadata = RunMetadataBase;

/** metadata.json `dataset` of a run trained in the page. */
export const PAGE_DATASET = 'page';

/** The metadata of a model trained in the page on its own images. */
export function ownRunMetadata(a: {
  plan: TrainConfig;
  note?: string;
  images: PageImages;
  classNames: string[];
  backend: string;
  testAccuracy: number;
  /** Trained on this backbone's features (its input shape is `images`'). */
  backbone?: BackboneRecord;
}): PageRunMetadata {
  const { images, plan } = a;
  return runMetadata(
    {
      model: plan.model,
      dataset: PAGE_DATASET,
      classNames: a.classNames,
      // With a backbone: its input shape, so predict and serve prepare pictures for it.
      inputShape: ownShape(images),
      preprocessing: folderPreprocessing(images.resizeMode),
      // A relative path: the images travel inside the downloaded run directory (docs/page.md).
      data: {
        kind: 'folder',
        path: PAGE_DATA_DIR,
        imageSize: images.imageSize,
        channels: images.channels,
        resizeMode: images.resizeMode,
        valSplit: images.heldOut,
        seed: plan.seed,
      },
      config: { ...plan } as Record<string, unknown>,
      ...(a.note ? { sizedToData: a.note } : {}),
      ...(a.backbone ? { backbone: a.backbone } : {}),
      backend: a.backend,
    },
    // The page keeps the last epoch; its held-out split is the test split (no validation).
    { kept: { epoch: plan.epochs, testAccuracy: a.testAccuracy, byValidation: false } },
  );
}

/** A model the page holds: trained here, kept in the browser, or read from a run directory. */
export interface PageRunData {
  metadata: PageRunMetadata;
  metrics: EpochMetrics[];
  /** The images it was trained and tested on, at the model's input size (trained in the page). */
  data?: { train: Split; test: Split };
}

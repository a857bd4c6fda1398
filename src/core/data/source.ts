/**
 * Where a run's data came from and how a picture becomes the model's input. Both are recorded
 * in the run directory's metadata, so `evaluate`, `predict`, `report` and `serve` reload the
 * same splits and prepare a new picture the way the training images were prepared.
 *
 * Each kind of source is a module in node/data/ registered by its kind (node/data/sources.ts);
 * this file holds what the page needs too: the sources' types and the preprocessing rules.
 */
import { borderBrightness, type ImageShape, type Split } from './dataset.js';

/** How an image of another size becomes the input shape: letterbox, stretch, or crop the centre. */
export type ResizeMode = 'contain' | 'fill' | 'cover';

/** A built-in IDX set (fashion-mnist, mnist, kmnist). */
export interface IdxSource {
  kind: 'idx';
  dataset: string;
  dataDir?: string;
  resize?: number;
}

/**
 * What a plan gives a source of your own data (`--data PATH`), whatever its kind. A kind
 * registered beyond the built-ins is named by the plan's `dataset` and gets these fields from
 * `dataSourceOf`.
 */
export interface OwnData {
  /** The file or folder (absolute once loaded). */
  path: string;
  /** Fraction held out as the test split when the data has none. */
  valSplit: number;
  /** Seeds the held-out split. */
  seed: number;
  resize?: number;
}

/** An image folder, one subfolder per class (or train/ and test/ holding them). */
export interface FolderSource extends Omit<OwnData, 'resize'> {
  kind: 'folder';
  imageSize: number;
  channels: 1 | 3;
  resizeMode: ResizeMode;
}

/** A Kaggle-style `label,pixel1..pixelN` file. */
export interface CsvSource extends OwnData {
  kind: 'csv';
  /** A separate test CSV; without one, valSplit of the rows is held out. */
  testPath?: string;
}

/**
 * The sources by kind. A module adding a kind declares its source type here as well, by module
 * augmentation beside its `registerSource` call (`declare module '…/core/data/source.js' {
 * interface DataSources { parquet: ParquetSource } }`), so `DataSource` stays a union that
 * TypeScript checks.
 */
export interface DataSources {
  idx: IdxSource;
  folder: FolderSource;
  csv: CsvSource;
}

export type DataSource = DataSources[keyof DataSources];

/** The source an older run directory (or a config without --data) means. */
export function idxSource(dataset: string, dataDir?: string, resize?: number): IdxSource {
  return { kind: 'idx', dataset, dataDir, resize };
}

export interface Preprocessing {
  /** Pixels are divided by this (255) so inputs are in [0, 1]. */
  scale: number;
  /** Photos with a light background are inverted, to look like the dataset's dark one. */
  invertLightBackground: boolean;
  /** How an image of another size becomes the input shape. */
  resize: ResizeMode;
}

// How `predict` turns a picture into a model's input. Each kind of source picks its rule
// (node/data/sources.ts `preprocessing`); the page records folderPreprocessing for its images.

/** Photos (image folders) are taken as they are, never inverted. */
export function folderPreprocessing(resizeMode: ResizeMode): Preprocessing {
  return { scale: 255, invertLightBackground: false, resize: resizeMode };
}

/**
 * For MNIST-like data (light strokes on a dark ground): light-background pictures are inverted
 * and letterboxed to look like the training images.
 */
export function darkGroundPreprocessing(): Preprocessing {
  return { scale: 255, invertLightBackground: true, resize: 'contain' };
}

/**
 * For images of unknown look (a CSV, arrays): judged by the training images' border, light
 * ones taken as they are and stretched, dark ones as MNIST-like data.
 */
export function preprocessingByBorder(train: Split, shape: ImageShape): Preprocessing {
  return borderBrightness(train, shape) >= 0.5
    ? { scale: 255, invertLightBackground: false, resize: 'fill' }
    : darkGroundPreprocessing();
}

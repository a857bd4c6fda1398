/**
 * Where a run's data came from and how a picture becomes the model's input. Both are recorded
 * in the run directory's metadata, so `evaluate`, `predict`, `report` and `serve` reload the
 * same splits and prepare a new picture the way the training images were prepared.
 */
import { borderBrightness, type ImageShape, type Split } from './dataset.js';

/** How an image of another size becomes the input shape: letterbox, stretch, or crop the centre. */
export type ResizeMode = 'contain' | 'fill' | 'cover';

export type DataSource =
  | { kind: 'idx'; dataset: string; dataDir?: string; resize?: number }
  | {
      kind: 'folder';
      /** The folder (absolute once loaded). */
      path: string;
      imageSize: number;
      channels: 1 | 3;
      resizeMode: ResizeMode;
      /** Fraction held out as the test split when the folder has no train/ and test/. */
      valSplit: number;
      /** Seeds the held-out split. */
      seed: number;
    }
  | {
      kind: 'csv';
      path: string;
      /** A separate test CSV; without one, valSplit of the rows is held out. */
      testPath?: string;
      valSplit: number;
      seed: number;
      resize?: number;
    };

/** The source an older run directory (or a config without --data) means. */
export function idxSource(dataset: string, dataDir?: string, resize?: number): DataSource {
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

/** The preprocessing a folder run records: photos are taken as they are, never inverted. */
export function folderPreprocessing(resizeMode: ResizeMode): Preprocessing {
  return { scale: 255, invertLightBackground: false, resize: resizeMode };
}

/**
 * How `predict` turns a picture into this model's input. Photos (image folders) are taken as
 * they are; for MNIST-like data (light strokes on a dark ground) light-background pictures are
 * inverted and letterboxed to look like the training images.
 */
export function preprocessingFor(source: DataSource, train: Split, shape: ImageShape): Preprocessing {
  if (source.kind === 'folder') return folderPreprocessing(source.resizeMode);
  if (source.kind === 'csv' && borderBrightness(train, shape) >= 0.5)
    return { scale: 255, invertLightBackground: false, resize: 'fill' };
  return { scale: 255, invertLightBackground: true, resize: 'contain' };
}

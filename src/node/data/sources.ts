/**
 * The kinds of data source (Node only), each a module that registers itself here by its kind
 * (`DataSource['kind']`): node/data/idx.ts (the built-in IDX sets), folder.ts (image folders)
 * and csv.ts (Kaggle-style CSV files). Everything that depends on the kind asks its entry, so a
 * new kind (a Parquet file, a Hugging Face dataset) is one module with one `registerSource`
 * call; nothing else switches on the kind. Importing node/data/load.ts registers the built-ins.
 */
import type { PlanChoices } from '../../core/api.js';
import type { Dataset, ImageShape, Split } from '../../core/data/dataset.js';
import type { DataSource, Preprocessing } from '../../core/data/source.js';
import { heldOutSplit } from '../../core/data/split.js';
import { resizedShape, resizeSplit } from '../../core/data/transforms.js';
import { UserError } from '../../core/errors.js';
import type { FileReport } from '../checksum.js';

export interface LoadOptions {
  /** What to load; when absent, the IDX dataset named by `dataset`. */
  source?: DataSource;
  dataset?: string;
  dataDir?: string;
  resize?: number;
  /** Image folders: fail on an unreadable file instead of skipping it. */
  strict?: boolean;
  log?: (message: string) => void;
  /** Reuse decoded data from the user cache (default true). */
  decodedCache?: boolean;
  /** Built-in sets: download when missing (default true; the server passes false). */
  download?: boolean;
  /** Image folders: decoding progress (images done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** A file of the data that could not be used, and why. */
export interface SkippedFile {
  path: string;
  reason: string;
}

export interface LoadedDataset {
  dataset: Dataset;
  /** The source with paths made absolute: what a run directory records. */
  source: DataSource;
  /** Where the data was found, and how (`--data-dir`, the user cache, `image folder, …`). */
  located: { dir: string; origin: string };
  /** IDX files and their verification (empty for other sources). */
  files: FileReport[];
  /** Image-folder files that could not be decoded. */
  skipped: SkippedFile[];
  /** Image folders: whether the decoded tensors came from the cache. */
  cache?: 'hit' | 'miss';
  /** Held out from the training data as the test split, when the source has no test split. */
  heldOut: boolean;
  /** A line for a training log on what was loaded (image folders: counts, skipped files, cache). */
  summary?: string;
  /** Seconds spent reading, verifying and parsing. */
  seconds: number;
}

/** What a kind's loader returns; `loadDataset` adds the time it took. */
export type LoadedParts = Omit<LoadedDataset, 'seconds'>;

/** Everything imgclf does differently for one kind of source. */
export interface SourceEntry<S extends DataSource = DataSource> {
  /** Reads the data into memory; the source it returns has absolute paths. */
  load(source: S, opts: LoadOptions): Promise<LoadedParts>;
  /** The data in a few words, for messages: a built-in set's name, a path. */
  where(source: S): string;
  /** How `predict` prepares a new picture to look like this data (core/data/source.ts rules). */
  preprocessing(source: S, train: Split, shape: ImageShape): Preprocessing;
  /**
   * The source a run recorded, as read on this machine: a relative path is taken relative to
   * the run directory (a run downloaded from the page keeps its images inside it), and
   * `dataDir` (`--data-dir`) replaces a built-in set's folder.
   */
  fromRun(source: S, at: { runDir?: string; dataDir?: string }): S;
  /** The source loaded at a backbone's input shape [size, size, channels], or a one-line error. */
  atInput(source: S, input: ImageShape): S;
  /** What names the data in the backbone feature cache's label (node/backbone/features.ts). */
  cacheIdentity(source: S): object;
  /** The plan choices that name this data, so a run saved from code records a plan that reloads it. */
  planChoices(source: S): PlanChoices;
  /**
   * Whether a source read back from a run's metadata.json (untrusted JSON, kind already
   * matched) has the fields `load` needs; the server refuses the run's data otherwise.
   */
  isRecorded(data: Record<string, unknown>): boolean;
}

const entries = new Map<string, SourceEntry>();

/** Registers a kind of data source; registering a kind twice is an error. */
export function registerSource<S extends DataSource>(kind: S['kind'], entry: SourceEntry<S>): void {
  if (entries.has(kind)) throw new Error(`data source kind '${kind}' is already registered`);
  // Stored for any kind: sourceEntry hands it back only for a source of that kind.
  entries.set(kind, entry as unknown as SourceEntry);
}

/** The registered kinds, in registration order. */
export function sourceKinds(): string[] {
  return [...entries.keys()];
}

/** The entry of a kind, or a one-line error naming the kinds there are. */
export function sourceEntry(kind: string): SourceEntry {
  const entry = entries.get(kind);
  if (!entry)
    throw new UserError(`unknown data source kind '${kind}'; known kinds: ${sourceKinds().join(', ')}`);
  return entry;
}

// What the kinds' loaders share.

/** The dataset with both splits resized to size x size (bilinear, core/data/transforms.ts). */
export function resizeDataset(dataset: Dataset, size: number): Dataset {
  const shape = dataset.shape;
  return {
    ...dataset,
    shape: resizedShape(shape, size),
    train: resizeSplit(dataset.train, shape, size),
    test: resizeSplit(dataset.test, shape, size),
  };
}

/** Holds out a stratified fraction of `all` as the test split. */
export function holdOut(
  all: Split,
  shape: ImageShape,
  numClasses: number,
  fraction: number,
  seed: number,
  what: string,
): { train: Split; test: Split } {
  const { train, test } = heldOutSplit(all, shape, numClasses, fraction, seed);
  if (test.count === 0) {
    throw new UserError(
      `${what} has too few images to hold out a test split (--hold-out ${fraction}); add images or a test set`,
    );
  }
  return { train, test };
}

/**
 * For gray data (one channel) at a backbone's input shape: refused when the backbone takes
 * colour, else to be resized to its size.
 */
export function checkGrayInput(input: ImageShape, where: string): number {
  const [size, , channels] = input;
  if (channels !== 1) {
    throw new UserError(
      `the backbone takes ${input.join('x')} images but ${where} is gray; train on an image folder (--data PATH) to give it RGB pictures`,
    );
  }
  return size;
}

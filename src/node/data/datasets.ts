/**
 * Where IDX datasets come from (Node only). A dataset is looked for in this order:
 *   1. --data-dir   2. $IMGCLF_DATA_DIR   3. the user cache   4. a system package's folder
 *      (Debian's dataset-fashion-mnist)
 * and, when none has it, downloaded into the cache from the mirrors below, one after another.
 * Every file is checked against the checksum its spec knows (the decompressed SHA-256, or the
 * MD5 of the published `.gz`); downloads are written atomically.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { UserError } from '../../core/errors.js';
import { writeFileAtomic } from '../fs.js';
import { FASHION_MNIST_CLASSES, KMNIST_CLASSES, MNIST_CLASSES } from '../../core/data/classes.js';
import { type Dataset, type ImageShape, type Split, splitFromBytes } from '../../core/data/dataset.js';
import { cacheRoot, decodedCachePath, readDecoded, writeDecoded } from '../cache.js';
import { type FileReport, md5, verifyFile } from '../checksum.js';
import { checkPair, parseIdx } from '../../core/data/idx.js';

/**
 * One file of an IDX dataset and the checksum it is verified against: at least one of
 * `sha256` (of the decompressed bytes, which survives re-compression, as Debian does) or
 * `gzMd5` (of the `.gz` as published, the only value torchvision lists for MNIST and KMNIST).
 */
export interface IdxFileSpec {
  /** File name without `.gz`, e.g. "train-images-idx3-ubyte". */
  name: string;
  /** SHA-256 of the decompressed bytes. */
  sha256?: string;
  /** MD5 of the published `.gz` file. */
  gzMd5?: string;
}

export interface IdxDatasetSpec {
  name: string;
  classNames: string[];
  trainImages: IdxFileSpec;
  trainLabels: IdxFileSpec;
  testImages: IdxFileSpec;
  testLabels: IdxFileSpec;
  /** Base URLs, each followed by `<file>.gz`. */
  mirrors: string[];
  /** Folders a system package installs the files into. */
  systemDirs: string[];
}

export const FASHION_MNIST: IdxDatasetSpec = {
  name: 'fashion-mnist',
  classNames: FASHION_MNIST_CLASSES,
  trainImages: {
    name: 'train-images-idx3-ubyte',
    sha256: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
  },
  trainLabels: {
    name: 'train-labels-idx1-ubyte',
    sha256: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
  },
  testImages: {
    name: 't10k-images-idx3-ubyte',
    sha256: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
  },
  testLabels: {
    name: 't10k-labels-idx1-ubyte',
    sha256: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
  },
  mirrors: [
    'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
    'https://storage.googleapis.com/tensorflow/tf-keras-datasets/',
    'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/',
  ],
  systemDirs: ['/usr/share/datasets/fashion-mnist'],
};

/** MNIST, handwritten digits. Checksums: the `.gz` MD5s torchvision publishes. */
export const MNIST: IdxDatasetSpec = {
  name: 'mnist',
  classNames: MNIST_CLASSES,
  trainImages: { name: 'train-images-idx3-ubyte', gzMd5: 'f68b3c2dcbeaaa9fbdd348bbdeb94873' },
  trainLabels: { name: 'train-labels-idx1-ubyte', gzMd5: 'd53e105ee54ea40749a09fcbcd1e9432' },
  testImages: { name: 't10k-images-idx3-ubyte', gzMd5: '9fb629c4189551a2d022fa330f9573f3' },
  testLabels: { name: 't10k-labels-idx1-ubyte', gzMd5: 'ec29112dd5afa0611ce80d1b7f02629c' },
  mirrors: ['https://ossci-datasets.s3.amazonaws.com/mnist/', 'http://yann.lecun.com/exdb/mnist/'],
  systemDirs: [],
};

/** Kuzushiji-MNIST, ten cursive hiragana. Checksums: the `.gz` MD5s torchvision publishes. */
export const KMNIST: IdxDatasetSpec = {
  name: 'kmnist',
  classNames: KMNIST_CLASSES,
  trainImages: { name: 'train-images-idx3-ubyte', gzMd5: 'bdb82020997e1d708af4cf47b453dcf7' },
  trainLabels: { name: 'train-labels-idx1-ubyte', gzMd5: 'e144d726b3acfaa3e44228e80efcd344' },
  testImages: { name: 't10k-images-idx3-ubyte', gzMd5: '5c965bf0a639b31b8f53240b1b52f4d7' },
  testLabels: { name: 't10k-labels-idx1-ubyte', gzMd5: '7320c461ea6c1c855c0b718fb2a4b134' },
  mirrors: ['http://codh.rois.ac.jp/kmnist/dataset/kmnist/'],
  systemDirs: [],
};

/** The IDX datasets `--dataset` accepts, by name. */
export const IDX_DATASETS: Record<string, IdxDatasetSpec> = {
  'fashion-mnist': FASHION_MNIST,
  mnist: MNIST,
  kmnist: KMNIST,
};

/** The spec of a named IDX dataset, or a one-line error listing the names. */
export function idxSpec(name: string): IdxDatasetSpec {
  const spec = IDX_DATASETS[name];
  if (!spec)
    throw new UserError(`unknown dataset '${name}'; choose one of ${Object.keys(IDX_DATASETS).join(', ')}`);
  return spec;
}

export interface SourceOptions {
  /** Explicit folder (--data-dir); when given, nothing else is searched. */
  dataDir?: string;
  /** Mirror override; defaults to $IMGCLF_MIRRORS (comma-separated) or the spec's list. */
  mirrors?: string[];
  /** Progress/info messages (downloads), e.g. console.error. */
  log?: (message: string) => void;
  /** Per-request timeout for downloads, in ms. */
  timeoutMs?: number;
  /**
   * Download when no local copy exists (default true). The server passes false: a request must
   * never start a download.
   */
  download?: boolean;
  /**
   * Reuse decoded splits from the user cache (see node/cache.ts) instead of gunzipping and
   * converting again. Off by default; `data info` and `data fetch` always read the sources.
   */
  decodedCache?: boolean;
}

export function specFiles(spec: IdxDatasetSpec): IdxFileSpec[] {
  return [spec.trainImages, spec.trainLabels, spec.testImages, spec.testLabels];
}

/** The user cache folder for a dataset: $XDG_CACHE_HOME/imgclf/<name> or ~/.cache/imgclf/<name>. */
export function cacheDir(spec: IdxDatasetSpec): string {
  return path.join(cacheRoot(), spec.name);
}

/** The candidate folders, in search order, with where each came from. */
export function candidateDirs(
  spec: IdxDatasetSpec,
  opts: SourceOptions = {},
): { dir: string; origin: string }[] {
  if (opts.dataDir) return [{ dir: path.resolve(opts.dataDir), origin: '--data-dir' }];
  const out: { dir: string; origin: string }[] = [];
  if (process.env.IMGCLF_DATA_DIR)
    out.push({ dir: path.resolve(process.env.IMGCLF_DATA_DIR), origin: '$IMGCLF_DATA_DIR' });
  out.push({ dir: cacheDir(spec), origin: 'user cache' });
  for (const dir of spec.systemDirs) out.push({ dir, origin: 'system package' });
  return out;
}

/** Path of a file in `dir`, gzipped or raw, or undefined when absent. */
export function findFile(dir: string, file: IdxFileSpec): string | undefined {
  for (const candidate of [path.join(dir, file.name + '.gz'), path.join(dir, file.name)]) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function hasAll(dir: string, spec: IdxDatasetSpec): boolean {
  return specFiles(spec).every((f) => findFile(dir, f) !== undefined);
}

/** Reads a file and gunzips it when it is gzip (by magic bytes, not by name). */
export async function readMaybeGzip(file: string): Promise<Uint8Array> {
  const bytes = await readFile(file);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) return gunzipOrFail(bytes, file);
  return bytes;
}

function gunzipOrFail(bytes: Uint8Array, file: string): Uint8Array {
  try {
    return gunzipSync(bytes);
  } catch (err) {
    throw new UserError(`${file}: corrupt gzip data (${(err as Error).message}); delete it and fetch again`);
  }
}

export interface LocatedDataset {
  dir: string;
  origin: string;
}

/**
 * Finds a folder holding all four files, downloading into the cache when none does.
 * With --data-dir, a folder missing files is an error (no silent fallback).
 */
export async function locate(spec: IdxDatasetSpec, opts: SourceOptions = {}): Promise<LocatedDataset> {
  const candidates = candidateDirs(spec, opts);
  for (const c of candidates) if (hasAll(c.dir, spec)) return c;
  if (opts.dataDir) {
    const missing = specFiles(spec)
      .filter((f) => !findFile(candidates[0].dir, f))
      .map((f) => f.name + '[.gz]');
    throw new UserError(
      `--data-dir ${opts.dataDir} is missing ${missing.join(', ')}; point it at a folder with all four IDX files`,
    );
  }
  const dir = cacheDir(spec);
  if (opts.download === false) {
    throw new UserError(
      `${spec.name} is not on this machine (looked in ${candidates.map((c) => c.dir).join(', ')}); fetch it with 'imgclf data fetch --dataset ${spec.name}'`,
    );
  }
  await download(spec, dir, opts);
  return { dir, origin: 'downloaded' };
}

/** Downloads every missing file of `spec` into `dir`, trying each mirror in turn. */
export async function download(spec: IdxDatasetSpec, dir: string, opts: SourceOptions = {}): Promise<void> {
  const mirrors = opts.mirrors ?? envMirrors() ?? spec.mirrors;
  const log = opts.log ?? (() => {});
  await mkdir(dir, { recursive: true });
  for (const file of specFiles(spec)) {
    if (findFile(dir, file)) continue;
    const failures: string[] = [];
    let done = false;
    for (const mirror of mirrors) {
      const url = new URL(file.name + '.gz', mirror.endsWith('/') ? mirror : mirror + '/').toString();
      log(`downloading ${url}`);
      try {
        const gz = await fetchBytes(url, opts.timeoutMs ?? 60_000);
        let raw: Uint8Array;
        try {
          raw = gunzipSync(gz);
        } catch {
          throw new Error('not valid gzip data');
        }
        const v = verifyFile(file, raw, gz);
        if (!v.verified) {
          const got =
            v.method === 'gz-md5' ? `md5 ${md5(gz).slice(0, 12)}` : `sha256 ${v.sha256.slice(0, 12)}`;
          throw new Error(`checksum mismatch (got ${got}…)`);
        }
        await writeFileAtomic(path.join(dir, file.name + '.gz'), gz);
        done = true;
        break;
      } catch (err) {
        failures.push(`${url}: ${(err as Error).message}`);
        log(`  failed: ${(err as Error).message}`);
      }
    }
    if (!done) {
      // Only verified bytes are ever renamed into place, so a failure leaves nothing partial.
      throw new UserError(
        `could not download ${file.name}.gz from any mirror (${failures.join('; ')}); ` +
          (spec.systemDirs.length
            ? `install it with 'apt-get install dataset-${spec.name}' or pass --data-dir`
            : `download the four files yourself and pass --data-dir`),
      );
    }
  }
}

function envMirrors(): string[] | undefined {
  const value = process.env.IMGCLF_MIRRORS;
  return value
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
}

async function fetchBytes(url: string, timeoutMs: number): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(cause?.code ?? cause?.message ?? (err as Error).message, { cause: err });
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

export interface LoadedIdx {
  dataset: Dataset;
  located: LocatedDataset;
  files: FileReport[];
}

/** Locates (or downloads), reads, verifies and parses an IDX dataset into memory. */
export async function loadIdxDataset(spec: IdxDatasetSpec, opts: SourceOptions = {}): Promise<LoadedIdx> {
  const located = await locate(spec, opts);
  const files: FileReport[] = [];
  const n = spec.classNames.length;
  const pathOf = (file: IdxFileSpec) => findFile(located.dir, file)!;
  const read = async (file: IdxFileSpec, rank: number) => {
    const p = pathOf(file);
    const bytes = new Uint8Array(await readFile(p));
    const isGz = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
    const raw = isGz ? gunzipOrFail(bytes, p) : bytes;
    const v = verifyFile(file, raw, isGz ? bytes : undefined);
    files.push({ name: file.name, path: p, verified: v.verified, method: v.method, sha256: v.sha256 });
    return parseIdx(raw, p, rank);
  };
  const decode = async (
    images: IdxFileSpec,
    labels: IdxFileSpec,
  ): Promise<{ split: Split; shape: ImageShape }> => {
    const cacheFile = opts.decodedCache
      ? await decodedCachePath(spec.name + '-' + images.name, [pathOf(images), pathOf(labels)])
      : undefined;
    const cached = cacheFile ? await readDecoded(cacheFile, opts.log) : undefined;
    if (cached) {
      files.push(...cached.header.sources);
      return { split: cached.split, shape: cached.header.shape };
    }
    const before = files.length;
    const [img, lab] = await Promise.all([read(images, 3), read(labels, 1)]);
    checkPair(img, lab, images.name, labels.name);
    const shape: ImageShape = [img.dims[1], img.dims[2], 1];
    const split = splitFromBytes(img.data, lab.data, n, labels.name);
    if (cacheFile) {
      await writeDecoded(
        cacheFile,
        split,
        { count: split.count, shape, sources: files.slice(before) },
        opts.log,
      );
    }
    return { split, shape };
  };
  const train = await decode(spec.trainImages, spec.trainLabels);
  const test = await decode(spec.testImages, spec.testLabels);
  if (train.shape[0] !== test.shape[0] || train.shape[1] !== test.shape[1]) {
    throw new UserError(
      `train images are ${train.shape.slice(0, 2).join('x')} but test images are ${test.shape.slice(0, 2).join('x')}`,
    );
  }
  const dataset: Dataset = {
    name: spec.name,
    classNames: spec.classNames,
    shape: train.shape,
    train: train.split,
    test: test.split,
  };
  return { dataset, located, files };
}
